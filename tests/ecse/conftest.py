import warnings

import pytest
import torch
from ecse_toy_model import export_toy_model

from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model

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
    return untrained_energy_model(
        "pet", atomic_types=[1, 6, 7, 8], d_node=8, cutoff=4.0, **TINY_SIZES
    ).export()
