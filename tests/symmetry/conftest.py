"""Untrained, exported PET models shared by the symmetry tests.

An untrained PET is far from rotationally invariant, which is what the symmetry
tools must detect and remove. metatrain's own ``pet`` architecture is used so that
these tests do not depend on the PET being written in :mod:`metatrain_pet.pet.model`.
"""

from pathlib import Path

import ase.io
import pytest
import torch
from metatomic.torch import AtomisticModel, load_atomistic_model

from metatrain_pet.pet.untrained import untrained_energy_model

DATA_DIRECTORY = Path(__file__).resolve().parents[1] / "data"
ETHANOL_PATH = DATA_DIRECTORY / "ethanol_40.xyz"

TINY_PET_HYPERS = {
    "cutoff": 4.0,
    "d_pet": 16,
    "d_readout": 16,
    "d_node": 16,
    "d_feedforward": 32,
    "num_heads": 2,
    "num_attention_layers": 1,
    "num_gnn_layers": 1,
}


def build_untrained_pet(dtype: torch.dtype = torch.float64, seed: int = 0):
    """Export a tiny, randomly initialised PET predicting energies of H/C/O."""
    return untrained_energy_model(
        "pet", dtype=dtype, seed=seed, **TINY_PET_HYPERS
    ).export()


@pytest.fixture(autouse=True)
def _cheap_torchscript():
    """Keep tests on two threads and skip TorchScript's profiling optimisation.

    The optimising executor spends seconds compiling the first two calls of every
    freshly loaded or wrapped model, which would dominate these short tests.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    with torch.jit.optimized_execution(False):
        yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def raw_model_path(tmp_path_factory) -> Path:
    """Path of the saved float64 untrained PET."""
    path = tmp_path_factory.mktemp("models") / "raw.pt"
    build_untrained_pet().save(str(path))
    return path


@pytest.fixture(scope="session")
def raw_model(raw_model_path) -> AtomisticModel:
    """The float64 untrained PET, loaded back from disk like a user's model."""
    return load_atomistic_model(str(raw_model_path))


@pytest.fixture(scope="session")
def ethanol_frames():
    """The first three ethanol structures kept in the repository."""
    return ase.io.read(ETHANOL_PATH, index=":3")
