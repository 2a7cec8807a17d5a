"""``benchmarks/run.py --quick`` and a few steps of ``benchmarks/engines.py`` as smoke
tests: they run from the repository alone and write their tables. No assertion on
timings (the machine is shared)."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmark_runs_and_writes_its_tables(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = re.findall(r"^(\S+): ours=\S+ peer=\S+ ratio=\S+$", result.stdout, re.M)
    sections = {name.split("/")[0] for name in lines}
    assert {"inference", "train", "ecse", "accuracy"} <= sections

    with open(tmp_path / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert {row["name"] for row in rows} == set(lines)
    assert (tmp_path / "results.md").stat().st_size > 0
    assert list(tmp_path.glob("*.png"))


@pytest.mark.slow
def test_engines_benchmark_summarises_several_seeds(tmp_path):
    model_path = tmp_path / "model.pt"
    untrained_energy_model(**TINY_SIZES).export().save(str(model_path))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "engines.py"),
            str(model_path),
            "--steps",
            "4",
            "--systems",
            "ethanol",
            "--ecse-systems",
            "ethanol",
            "--engines",
            "ase",
            "--seeds",
            "0",
            "1",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for variant in ("raw", "ecse"):
        rows = re.findall(
            rf"^ase\s+{variant}\s+ethanol\s+4\s+(\d)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)$",
            result.stdout,
            re.M,
        )
        assert [row[0] for row in rows] == ["0", "1"]
        assert all(float(row[2]) > 0.0 for row in rows)
        # closest approach: an O-H bond of ethanol (0.96 A at the start), not the
        # search radius that would mean no distance was measured
        assert all(0.8 < float(row[4]) < 1.1 for row in rows)
        summary = re.search(
            rf"^ase\s+{variant}\s+ethanol\s+4\s+all mean (\S+) ± (\S+), RMS (\S+)",
            result.stdout,
            re.M,
        )
        drifts = [float(row[1]) for row in rows]
        # the per-seed drifts are printed to 3 significant digits, the summary is
        # computed from the unrounded values
        rounding = 1e-2 * max(abs(drift) for drift in drifts)
        mean = sum(drifts) / 2
        assert float(summary.group(1)) == pytest.approx(mean, abs=rounding)
        rms = (sum(d**2 for d in drifts) / 2) ** 0.5
        assert float(summary.group(3)) == pytest.approx(rms, abs=rounding)


@pytest.mark.slow
def test_engines_benchmark_resumes_a_trajectory_with_its_closest_approach(tmp_path):
    model_path = tmp_path / "model.pt"
    untrained_energy_model(**TINY_SIZES).export().save(str(model_path))
    saved = tmp_path / "energies"

    def run(steps, *extra):
        command = [sys.executable, str(REPO / "benchmarks" / "engines.py")]
        command += [str(model_path), "--steps", str(steps), "--systems", "ethanol"]
        command += ["--variants", "raw", "--engines", "ase", "--threads", "1"]
        command += ["--save-energies", str(saved), *extra]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return np.load(saved / "ase_raw_ethanol_seed0.state.npz")

    whole = run(40)
    (saved / "ase_raw_ethanol_seed0.state.npz").unlink()
    run(20)
    resumed = run(40, "--resume")
    np.testing.assert_array_equal(resumed["energies"], whole["energies"])
    np.testing.assert_array_equal(resumed["closest"], whole["closest"])
    assert len(resumed["closest"]) == len(resumed["energies"]) > 20
    assert 0.8 < resumed["closest"].min() < 1.1


def _benchmark_module(name):
    """A script of ``benchmarks/`` imported as a module (they import each other by
    file name, as when run from there)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.slow
def test_lean_crossover_times_every_mode_in_its_own_process():
    command = [sys.executable, str(REPO / "benchmarks" / "lean_crossover.py")]
    command += ["--labels", "ethanol", "--rounds", "1", "--steps", "1"]
    command += ["--model", '{"d_pet": 16, "d_readout": 16, "d_feedforward": 32}']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    row = result.stdout.strip().splitlines()[-1].strip("| ").split(" | ")
    graph, last, lean = (float(value) for value in row[1:4])
    assert row[0] == "ethanol" and graph > 0 and last > 0 and lean > 0
    ratios = [float(value) for value in row[4].split(" / ")]
    assert ratios == pytest.approx([1.0, last / graph, lean / graph], abs=0.01)
    assert len(row[5].split(" / ")) == 3
    # 9 atoms times their 8 neighbours and themselves, in units of graph memory
    assert 0 < int(row[6]) < 81


@pytest.mark.slow
def test_profile_step_counts_the_operators_of_scripted_steps():
    command = [sys.executable, str(REPO / "benchmarks" / "profile_step.py")]
    command += ["--labels", "ethanol", "--script", "--steps", "2", "--top", "3"]
    command += ["--model", '{"d_pet": 16, "d_readout": 16, "d_feedforward": 32}']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()]
    rows = [row for row in rows if len(row) == 4]
    assert rows[0] == ["ours operator", "ms/atom", "metatrain pet operator", "ms/atom"]
    assert rows[1][0] == rows[1][2] == "**step (CPU time)**"
    assert rows[2][0] == rows[2][2] == "operator events per step"
    assert int(rows[2][1]) > 100 and int(rows[2][3]) > 100
    for row in rows[3:]:
        for operator, ms in ((row[0], row[1]), (row[2], row[3])):
            assert re.fullmatch(r".+ \(\d+\)", operator) and float(ms) >= 0.0
    assert len(rows) == 3 + 3


@pytest.mark.slow
def test_host_syncs_benchmark_counts_both_models():
    command = [sys.executable, str(REPO / "benchmarks" / "host_syncs.py")]
    command += ["--labels", "ethanol", "water192", "--max-tokens", "1000"]
    command += ["--model", '{"d_pet": 16, "d_readout": 16, "d_feedforward": 32}']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()]
    rows = [row for row in rows[2:] if len(row) == 4]
    assert [row[:2] for row in rows] == [
        [label, name]
        for label in ("ethanol", "water192")
        for name in ("ours", "metatrain pet")
    ]
    for row in rows:
        counts = [int(part.rsplit(" ", 1)[1]) for part in row[3].split(", ")]
        assert int(row[2]) == sum(counts) > 0
    # one more plan of chunks per block where the 192 atoms need several chunks
    assert int(rows[2][2]) == int(rows[0][2]) + 10
    assert int(rows[3][2]) == int(rows[1][2])


@pytest.mark.slow
def test_fixed_cost_fits_a_line_through_the_ethanol_copies():
    command = [sys.executable, str(REPO / "benchmarks" / "fixed_cost.py")]
    command += ["--copies", "1", "2", "--repeats", "2"]
    command += ["--model", '{"d_pet": 16, "d_readout": 16, "d_feedforward": 32}']
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.strip("| ").split(" | ") for line in result.stdout.splitlines()]
    rows = [row for row in rows[2:] if len(row) == 5]
    assert [(row[0], int(row[1])) for row in rows] == [
        ("water", 3),
        ("ethanol1", 9),
        ("ethanol2", 18),
    ]
    for name, column in (("ours", 2), ("metatrain pet", 3)):
        fit = re.search(
            rf"^{name}: ([-\d.]+) ms per step \+ ([-\d.]+) ms per atom$",
            result.stdout,
            re.MULTILINE,
        )
        # two points: the line goes through both
        one, two = (float(row[column]) for row in rows[1:])
        assert float(fit.group(2)) == pytest.approx((two - one) / 9, abs=2e-3)
        assert float(fit.group(1)) == pytest.approx(2 * one - two, abs=3e-2)


@pytest.mark.slow
def test_train_epoch_profile_gives_the_matrix_products_share():
    command = [sys.executable, str(REPO / "benchmarks" / "train_epoch.py")]
    command += ["--data", str(REPO / "tests" / "data" / "ethanol_40.xyz")]
    command += ["--n-structures", "8", "--batch-size", "4", "--repeats", "1"]
    command += ["--threads", "1", "--profile"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shares = re.findall(
        r"matrix products \((.+)\): ([\d.]+) of ([\d.]+) s", result.stdout
    )
    assert [name for name, _, _ in shares] == ["experimental.pet_ecse", "pet"]
    for _, products, total in shares:
        assert 0.0 < float(products) < float(total)
    bound = re.search(r"matrix products free: ([\d.]+)", result.stdout)
    assert float(bound.group(1)) == pytest.approx(
        float(shares[0][1]) / float(shares[1][2]), rel=1e-2
    )


def test_water_bend_closes_one_angle_and_keeps_the_bonds():
    water_bend = _benchmark_module("water_bend")
    atoms = _benchmark_module("engines").load_system("water")
    oxygen = 5
    hydrogens = np.flatnonzero(atoms.numbers == 1)
    bonded = hydrogens[np.argsort(atoms.get_distances(oxygen, hydrogens, mic=True))]
    bent, start = water_bend.bent_positions(atoms, oxygen, np.radians(60.0))
    assert 95.0 < np.degrees(start) < 115.0
    moved = atoms.copy()
    moved.set_positions(bent)
    assert moved.get_angle(bonded[0], oxygen, bonded[1], mic=True) == pytest.approx(
        60.0, abs=1e-8
    )
    for hydrogen in bonded[:2]:
        assert moved.get_distance(oxygen, hydrogen, mic=True) == pytest.approx(
            atoms.get_distance(oxygen, hydrogen, mic=True), abs=1e-12
        )
    unchanged = np.delete(np.arange(len(atoms)), bonded[1])
    np.testing.assert_array_equal(bent[unchanged], atoms.positions[unchanged])


def test_frame_roughness_is_zero_for_a_translation_only():
    frame_roughness = _benchmark_module("frame_roughness")
    from metatrain_pet.ecse.hypers import resolve_ecse_hypers
    from metatrain_pet.ecse.symmetrizer import Symmetrizer

    atoms = _benchmark_module("engines").load_system("ethanol")
    start = atoms.get_positions()
    config = resolve_ecse_hypers(None, "loose", mode="layerwise")
    symmetrizer = Symmetrizer(config, [])
    parameters = np.linspace(0.0, 1.0, 5)
    moved = start + np.array([0.3, -0.2, 0.1])
    second, counts = frame_roughness.roughness(
        symmetrizer, atoms, start, moved, parameters
    )
    assert second.shape == (3, len(atoms)) and np.all(counts > 0)
    assert np.max(second) < 1e-8
    bent = start + 0.05 * np.random.default_rng(0).normal(size=start.shape)
    second, _ = frame_roughness.roughness(symmetrizer, atoms, start, bent, parameters)
    assert np.max(second) > 1e-3


@pytest.mark.slow
def test_engines_benchmark_gives_the_closest_approach_in_ipi_too(tmp_path):
    model_path = tmp_path / "model.pt"
    untrained_energy_model(**TINY_SIZES).export().save(str(model_path))
    command = [sys.executable, str(REPO / "benchmarks" / "engines.py")]
    command += [str(model_path), "--steps", "4", "--systems", "ethanol"]
    command += ["--variants", "raw", "--engines", "ipi", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    row = re.search(
        r"^ipi\s+raw\s+ethanol\s+4\s+0\s+\S+\s+\S+\s+\S+\s+(\S+)$", result.stdout, re.M
    )
    assert 0.8 < float(row.group(1)) < 1.1


def test_force_spectrum_finds_a_feature_narrower_than_a_step():
    force_spectrum = _benchmark_module("force_spectrum")
    time = 0.5 * np.arange(400)
    smooth = np.sin(2 * np.pi * 0.02 * time)[:, None, None] * np.ones((1, 3, 3))
    shares = force_spectrum.band_shares(smooth, 0.5)
    assert len(shares) == len(force_spectrum.BANDS)
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] > 0.99 and sum(shares[4:]) < 1e-9

    noise = np.random.default_rng(0).normal(size=(4000, 2, 3))
    assert sum(force_spectrum.band_shares(noise, 0.5)[4:]) == pytest.approx(0.7, 0.05)

    spiked = smooth.copy()
    spiked[200, 1, 0] += 0.3
    assert sum(force_spectrum.band_shares(spiked, 0.5)[4:]) > 1e-5
    step, atom, norm = force_spectrum.largest_events(spiked, 1)[0]
    assert (step, atom) == (200, 1) and norm == pytest.approx(0.6, rel=0.01)
