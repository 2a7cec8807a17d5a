"""Uncertainties with metatrain's LLPR wrapper around our checkpoints (issue 16):
``mtt train`` of a PET, ``mtt train`` of the ``llpr`` architecture on its
checkpoint, the exported model's ``energy_uncertainty`` read from ASE."""

import ase.io
import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput
from metatomic_ase import MetatomicCalculator

from pet_helpers import DATA
from test_end_to_end import OPTIONS, mtt

LLPR_OPTIONS = """
seed: 0
base_precision: 64
architecture:
  name: llpr
  model:
    num_ensemble_members: {{energy: 16}}
  training:
    model_checkpoint: {checkpoint}
    batch_size: 4
training_set:
  systems:
    read_from: {data}
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
validation_set: 0.25
test_set: 0.0
"""


@pytest.fixture(scope="module")
def llpr_model(tmp_path_factory):
    """A PET trained for a few epochs on 24 ethanol frames, then wrapped by LLPR
    (covariance and calibration, no ensemble training), both through ``mtt``."""
    folder = tmp_path_factory.mktemp("llpr")
    ase.io.write(folder / "data.xyz", ase.io.read(DATA / "ethanol_40.xyz", ":24"))
    (folder / "pet.yaml").write_text(OPTIONS.format(epochs=4, data="data.xyz"))
    mtt("train", "pet.yaml", "-o", "pet.pt", cwd=folder)
    (folder / "llpr.yaml").write_text(
        LLPR_OPTIONS.format(checkpoint="pet.ckpt", data="data.xyz")
    )
    mtt("train", "llpr.yaml", "-o", "llpr.pt", cwd=folder)
    return folder


def _uncertainty_and_ensemble(calculator, atoms):
    outputs = {
        "energy": ModelOutput(per_atom=False),
        "energy_uncertainty": ModelOutput(per_atom=False),
        "energy_ensemble": ModelOutput(per_atom=False),
    }
    results = calculator.run_model(atoms, outputs)
    return (
        float(results["energy"].block().values),
        float(results["energy_uncertainty"].block().values),
        results["energy_ensemble"].block().values.detach().numpy().ravel(),
    )


def test_llpr_uncertainty_from_ase(llpr_model):
    calculator = MetatomicCalculator(str(llpr_model / "llpr.pt"))
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":24")
    seen = [_uncertainty_and_ensemble(calculator, atoms) for atoms in frames[:4]]
    assert all(sigma > 0.0 and np.isfinite(sigma) for _, sigma, _ in seen)

    # the same molecule stretched by 30 %: far from every training structure
    distorted = frames[0].copy()
    distorted.positions *= 1.3
    _, sigma_far, ensemble = _uncertainty_and_ensemble(calculator, distorted)
    assert sigma_far > 3.0 * max(sigma for _, sigma, _ in seen)
    assert len(ensemble) == 16 and np.std(ensemble) > 0.0

    # the energy itself is the wrapped PET's
    pet = MetatomicCalculator(str(llpr_model / "pet.pt"))
    atoms = frames[0].copy()
    atoms.calc = pet
    torch.testing.assert_close(
        atoms.get_potential_energy(), seen[0][0], rtol=1e-10, atol=1e-10
    )
