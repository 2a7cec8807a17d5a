"""The documentation site builds with warnings as errors, its API reference from
the docstrings and its gallery of tutorials executed (issue 19): a failing example
or a broken docstring fails the test suite, hence CI."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_site_builds_with_the_gallery_executed(tmp_path):
    for module in ("sphinx", "myst_parser", "furo", "sphinx_gallery"):
        pytest.importorskip(module)
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-E", str(DOCS), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tutorial = (tmp_path / "gallery" / "plot_exact_symmetry.html").read_text()
    assert "sphx_glr_plot_exact_symmetry_001.png" in tutorial  # the figure
    assert "ECSE" in tutorial and "spread" in tutorial  # the printed output
    api = (tmp_path / "api.html").read_text()
    assert "symmetrize" in api and "max_evaluated_pairs" in api
