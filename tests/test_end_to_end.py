"""``mtt train`` -> ``mtt train --restart`` -> ``mtt export`` -> ``mtt eval`` -> the
exported model in the metatomic ASE calculator, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from pet_helpers import DATA

REPO = Path(__file__).resolve().parents[1]

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
    batch_size: 8
    learning_rate: 1.0e-3
    checkpoint_interval: 1
training_set:
  systems:
    read_from: {data}
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
      forces:
        key: forces
validation_set: 0.25
test_set: 0.0
"""

EVAL_OPTIONS = """
systems:
  read_from: {data}
  length_unit: angstrom
targets:
  energy:
    key: energy
    unit: eV
"""


def mtt(*args, cwd):
    mtt_executable = Path(sys.executable).parent / "mtt"
    result = subprocess.run(
        [str(mtt_executable), *args], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_train_restart_export_eval_and_ase(tmp_path):
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":16")
    ase.io.write(tmp_path / "data.xyz", frames)
    (tmp_path / "options.yaml").write_text(OPTIONS.format(epochs=2, data="data.xyz"))
    mtt("train", "options.yaml", "-o", "model.pt", cwd=tmp_path)
    checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=False)
    assert checkpoint["architecture_name"] == "experimental.pet_ecse"
    assert checkpoint["epoch"] == 1

    (tmp_path / "options.yaml").write_text(OPTIONS.format(epochs=3, data="data.xyz"))
    mtt(
        "train",
        "options.yaml",
        "--restart",
        "model.ckpt",
        "-o",
        "restarted.pt",
        cwd=tmp_path,
    )
    restarted = torch.load(tmp_path / "restarted.ckpt", weights_only=False)
    assert restarted["epoch"] == 2

    mtt("export", "restarted.ckpt", "-o", "model.pt", cwd=tmp_path)
    (tmp_path / "eval.yaml").write_text(EVAL_OPTIONS.format(data="data.xyz"))
    output = mtt("eval", "model.pt", "eval.yaml", "-o", "predictions.xyz", cwd=tmp_path)
    assert "energy" in output
    predictions = ase.io.read(tmp_path / "predictions.xyz", ":")
    assert len(predictions) == len(frames)

    from metatomic_ase import MetatomicCalculator

    atoms = frames[0].copy()
    atoms.calc = MetatomicCalculator(str(tmp_path / "model.pt"))
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert np.isfinite(energy) and np.all(np.isfinite(forces))
    assert energy == pytest.approx(predictions[0].get_potential_energy(), rel=1e-8)
    # the composition baseline is part of the exported model: energies are close
    # to the reference ones, not to zero
    assert abs(energy - frames[0].get_potential_energy()) < 5.0


@pytest.mark.slow
def test_paper_options_file_trains_and_exports(tmp_path):
    """The paper's model and protocol stay one options file away: ``ethanol.yaml``
    spells them out, and trains (shrunk) and exports through the CLI."""
    ase.io.write(tmp_path / "data.xyz", ase.io.read(DATA / "ethanol_40.xyz", ":12"))
    overrides = {
        "architecture.model.d_pet": 8,
        "architecture.model.d_feedforward": 16,
        "architecture.model.d_readout": 8,
        "architecture.model.num_heads": 2,
        "architecture.model.num_attention_layers": 1,
        "architecture.training.num_epochs": 1,
        "architecture.training.batch_size": 4,
        "architecture.training.progress_bar": "false",
        "training_set.systems.read_from": "data.xyz",
        "test_set.systems.read_from": "data.xyz",
        "validation_set": 0.25,
    }
    arguments = [f"-r={key}={value}" for key, value in overrides.items()]
    options = REPO / "options" / "ethanol.yaml"
    mtt("train", str(options), "-o", "paper.pt", *arguments, cwd=tmp_path)
    checkpoint = torch.load(tmp_path / "paper.ckpt", weights_only=False)
    hypers = checkpoint["model_data"]["model_hypers"]
    assert hypers["transformer_type"] == "PostLN"
    assert hypers["readout"] == "every_block"
    mtt("export", "paper.ckpt", "-o", "exported.pt", cwd=tmp_path)
    assert (tmp_path / "exported.pt").stat().st_size > 0
