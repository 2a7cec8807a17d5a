"""``benchmarks/run.py --quick`` as a smoke test: it runs from the repository alone
and writes its tables and plots. No assertion on timings (the machine is shared)."""

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
