"""Randomly initialised energy models, for examples, tests and benchmarks.

One builder for our PET (``experimental.pet_ecse``) and metatrain's ``pet``, so that
every place that needs a small untrained model (the i-PI example, the ECSE and
symmetry tests, the cost benchmarks) builds it the same way.
"""

from typing import Sequence

import torch
from metatrain.utils.abc import ModelInterface
from metatrain.utils.architectures import get_default_hypers, import_architecture
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_energy_target_info

TINY_SIZES = {
    "d_pet": 8,
    "d_readout": 8,
    "d_feedforward": 8,
    "num_heads": 1,
    "num_attention_layers": 1,
    "num_gnn_layers": 1,
}
"""The smallest sensible PET (of either architecture): one layer of everything,
width 8. Cheap enough for MD in tests and examples on a laptop CPU. Named as our
hypers are; metatrain's ``pet`` calls the readout width ``d_head``."""

_PEER_NAMES = {"d_readout": "d_head"}
"""Our names of the hypers that metatrain's ``pet`` names differently."""


def untrained_energy_model(
    architecture: str = "experimental.pet_ecse",
    atomic_types: Sequence[int] = (1, 6, 8),
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **hypers,
) -> ModelInterface:
    """A model of ``architecture`` predicting an ``energy`` in eV from positions in
    Å, initialised from ``seed``, in ``dtype`` and evaluation mode.

    :param hypers: model hyper-parameters replacing the architecture's defaults
        (our names, see :data:`TINY_SIZES`);
        an unknown name raises a ``ValueError``
    """
    defaults = get_default_hypers(architecture)["model"]
    if architecture == "pet":
        hypers = {_PEER_NAMES.get(name, name): value for name, value in hypers.items()}
    unknown = sorted(set(hypers) - set(defaults))
    if len(unknown) > 0:
        raise ValueError(
            f"unknown hyper-parameters {unknown} for the '{architecture}' model"
        )
    defaults.update(hypers)
    dataset_info = DatasetInfo(
        length_unit="Angstrom",
        atomic_types=list(atomic_types),
        targets={
            "energy": get_energy_target_info(
                "energy", {"quantity": "energy", "unit": "eV"}
            )
        },
    )
    torch.manual_seed(seed)
    model = import_architecture(architecture).__model__(defaults, dataset_info)
    return model.to(dtype).eval()
