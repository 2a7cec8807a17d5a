"""Direct (non-conservative) forces (issue 16): a ``non_conservative_force`` head
trained beside the energy by ``mtt train``, exported under metatomic's standard
name, and used by the ASE calculator with ``non_conservative="forces"``."""

import ase.io
import numpy as np
from metatomic.torch import ModelOutput
from metatomic_ase import MetatomicCalculator

from pet_helpers import DATA
from test_end_to_end import OPTIONS, mtt

DIRECT_TARGET = """
    non_conservative_force:
      key: forces
      unit: eV/A
      type:
        cartesian:
          rank: 1
      sample_kind: atom
validation_set: 0.25"""


def test_direct_forces_train_export_and_run_in_ase(tmp_path):
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":16")
    ase.io.write(tmp_path / "data.xyz", frames)
    options = OPTIONS.format(epochs=2, data="data.xyz")
    options = options.replace("\nvalidation_set: 0.25", DIRECT_TARGET)
    (tmp_path / "options.yaml").write_text(options)
    mtt("train", "options.yaml", "-o", "model.pt", cwd=tmp_path)

    atoms = frames[0].copy()
    direct = MetatomicCalculator(str(tmp_path / "model.pt"), non_conservative="forces")
    outputs = {"non_conservative_force": ModelOutput(per_atom=True)}
    head = direct.run_model(atoms, outputs)["non_conservative_force"]
    expected = head.block().values.detach().numpy().reshape(-1, 3)
    expected -= expected.mean(axis=0)  # the calculator removes the net force
    atoms.calc = direct
    np.testing.assert_allclose(atoms.get_forces(), expected, atol=1e-12)

    conservative = atoms.copy()
    conservative.calc = MetatomicCalculator(str(tmp_path / "model.pt"))
    assert np.abs(conservative.get_forces() - expected).max() > 1e-6
    assert conservative.get_potential_energy() == atoms.get_potential_energy()
