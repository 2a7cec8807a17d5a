"""Long-range electrostatics (issue 17, App. F.9): a charged dimer pulled apart,
whose energy a short-range model cannot follow beyond its cutoff and the
long-range model follows as 1/r; ECSE (global, layer-wise) on top stays exact;
``selected_atoms`` selects outputs; periodic structures (P3M, Ewald) export and run
in ASE."""

import copy

import ase
import ase.build
import numpy as np
import pytest
import torch
from metatensor.torch import Labels
from metatomic.torch import ModelOutput
from metatomic_ase import MetatomicCalculator
from scipy.spatial.transform import Rotation

from pet_helpers import (
    DATA,
    energy_and_forces,
    energy_model,
    system_from_atoms,
    tiny_hypers,
)
from test_end_to_end import mtt

LONG_RANGE = {
    "enable": True,
    "use_ewald": False,
    "smearing": 1.4,
    "kspace_resolution": 1.33,
    "interpolation_nodes": 5,
}
COULOMB = 14.3996  # e² / (4 π ε0) in eV Å

OPTIONS = """
seed: 0
base_precision: 64
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.0
    d_pet: 16
    d_feedforward: 32
    d_readout: 16
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 1
    long_range:
      enable: {long_range}
  training:
    num_epochs: 80
    batch_size: 16
    learning_rate: 3.0e-3
    augmentation: none
training_set: dimers.xyz
validation_set: 0.1
test_set: 0.0
"""


def _dimer(distance: float) -> ase.Atoms:
    """Na⁺ and Cl⁻ along a random direction: Coulomb attraction plus a
    short-range repulsion."""
    direction = Rotation.random(random_state=int(distance * 1000)).apply([1, 0, 0])
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], distance * direction])
    atoms.info["energy"] = -COULOMB / distance + 20.0 * np.exp(-2.0 * distance)
    return atoms


@pytest.fixture(scope="module")
def dimer_models(tmp_path_factory):
    """A short-range and a long-range PET trained on dimers from 1.8 to 12 Å."""
    distances = np.linspace(1.8, 12.0, 80)
    models = {}
    for long_range in (False, True):
        folder = tmp_path_factory.mktemp(f"dimer_{long_range}")
        ase.io.write(folder / "dimers.xyz", [_dimer(r) for r in distances])
        options = OPTIONS.format(long_range=str(long_range).lower())
        (folder / "options.yaml").write_text(options)
        mtt("train", "options.yaml", "-o", "model.pt", cwd=folder)
        models[long_range] = MetatomicCalculator(str(folder / "model.pt"))
    return models


def _energies(calculator, distances) -> np.ndarray:
    energies = []
    for distance in distances:
        atoms = _dimer(distance)
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
    return np.array(energies)


@pytest.mark.slow
def test_charged_dimer_follows_one_over_r_beyond_the_cutoff(dimer_models):
    distances = np.linspace(5.0, 11.0, 7)  # all beyond the 4 Å cutoff
    reference = -COULOMB / distances
    expected_change = reference[-1] - reference[0]  # 1.57 eV
    short = _energies(dimer_models[False], distances)
    # beyond its cutoff a short-range model sees two isolated atoms: flat
    assert np.ptp(short) < 1e-6
    long = _energies(dimer_models[True], distances)
    assert abs((long[-1] - long[0]) - expected_change) < 0.2 * expected_change
    # the shape is 1/r: a fit a/r + b explains the curve
    design = np.stack([1 / distances, np.ones_like(distances)], axis=1)
    (slope, _), *_ = np.linalg.lstsq(design, long, rcond=None)
    assert abs(slope + COULOMB) < 0.2 * COULOMB, slope


def _long_range_model(atomic_types, mode=None):
    overrides = {"long_range": LONG_RANGE}
    if mode is not None:
        ecse = copy.deepcopy(tiny_hypers()["ecse"])
        ecse.update(enable=True, mode=mode, fallback="adaptive")
        overrides["ecse"] = ecse
    return energy_model(atomic_types, **overrides)


def _carbon():
    atoms = ase.build.bulk("C", "diamond", a=3.57, cubic=True)
    atoms.rattle(0.05, seed=3)
    return atoms


def _rotated(atoms, seed):
    rotation = Rotation.random(random_state=seed).as_matrix()
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.cell = atoms.cell.array @ rotation.T
    return rotated, rotation


@pytest.mark.parametrize(
    "mode, structure",
    [("global", "ethanol"), ("layerwise", "ethanol"), ("layerwise", "carbon")],
)
def test_ecse_on_top_of_the_long_range_part_is_exact(mode, structure):
    atoms = (
        ase.io.read(DATA / "ethanol_40.xyz", 0) if structure == "ethanol" else _carbon()
    )
    model = _long_range_model(sorted(set(atoms.numbers)), mode)
    raw = _long_range_model(sorted(set(atoms.numbers)))
    energy, forces = energy_and_forces(model, atoms)
    raw_energies = []
    for seed in (1, 2):
        rotated, rotation = _rotated(atoms, seed)
        rotated_energy, rotated_forces = energy_and_forces(model, rotated)
        # exact up to the rounding of the P3M mesh sums (periodic): ~1e-9 relative
        # in float64, against > 1e-6 absolute for the raw model
        assert abs(rotated_energy - energy) < 1e-8 * abs(energy)
        expected = forces.numpy() @ rotation.T
        np.testing.assert_allclose(rotated_forces.numpy(), expected, atol=1e-7)
        raw_energies.append(energy_and_forces(raw, rotated)[0])
    assert abs(raw_energies[0] - raw_energies[1]) > 1e-6  # raw PET is not invariant


def test_selected_atoms_select_outputs_of_the_whole_structure():
    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    model = _long_range_model([1, 6, 8])
    system = system_from_atoms(model, atoms)
    outputs = {"energy": ModelOutput(sample_kind="atom")}
    full = model([system], outputs)["energy"].block().values
    selected = Labels(["system", "atom"], torch.tensor([[0, 2], [0, 5]]))
    part = model([system], outputs, selected)["energy"].block().values
    torch.testing.assert_close(part, full[[2, 5]])


def test_per_atom_ecse_is_refused_with_the_long_range_part():
    with pytest.raises(ValueError, match="'per_atom'.*long_range"):
        _long_range_model([1, 6, 8], "per_atom")


@pytest.mark.parametrize("use_ewald", [False, True])
def test_periodic_box_exports_and_runs_in_ase(use_ewald, tmp_path):
    atoms = _carbon()
    hypers = dict(LONG_RANGE, use_ewald=use_ewald)
    model = energy_model([6], long_range=hypers)
    energy, forces = energy_and_forces(model, atoms)
    model.export().save(str(tmp_path / "model.pt"))
    atoms.calc = MetatomicCalculator(str(tmp_path / "model.pt"))
    assert abs(atoms.get_potential_energy() - energy) < 1e-6 * max(1, abs(energy))
    np.testing.assert_allclose(atoms.get_forces(), forces.numpy(), atol=1e-6)
