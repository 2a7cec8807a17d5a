import os
import sys

import ase.io
import pytest
import torch

from pet_helpers import DATA

torch.set_num_threads(int(os.environ.get("PET_TEST_THREADS", "2")))


@pytest.fixture(scope="module")
def slab():
    """A water box with vacuum above and below: surface atoms have fewer
    neighbours than those in the bulk, so environments differ in length."""
    atoms = ase.io.read(DATA / "water64_2.xyz", "0")
    atoms.cell[2] *= 2.0
    return atoms


@pytest.fixture(autouse=True)
def _ipi_signal_handlers():
    """i-PI's simulations take over SIGINT and SIGTERM for the rest of the process,
    so that a later signal would make it write RESTART files into whatever folder
    is current. Give them back after every test that ran one."""
    yield
    softexit = sys.modules.get("ipi.utils.softexit")
    if softexit is not None:
        softexit.softexit.reset()
