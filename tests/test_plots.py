"""``metatrain-pet plot``: each plot is written, with the expected axes and one
point per epoch, structure or MD step."""

import ase.io
import numpy as np
import pytest
import torch

from metatrain_pet.cli import main
from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model
from metatrain_pet.plots import energy_conservation, learning_curve, parity
from pet_helpers import DATA

pytest.importorskip("matplotlib")

TRAIN_CSV = """Epoch,learning rate,training loss,training energy MAE (per atom),\
training forces MAE,validation loss,validation energy MAE (per atom),\
validation forces MAE
,,,meV,meV/A,,meV,meV/A
   0,1.0e-03,5.0,20.0,900.0,4.0,25.0,800.0
   1,1.0e-03,4.0,15.0,700.0,3.5,18.0,650.0
   2,9.0e-04,3.0,10.0,500.0,3.0,12.0,480.0
"""


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("plots") / "model.pt"
    untrained_energy_model(dtype=torch.float64, **TINY_SIZES).export().save(str(path))
    return path


def test_learning_curve(tmp_path):
    (tmp_path / "train.csv").write_text(TRAIN_CSV)
    figure = learning_curve(tmp_path / "train.csv", tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
    labels = [axis.get_ylabel() for axis in figure.axes]
    assert labels == ["energy MAE (per atom) (meV)", "forces MAE (meV/A)"]
    for axis in figure.axes:
        assert [len(line.get_xdata()) for line in axis.get_lines()] == [3, 3]


def test_parity(model_path, tmp_path):
    ase.io.write(tmp_path / "data.xyz", ase.io.read(DATA / "ethanol_40.xyz", ":3"))
    figure = parity(model_path, tmp_path / "data.xyz", tmp_path / "parity.png")
    energy_axis, force_axis = figure.axes
    assert energy_axis.get_xlabel() == "reference energy per atom (eV)"
    assert len(energy_axis.get_lines()[0].get_xdata()) == 3
    assert len(force_axis.get_lines()[0].get_xdata()) == 3 * 9 * 3


def test_energy_conservation_from_ase_and_ipi_logs(model_path, tmp_path):
    from ase import units
    from ase.md.logger import MDLogger
    from ase.md.verlet import VelocityVerlet
    from metatomic_ase import MetatomicCalculator

    atoms = ase.io.read(DATA / "ethanol_40.xyz", "0")
    atoms.calc = MetatomicCalculator(str(model_path))
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    dynamics.attach(MDLogger(dynamics, atoms, str(tmp_path / "md.log")), interval=1)
    dynamics.run(4)
    ipi = tmp_path / "simulation.out"
    ipi.write_text(
        "# column   1     --> step : The current simulation time step.\n"
        "# column   2     --> time{picosecond} : The elapsed simulation time.\n"
        "# column   3     --> conserved{electronvolt} : The conserved energy.\n"
        "0 0.0 -10.0\n1 0.001 -10.0001\n2 0.002 -10.0003\n"
    )
    figure = energy_conservation([tmp_path / "md.log", ipi], tmp_path / "md.png")
    (axis,) = figure.axes
    ase_line, ipi_line = axis.get_lines()
    assert len(ase_line.get_xdata()) == 5 and len(ipi_line.get_xdata()) == 3
    np.testing.assert_allclose(ipi_line.get_ydata(), [0.0, -0.1, -0.3], atol=1e-9)
    assert axis.get_xlabel() == "time (ps)"


def test_command(tmp_path, capsys):
    (tmp_path / "train.csv").write_text(TRAIN_CSV)
    output = tmp_path / "curve.png"
    assert main(["plot", "learning-curve", str(tmp_path / "train.csv"), "-o",
                 str(output)]) == 0  # fmt: skip
    assert output.is_file()
    assert main(["plot", "parity", str(tmp_path / "missing.pt"), str(DATA),
                 "-o", str(output)]) == 1  # fmt: skip
    assert "does not exist" in capsys.readouterr().err
