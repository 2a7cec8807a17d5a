"""Data-parallel training (issue 17): two CPU processes started by ``torchrun``
(``gloo``), each with half of every batch, end with the parameters of one process
trained on the same global batches, also after a restart; only the main process
writes files.

Four training structures of equal size make every epoch one step on the same
global batch whatever the shuffling: two processes with ``batch_size: 2`` and one
with ``batch_size: 4`` then see the same data, and the averaged gradients of the
first must equal the gradient of the second."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import ase.io
import pytest
import torch

from pet_helpers import DATA
from test_end_to_end import mtt

OPTIONS = """
seed: 0
base_precision: 64
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.0
    d_pet: 8
    d_feedforward: 16
    d_readout: 8
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 2
  training:
    num_epochs: {epochs}
    batch_size: {batch_size}
    learning_rate: 1.0e-2
    augmentation: none
    checkpoint_interval: 1
training_set:
  systems: train.xyz
  targets:
    energy:
      key: energy
      forces:
        key: forces
validation_set:
  systems: validation.xyz
  targets:
    energy:
      key: energy
      forces:
        key: forces
test_set: 0.0
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(*args, cwd: Path) -> str:
    command = [
        sys.executable, "-m", "torch.distributed.run",
        "--nproc-per-node", "2",
        "--master-addr", "127.0.0.1",
        "--master-port", str(_free_port()),
        "-m", "metatrain_pet.torchrun", *args,
    ]  # fmt: skip
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env=environment
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _parameters(checkpoint: Path) -> dict:
    state = torch.load(checkpoint, weights_only=False)["model_state_dict"]
    return {name: value for name, value in state.items() if value.is_floating_point()}


def _slurm(*args, cwd: Path) -> str:
    """Two ``mtt`` processes described as SLURM describes the tasks of ``srun``."""
    port = str(_free_port())
    tasks = []
    for rank in range(2):
        environment = dict(
            os.environ,
            OMP_NUM_THREADS="1",
            SLURM_JOB_ID="1",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_NTASKS="2",
            SLURM_JOB_NODELIST="localhost",
        )
        command = [str(Path(sys.executable).parent / "mtt"), *args]
        tasks.append(
            subprocess.Popen(
                command + ["-r", f"architecture.training.distributed_port={port}"],
                cwd=cwd,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [task.communicate(timeout=600)[0] for task in tasks]
    assert all(task.returncode == 0 for task in tasks), outputs[0][-3000:]
    return "".join(outputs)


LAUNCHERS = {1: mtt, "torchrun": _torchrun, "slurm": _slurm}


def _train(folder: Path, launcher, epochs: int, restart: bool) -> dict:
    batch_size = 4 if launcher == 1 else 2
    options = OPTIONS.format(epochs=epochs, batch_size=batch_size)
    (folder / "options.yaml").write_text(options)
    arguments = ["train", "options.yaml", "-o", "model.pt"]
    if restart:
        arguments += ["--restart", "model.ckpt"]
    LAUNCHERS[launcher](*arguments, cwd=folder)
    return _parameters(folder / "model.ckpt")


def _folder(tmp_path_factory, name: str) -> Path:
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":8")
    folder = tmp_path_factory.mktemp(name)
    ase.io.write(folder / "train.xyz", frames[:4])
    ase.io.write(folder / "validation.xyz", frames[4:])
    return folder


def _assert_equal(single: dict, double: dict) -> None:
    assert single.keys() == double.keys()
    for name, value in single.items():
        torch.testing.assert_close(double[name], value, rtol=1e-7, atol=1e-9, msg=name)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One process, batches of 4: the parameters after 2 epochs, and after a
    restart to 4 epochs."""
    folder = _folder(tmp_path_factory, "single")
    return {
        epochs: _train(folder, 1, epochs, restart)
        for restart, epochs in ((False, 2), (True, 4))
    }


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_on_the_global_batch(single, tmp_path_factory):
    folder = _folder(tmp_path_factory, "torchrun")
    for restart, epochs in ((False, 2), (True, 4)):
        _assert_equal(single[epochs], _train(folder, "torchrun", epochs, restart))
    # the parameters moved: the comparison is not between two untrained models
    first = next((folder / "outputs").glob("*/*/model_0.ckpt"))
    after_one_step = _parameters(first)
    assert any(not torch.equal(after_one_step[n], v) for n, v in single[4].items())

    # only the main process writes: one output folder per training
    logs = list((folder / "outputs").glob("*/*/train.log"))
    assert len(logs) == 2
    assert all("2 process(es)" in log.read_text() for log in logs)
    assert list(folder.glob("*.tmp")) == []


@pytest.mark.slow
def test_slurm_two_tasks_equal_one_on_the_global_batch(single, tmp_path_factory):
    folder = _folder(tmp_path_factory, "slurm")
    _assert_equal(single[2], _train(folder, "slurm", 2, False))
