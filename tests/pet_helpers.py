"""Small PET models and evaluation helpers shared by the tests."""

import copy
from pathlib import Path
from typing import List, Tuple

import ase
import torch
from metatomic.torch import ModelOutput, System, systems_to_torch
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet import ARCHITECTURE_NAME
from metatrain_pet.pet.model import PET
from metatrain_pet.pet.untrained import untrained_energy_model

DATA = Path(__file__).parent / "data"

LEAN_MODES = {"lean": (0, None), "last block": (-1, 0)}
"""``set_lean_forces`` arguments of each lean mode (the full graph: ``(-1,)``)."""


def tiny_hypers(**overrides) -> dict:
    hypers = copy.deepcopy(get_default_hypers(ARCHITECTURE_NAME)["model"])
    hypers.update(
        d_pet=16,
        d_feedforward=32,
        d_readout=16,
        num_heads=2,
        num_attention_layers=2,
        num_gnn_layers=2,
        cutoff=4.0,
        cutoff_width=0.8,
    )
    hypers.update(overrides)
    return hypers


def energy_model(
    atomic_types: List[int], dtype=torch.float64, seed: int = 0, **overrides
) -> PET:
    """An untrained PET predicting an energy in eV, in evaluation mode."""
    return untrained_energy_model(
        ARCHITECTURE_NAME, atomic_types, dtype, seed, **tiny_hypers(**overrides)
    )


def system_from_atoms(model: PET, atoms: ase.Atoms, dtype=torch.float64) -> System:
    system = systems_to_torch(atoms, dtype=dtype)
    return get_system_with_neighbor_lists(system, model.requested_neighbor_lists())


def energy_and_forces(
    model: PET, atoms: ase.Atoms, dtype=torch.float64
) -> Tuple[float, torch.Tensor]:
    system = systems_to_torch(atoms, dtype=dtype, positions_requires_grad=True)
    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    energy = model([system], {"energy": ModelOutput(sample_kind="system")})["energy"]
    value = energy.block().values.sum()
    (gradient,) = torch.autograd.grad(value, system.positions)
    return value.item(), -gradient
