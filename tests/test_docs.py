"""The documentation site builds with warnings as errors, its API reference from
the docstrings and its gallery of tutorials executed (issue 19): a failing example
or a broken docstring fails the test suite, hence CI."""

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
GALLERY = DOCS.parent / "examples" / "gallery"

TUTORIALS = {
    "plot_1_train_and_evaluate": 2,
    "plot_2_exact_symmetry": 1,
    "plot_3_molecular_dynamics": 2,
    "plot_4_dipoles": 1,
    "plot_5_symmetry_report": 1,
}
"""Every tutorial of ``examples/gallery`` and the number of figures it ends in."""


def test_site_builds_with_the_gallery_executed(tmp_path):
    for module in ("sphinx", "myst_parser", "furo", "sphinx_gallery"):
        pytest.importorskip(module)
    sources = sorted(path.name for path in GALLERY.iterdir())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "-q",
            "-E",
            str(DOCS),
            str(tmp_path),
            # execute every tutorial, even one unchanged since the last build
            "-D",
            "sphinx_gallery_conf.run_stale_examples=1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # the tutorials write their outputs elsewhere, never beside their sources
    assert sorted(path.name for path in GALLERY.iterdir()) == sources
    for tutorial, figures in TUTORIALS.items():
        page = (tmp_path / "gallery" / f"{tutorial}.html").read_text()
        for figure in range(1, figures + 1):
            assert f"sphx_glr_{tutorial}_{figure:03d}.png" in page
    symmetry = (tmp_path / "gallery" / "plot_2_exact_symmetry.html").read_text()
    assert "ECSE" in symmetry and "spread" in symmetry  # the printed output
    api = (tmp_path / "api.html").read_text()
    assert "symmetrize" in api and "max_evaluated_pairs" in api
