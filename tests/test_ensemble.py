"""``metatrain-pet ensemble``: the mean of the members' energies and forces, the
members and their spread, in one exported model that ECSE can wrap (issue 16)."""

import ase.io
import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput, load_atomistic_model
from metatomic_ase import MetatomicCalculator

from metatrain_pet.cli import main
from metatrain_pet.ecse import symmetrize
from metatrain_pet.ensemble import build_ensemble
from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model
from pet_helpers import DATA

OUTPUTS = {
    name: ModelOutput(per_atom=False)
    for name in ("energy", "energy_ensemble", "energy_uncertainty")
}


@pytest.fixture(scope="module")
def members():
    return [
        untrained_energy_model(dtype=torch.float64, seed=seed, **TINY_SIZES).export()
        for seed in (0, 1, 2)
    ]


@pytest.fixture(scope="module")
def frames():
    return ase.io.read(DATA / "ethanol_40.xyz", ":3")


def _energy_and_forces(model, atoms):
    atoms = atoms.copy()
    atoms.calc = MetatomicCalculator(model, check_consistency=True)
    return atoms.get_potential_energy(), atoms.get_forces()


def test_mean_members_and_spread(members, frames):
    ensemble = build_ensemble(members)
    calculator = MetatomicCalculator(ensemble, check_consistency=True)
    for atoms in frames:
        alone = [_energy_and_forces(member, atoms) for member in members]
        energies = np.array([energy for energy, _ in alone])
        energy, forces = _energy_and_forces(ensemble, atoms)
        assert energy == pytest.approx(energies.mean(), abs=1e-12, rel=0)
        mean_forces = np.mean([forces for _, forces in alone], axis=0)
        np.testing.assert_allclose(forces, mean_forces, atol=1e-12, rtol=0)
        results = calculator.run_model(atoms, OUTPUTS)
        ensemble_values = results["energy_ensemble"].block().values.detach().numpy()
        np.testing.assert_allclose(ensemble_values.ravel(), energies, atol=1e-12)
        spread = float(results["energy_uncertainty"].block().values)
        assert spread == pytest.approx(energies.std(), abs=1e-12)


def test_identical_members_have_no_spread(members, frames):
    calculator = MetatomicCalculator(build_ensemble([members[0]] * 3))
    results = calculator.run_model(frames[0], OUTPUTS)
    assert float(results["energy_uncertainty"].block().values) == 0.0


def test_ecse_wraps_an_ensemble(members, frames):
    """ECSE is linear: ECSE of the mean is the mean of the members' ECSE."""
    symmetrized = symmetrize(build_ensemble(members))
    energy, _ = _energy_and_forces(symmetrized, frames[0])
    alone = [_energy_and_forces(symmetrize(m), frames[0])[0] for m in members]
    assert energy == pytest.approx(np.mean(alone), abs=1e-10, rel=0)


def test_command(members, frames, tmp_path):
    paths = []
    for index, member in enumerate(members[:2]):
        paths.append(str(tmp_path / f"member{index}.pt"))
        member.save(paths[-1])
    output = tmp_path / "ensemble.pt"
    assert main(["ensemble", *paths, "-o", str(output)]) == 0
    loaded = load_atomistic_model(str(output))
    energy, _ = _energy_and_forces(loaded, frames[0])
    alone = [_energy_and_forces(member, frames[0])[0] for member in members[:2]]
    assert energy == pytest.approx(np.mean(alone), abs=1e-12, rel=0)
    assert main(["ensemble", paths[0], "-o", str(output)]) == 1
