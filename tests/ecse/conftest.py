import warnings

import pytest
import torch
from ecse_toy_model import export_toy_model

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated.*")


@pytest.fixture(scope="session")
def toy_model():
    """A non-equivariant local model (cutoff 4 Å) with energy, vector and rank-2
    outputs."""
    return export_toy_model(cutoff=4.0, invariant=False)


@pytest.fixture(scope="session")
def aux_model():
    """An exactly equivariant model with the same outputs, for fallback='aux'."""
    return export_toy_model(cutoff=4.0, invariant=True, seed=1)


@pytest.fixture(scope="session")
def pet_model():
    """metatrain's own PET, tiny and untrained, exported in float64."""
    from metatrain.utils.architectures import get_default_hypers, import_architecture
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    hypers = get_default_hypers("pet")["model"]
    hypers.update(
        d_pet=8,
        d_head=8,
        d_node=8,
        d_feedforward=8,
        num_heads=1,
        num_attention_layers=1,
        num_gnn_layers=1,
        cutoff=4.0,
    )
    dataset_info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=[1, 6, 7, 8],
        targets={"energy": get_energy_target_info("energy", {"unit": "eV"})},
    )
    torch.manual_seed(0)
    model = import_architecture("pet").__model__(hypers, dataset_info)
    return model.to(torch.float64).export()
