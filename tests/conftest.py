import os
import sys

import pytest
import torch

torch.set_num_threads(int(os.environ.get("PET_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _ipi_signal_handlers():
    """i-PI's simulations take over SIGINT and SIGTERM for the rest of the process,
    so that a later signal would make it write RESTART files into whatever folder
    is current. Give them back after every test that ran one."""
    yield
    softexit = sys.modules.get("ipi.utils.softexit")
    if softexit is not None:
        softexit.softexit.reset()
