"""Structures a model should not be trusted on are flagged (issue 18): coincident or
overlapping atoms, periodic images included, empty structures; and an error raised
inside an exported (TorchScript) model reaches the command line as one line."""

import json
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest

from metatrain_pet.cli import main
from metatrain_pet.ecse import symmetrize
from metatrain_pet.systems.checks import structure_problems

ETHANOL = Path(__file__).resolve().parents[1] / "data" / "ethanol_40.xyz"


@pytest.fixture()
def structures_file(tmp_path):
    """Three structures: a sound ethanol, ethanol with an atom doubled 0.01 Å
    away, and a periodic cell whose atoms meet their neighbour's image."""
    ethanol = ase.io.read(ETHANOL, index="0")
    doubled = ethanol.copy()
    doubled.append(ase.Atom("H", doubled.positions[3] + [0.01, 0.0, 0.0]))
    periodic = ase.Atoms(
        "OO", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[5, 5, 5], pbc=True
    )
    path = tmp_path / "structures.xyz"
    ase.io.write(path, [ethanol, doubled, periodic])
    return path


def test_problems_are_named():
    ethanol = ase.io.read(ETHANOL, index="0")
    assert structure_problems(ethanol) == []
    assert structure_problems(ase.Atoms()) == ["it has no atoms"]
    moved = ethanol.copy()
    moved.positions[2] = moved.positions[5]
    (problem,) = structure_problems(moved)
    assert "atoms 2 and 5 are 0 Å apart" in problem or "atoms 5 and 2" in problem
    broken = ethanol.copy()
    broken.positions[0, 0] = np.nan
    assert "NaN" in structure_problems(broken)[0]


def test_periodic_images_count():
    atoms = ase.Atoms("OO", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[5, 5, 5])
    assert structure_problems(atoms) == []
    atoms.pbc = True
    (problem,) = structure_problems(atoms)
    assert "0.2 Å apart" in problem


def test_check_command(structures_file, tmp_path, capsys):
    assert main(["check", str(structures_file)]) == 1
    output = capsys.readouterr()
    assert "structure 0" not in output.out
    assert "structure 1: 1 pair of atoms closer than 0.5 Å" in output.out
    assert "structure 2" in output.out
    assert "2 of 3 structures have problems" in output.err
    assert main(["check", str(structures_file), "--index", "0"]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_symmetry_report_lists_the_problems(
    raw_model_path, structures_file, tmp_path, capsys
):
    report_path = tmp_path / "report.json"
    arguments = [str(raw_model_path), str(structures_file), "--index", ":2"]
    assert main(["symmetry-report", *arguments, "--order", "1", "--json",
                 str(report_path)]) == 0  # fmt: skip
    assert "structure 1: 1 pair of atoms" in capsys.readouterr().out
    assert len(json.loads(report_path.read_text())["problems"]) == 1

    ase.io.write(structures_file, [ase.Atoms()])
    assert main(["symmetry-report", str(raw_model_path), str(structures_file)]) == 1
    assert "structure 0 has no atoms" in capsys.readouterr().err


def test_errors_inside_an_exported_model_are_one_line(raw_model_path, tmp_path, capsys):
    """An exported ECSE model without fallback raises inside TorchScript on CO2;
    the command prints the message only, not the interpreter's traceback."""
    from metatomic.torch import load_atomistic_model

    ecse_path = tmp_path / "ecse.pt"
    symmetrize(load_atomistic_model(str(raw_model_path))).save(str(ecse_path))
    co2 = ase.Atoms("CO2", positions=[[0, 0, 0], [0, 0, 1.16], [0, 0, -1.16]])
    co2_path = tmp_path / "co2.xyz"
    ase.io.write(co2_path, co2)
    assert main(["symmetry-report", str(ecse_path), str(co2_path), "--order",
                 "1"]) == 1  # fmt: skip
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no local frame can be built; set fallback='adaptive'" in error
    assert "Traceback" not in error and "builtins" not in error
