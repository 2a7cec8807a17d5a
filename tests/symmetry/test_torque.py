"""The net torque reveals broken rotational symmetry of isolated structures."""

import ase
import numpy as np
import pytest

from metatrain_pet.symmetry.diagnostics import net_torque, predict
from metatrain_pet.symmetry.grid import grid_average


def test_central_forces_have_no_torque():
    atoms = ase.Atoms("H3", positions=[[0, 0, 0], [1.0, 0.2, 0], [0.3, 1.1, 0.4]])
    # pairwise forces along the bonds, equal and opposite
    forces = np.zeros((3, 3))
    for i, j, strength in ((0, 1, 0.7), (0, 2, -0.3), (1, 2, 1.1)):
        bond = atoms.positions[j] - atoms.positions[i]
        forces[i] += strength * bond
        forces[j] -= strength * bond
    np.testing.assert_allclose(net_torque(atoms, forces), 0.0, atol=1e-14)

    # translation leaves the torque unchanged, a tangential force does not
    atoms.positions += [5.0, -3.0, 2.0]
    np.testing.assert_allclose(net_torque(atoms, forces), 0.0, atol=1e-13)
    forces[1] += [0.0, 0.0, 1.0]
    forces[0] -= [0.0, 0.0, 1.0]
    assert np.linalg.norm(net_torque(atoms, forces)) > 0.5


def test_periodic_structures_have_no_torque():
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]], cell=[5, 5, 5], pbc=True)
    assert net_torque(atoms, np.zeros((2, 3))) is None


def _mean_torque(model, structures):
    predictions = predict(model, structures, batch_size=1)
    return np.mean(
        [
            np.linalg.norm(net_torque(atoms, prediction.forces))
            for atoms, prediction in zip(structures, predictions, strict=True)
        ]
    )


def test_torque_flags_raw_model_but_not_averaged_one(raw_model, ethanol_frames):
    structures = ethanol_frames[:2]
    raw_torque = _mean_torque(raw_model, structures)
    averaged_torque = _mean_torque(grid_average(raw_model, 3), structures)
    assert raw_torque > 1e-3
    assert averaged_torque < 1e-2 * raw_torque


def test_torque_of_ecse_model_vanishes(raw_model, ethanol_frames):
    ecse = pytest.importorskip("metatrain_pet.ecse")
    if not hasattr(ecse, "symmetrize"):
        pytest.skip("metatrain_pet.ecse.symmetrize is not available yet")
    symmetrized = ecse.symmetrize(raw_model)
    assert _mean_torque(symmetrized, ethanol_frames) < 1e-6
