"""One model file exposing ``energy`` (raw) and ``energy/symmetrized``."""

import numpy as np
import pytest
from metatomic.torch import load_atomistic_model
from metatomic_ase import MetatomicCalculator

from metatrain_pet.symmetry.diagnostics import predict
from metatrain_pet.symmetry.grid import grid_average
from metatrain_pet.symmetry.random_rotation import random_rotation_average
from metatrain_pet.symmetry.variants import with_symmetrized_variant


def _ase_energy_and_forces(model, atoms, variant):
    atoms = atoms.copy()
    atoms.calc = MetatomicCalculator(model, variants={"energy": variant})
    return atoms.get_potential_energy(), atoms.get_forces()


@pytest.fixture(scope="module")
def grid_variant_model(raw_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("variants") / "variant.pt"
    with_symmetrized_variant(raw_model, grid_average(raw_model, 2)).save(str(path))
    return load_atomistic_model(str(path))


def test_variant_model_declares_both_energies(grid_variant_model):
    outputs = grid_variant_model.capabilities().outputs
    assert "energy" in outputs and "energy/symmetrized" in outputs
    assert "raw" in outputs["energy"].description
    assert "O(3) average" in outputs["energy/symmetrized"].description
    assert outputs["energy/symmetrized"].unit == outputs["energy"].unit


def test_variants_agree_with_separate_models(
    raw_model, grid_variant_model, ethanol_frames
):
    atoms = ethanol_frames[1]
    separate = {
        None: _ase_energy_and_forces(raw_model, atoms, None),
        "symmetrized": _ase_energy_and_forces(grid_average(raw_model, 2), atoms, None),
    }
    for variant, (energy, forces) in separate.items():
        combined_energy, combined_forces = _ase_energy_and_forces(
            grid_variant_model, atoms, variant
        )
        assert combined_energy == pytest.approx(energy, abs=1e-10)
        np.testing.assert_allclose(combined_forces, forces, atol=1e-10)
    assert abs(separate[None][0] - separate["symmetrized"][0]) > 1e-4


def test_random_variant_agrees_with_separate_random_model(raw_model, ethanol_frames):
    combined = with_symmetrized_variant(
        raw_model, random_rotation_average(raw_model, seed=11), variant="random"
    )
    assert "energy/random" in combined.capabilities().outputs
    separate = random_rotation_average(raw_model, seed=11)
    atoms = ethanol_frames[:1]
    for _ in range(2):
        expected = predict(separate, atoms)[0]
        energy, forces = _ase_energy_and_forces(combined, atoms[0], "random")
        assert energy == pytest.approx(expected.energy, abs=1e-10)
        np.testing.assert_allclose(forces, expected.forces, atol=1e-10)


@pytest.mark.parametrize("variant", ["", "a/b", "with space"])
def test_invalid_variant_names_are_refused(raw_model, variant):
    with pytest.raises(ValueError, match="invalid variant name"):
        with_symmetrized_variant(raw_model, grid_average(raw_model, 0), variant)
