"""Direct (non-conservative) forces (issue 16): a ``non_conservative_force`` head
trained beside the energy by ``mtt train``, exported under metatomic's standard
name, used by the ASE calculator with ``non_conservative="forces"``, and by i-PI
for the inner steps of a multiple-time-step integrator
(``docs/engines/ipi-mts.xml``)."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from metatomic.torch import ModelOutput
from metatomic_ase import MetatomicCalculator

from pet_helpers import DATA
from test_end_to_end import OPTIONS, mtt

MTS_INPUT = Path(__file__).resolve().parents[1] / "docs" / "engines" / "ipi-mts.xml"

DIRECT_TARGET = """
    non_conservative_force:
      key: forces
      unit: eV/A
      type:
        cartesian:
          rank: 1
      sample_kind: atom
validation_set: 0.25"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny PET with an energy and a direct-force head, 20 epochs on 16
    ethanol frames, and the first frame."""
    folder = tmp_path_factory.mktemp("direct")
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":16")
    ase.io.write(folder / "data.xyz", frames)
    options = OPTIONS.format(epochs=20, data="data.xyz")
    options = options.replace("\nvalidation_set: 0.25", DIRECT_TARGET)
    (folder / "options.yaml").write_text(options)
    mtt("train", "options.yaml", "-o", "model.pt", cwd=folder)
    return folder / "model.pt", frames[0]


def test_direct_forces_in_ase(trained):
    model, atoms = trained
    atoms = atoms.copy()
    direct = MetatomicCalculator(str(model), non_conservative="forces")
    outputs = {"non_conservative_force": ModelOutput(per_atom=True)}
    head = direct.run_model(atoms, outputs)["non_conservative_force"]
    expected = head.block().values.detach().numpy().reshape(-1, 3)
    expected -= expected.mean(axis=0)  # the calculator removes the net force
    atoms.calc = direct
    np.testing.assert_allclose(atoms.get_forces(), expected, atol=1e-12)

    conservative = atoms.copy()
    conservative.calc = MetatomicCalculator(str(model))
    assert np.abs(conservative.get_forces() - expected).max() > 1e-6
    assert conservative.get_potential_energy() == atoms.get_potential_energy()


def test_multiple_time_steps_in_ipi(trained, tmp_path, monkeypatch):
    """The i-PI input of the documentation, 40 outer steps of 2 fs (4 inner steps
    of direct forces each): it runs, and its conserved energy stays within
    1 meV per atom of its start (measured: 0.03 meV/atom over the 80 fs)."""
    scripting = pytest.importorskip("ipi.scripting")
    model, atoms = trained
    monkeypatch.chdir(tmp_path)
    boxed = atoms.copy()
    boxed.cell = np.eye(3) * 30.0  # i-PI treats the cell as periodic
    boxed.pbc = True
    boxed.center()
    ase.io.write("template.xyz", boxed)
    xml = MTS_INPUT.read_text().replace("model.pt", str(model))
    simulation = scripting.InteractiveSimulation(xml)
    conserved = []
    for _ in range(40):
        simulation.run(1)
        conserved.append(simulation.properties("conserved"))
    drift = np.abs(np.array(conserved) - conserved[0]).max() / len(atoms)
    assert drift < 1e-3
