"""``metatrain-pet average`` and ``metatrain-pet symmetry-report`` end to end."""

import argparse
import importlib.util
import json
from pathlib import Path

import ase.io
import pytest
from metatomic.torch import load_atomistic_model

from metatrain_pet.symmetry.commands import register
from metatrain_pet.symmetry.diagnostics import predict

DATA_DIRECTORY = Path(__file__).resolve().parents[1] / "data"
ETHANOL = DATA_DIRECTORY / "ethanol_40.xyz"

ECSE_AVAILABLE = (
    importlib.util.find_spec("metatrain_pet.ecse.wrapper") is not None
    and importlib.util.find_spec("metatrain_pet.ecse.command") is not None
)


def run_own_parser(argv):
    """Parse and run ``argv`` with a parser holding only this package's commands."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(argument) for argument in argv])
    args.func(args)


def run_cli(argv):
    """Run the ``metatrain-pet`` entry point, which also loads the ECSE command."""
    if not ECSE_AVAILABLE:
        pytest.skip("the ECSE command module, imported by cli.main, is missing")
    from metatrain_pet.cli import main

    return main([str(argument) for argument in argv])


def test_average_grid_as_variant(raw_model_path, tmp_path, capsys):
    output = tmp_path / "variant.pt"
    run_own_parser(
        ["average", raw_model_path, "-o", output, "--order", 2, "--as-variant"]
    )
    assert "36 evaluations" in capsys.readouterr().out
    outputs = load_atomistic_model(str(output)).capabilities().outputs
    assert "energy" in outputs and "energy/symmetrized" in outputs


def test_average_random_runs_like_any_model(raw_model_path, tmp_path):
    output = tmp_path / "random.pt"
    run_own_parser(
        [
            "average",
            raw_model_path,
            "-o",
            output,
            "--random",
            "--seed",
            4,
            "--no-inversion",
        ]
    )
    model = load_atomistic_model(str(output))
    energies = {
        predict(model, ase.io.read(ETHANOL, index=":1"))[0].energy for _ in range(2)
    }
    assert len(energies) == 2


def test_average_random_as_variant(raw_model_path, tmp_path):
    output = tmp_path / "random-variant.pt"
    run_own_parser(
        ["average", raw_model_path, "-o", output, "--random", "--as-variant", "random"]
    )
    outputs = load_atomistic_model(str(output)).capabilities().outputs
    assert "energy" in outputs and "energy/random" in outputs


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--order", 3, "--seed", 1], "--seed only applies to --random"),
        (["--order", 3, "--no-inversion"], "always averages over rotations"),
        (["--order", 500], "grid order must be between 0 and 131"),
        (["--random", "--as-variant", "a b"], "invalid variant name"),
    ],
)
def test_average_refuses_bad_options(raw_model_path, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        run_own_parser(["average", raw_model_path, "-o", tmp_path / "x.pt", *extra])


def test_average_needs_a_mode(raw_model_path, tmp_path):
    with pytest.raises(SystemExit):
        run_own_parser(["average", raw_model_path, "-o", tmp_path / "x.pt"])


def test_symmetry_report_writes_json_and_png(raw_model_path, tmp_path, capsys):
    json_path = tmp_path / "report" / "report.json"
    png_path = tmp_path / "report" / "convergence.png"
    run_own_parser(
        [
            "symmetry-report",
            raw_model_path,
            ETHANOL,
            "--index",
            "0:2",
            "--order",
            2,
            "--convergence-orders",
            0,
            1,
            "--json",
            json_path,
            "--plot",
            png_path,
        ]
    )
    printed = capsys.readouterr().out
    assert "<|torque|> (meV)" in printed
    assert "grid L=2" in printed

    report = json.loads(json_path.read_text())
    assert report["reference_order"] == 2
    assert report["reference_evaluations"] == 36
    assert len(report["structures"]) == 2
    assert report["torque"]["raw"] > 100 * report["torque"]["grid"]
    for structure in report["structures"]:
        assert set(structure["torque"]) == {"raw", "grid"}
        assert len(structure["torque"]["raw"]) == 3
        assert structure["force_mae"]["grid"] > 0
    orders = [row["order"] for row in report["convergence"]]
    assert orders == [0, 1]
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_symmetry_report_on_periodic_structures(raw_model_path, tmp_path, capsys):
    periodic = ase.io.read(ETHANOL, index=0)
    periodic.cell = [8.0, 8.0, 8.0]
    periodic.pbc = True
    ase.io.write(tmp_path / "periodic.xyz", periodic)
    json_path = tmp_path / "periodic.json"
    run_own_parser(
        [
            "symmetry-report",
            raw_model_path,
            tmp_path / "periodic.xyz",
            "--order",
            0,
            "--json",
            json_path,
        ]
    )
    assert "n/a (periodic)" in capsys.readouterr().out
    report = json.loads(json_path.read_text())
    assert report["torque"] == {"raw": None, "grid": None}
    assert report["structures"][0]["periodic"]


def test_symmetry_report_refuses_missing_files(raw_model_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.xyz"):
        run_own_parser(["symmetry-report", raw_model_path, tmp_path / "nothing.xyz"])
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        run_own_parser(["symmetry-report", tmp_path / "nothing.pt", ETHANOL])


def test_cli_main_average_and_report(raw_model_path, tmp_path, capsys):
    output = tmp_path / "averaged.pt"
    assert run_cli(["average", raw_model_path, "-o", output, "--order", 1]) == 0
    assert output.is_file()

    assert (
        run_cli(["average", tmp_path / "missing.pt", "-o", output, "--order", 1]) == 1
    )
    assert "missing.pt' does not exist" in capsys.readouterr().err

    json_path = tmp_path / "report.json"
    assert (
        run_cli(
            [
                "symmetry-report",
                raw_model_path,
                ETHANOL,
                "--index",
                "0",
                "--order",
                1,
                "--ecse",
                "--json",
                json_path,
            ]
        )
        == 0
    )
    report = json.loads(json_path.read_text())
    assert report["models"] == ["raw", "grid", "ecse"]
    assert report["torque"]["ecse"] < 1e-3
