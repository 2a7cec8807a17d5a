"""The i-PI multiple time-step example of docs/symmetry.md runs as documented."""

import re
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from metatrain_pet.symmetry.diagnostics import predict
from metatrain_pet.symmetry.grid import grid_average
from metatrain_pet.symmetry.variants import with_symmetrized_variant

DOCUMENTATION = Path(__file__).resolve().parents[2] / "docs" / "symmetry.md"


def documented_ipi_input() -> str:
    """The one XML block of the documentation."""
    (block,) = re.findall(r"```xml\n(.*?)```", DOCUMENTATION.read_text(), re.DOTALL)
    return block


@pytest.fixture
def _no_fusion():
    """i-PI evaluates models in its own threads, where the conftest's switch-off of
    TorchScript optimisation does not apply: at least skip the fusion compilation."""
    previous = torch.jit.set_fusion_strategy([("STATIC", 0), ("DYNAMIC", 0)])
    yield
    torch.jit.set_fusion_strategy(previous)


@pytest.mark.usefixtures("_no_fusion")
def test_documented_mts_input_runs(raw_model, ethanol_frames, tmp_path, monkeypatch):
    simulation_module = pytest.importorskip("ipi.engine.simulation")

    atoms = ethanol_frames[0].copy()
    atoms.cell = [30.0, 30.0, 30.0]
    atoms.center()
    ase.io.write(tmp_path / "ethanol.xyz", atoms)
    with_symmetrized_variant(raw_model, grid_average(raw_model, 0)).save(
        str(tmp_path / "model-mts.pt")
    )

    # one outer step of two inner steps keeps the test short
    xml = documented_ipi_input()
    xml = re.sub(r"<total_steps>\d+", "<total_steps>1", xml)
    xml = xml.replace("<nmts>[1, 10]</nmts>", "<nmts>[1, 2]</nmts>")
    xml = xml.replace('stride="10" filename="out"', 'stride="1" filename="out"')
    (tmp_path / "input.xml").write_text(xml)

    monkeypatch.chdir(tmp_path)
    with open("input.xml") as xml_file:
        simulation = simulation_module.Simulation.load_from_xml(
            xml_file, request_banner=False
        )
    simulation.run()

    properties = np.atleast_2d(np.loadtxt("mts.out"))
    assert properties.shape[1] == 5
    assert np.all(np.isfinite(properties))
    # with these MTS weights the potential is the symmetrized energy
    expected = predict(grid_average(raw_model, 0), [atoms])[0].energy
    assert properties[0, 4] == pytest.approx(expected, abs=1e-5)
