"""Smoothness of ECSE-symmetrized models (App. F.12 and the events of App. F.3-F.5):
no jumps under small noise, across the outer cutoff, when the closest neighbours
swap, or through collinearity; forces are the derivatives of the energy."""

import ase.build
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ecse_helpers import (
    assert_continuous_scan,
    energies_and_forces,
    evaluate,
    random_methane,
    stretched_methane,
)

from metatrain_pet.ecse import symmetrize

DATA = __file__.rsplit("/", 3)[0] + "/tests/data"


def test_small_noise_gives_small_changes_fig6(toy_model):
    """App. F.12: random CH4, Gaussian noise of decreasing amplitude; the change of
    the prediction must shrink proportionally to the amplitude."""
    model = symmetrize(toy_model)
    base = random_methane(10)
    amplitudes = [1e-2, 1e-3, 1e-4, 1e-5]
    rng = np.random.default_rng(1)
    structures = list(base)
    for amplitude in amplitudes:
        for atoms in base:
            noisy = atoms.copy()
            noisy.positions += amplitude * rng.normal(size=noisy.positions.shape)
            structures.append(noisy)
    energies, forces = energies_and_forces(model, structures)
    reference = energies[: len(base)]
    slopes = [np.linalg.norm(f) * np.sqrt(3) for f in forces[: len(base)]]
    for index, amplitude in enumerate(amplitudes):
        start = len(base) * (index + 1)
        changes = np.abs(energies[start : start + len(base)] - reference)
        # |ΔE| <= |∇E|·|δ| to first order, with |δ| ~ amplitude·sqrt(3 N)
        bound = 3.0 * np.array(slopes) * amplitude * np.sqrt(5) + 50 * amplitude**2
        assert np.all(changes <= bound), (amplitude, changes, bound)


def test_atom_crossing_the_outer_cutoff(toy_model):
    """An N atom leaves ethanol along x, crossing the model cutoff (4 Å), R_out (5 Å)
    and the frame search radius (5.59 Å)."""
    ethanol = ase.io.read(f"{DATA}/ethanol_40.xyz", 0)
    anchor = ethanol.positions[np.argmax(ethanol.positions[:, 0])]

    def make_structure(distance):
        return ethanol + Atoms("N", positions=[anchor + [distance, 0.0, 0.0]])

    model = symmetrize(toy_model)
    assert_continuous_scan(model, make_structure, np.arange(3.8, 6.0, 0.05))


@pytest.mark.parametrize("mode", ["global", "per_atom"])
def test_closest_neighbours_swapping(toy_model, mode):
    """One H of CH4 is stretched through the C-H distance of the three others, so
    the two closest neighbours of C, which define the dominant frames, change
    (tight preset: the sharpest case)."""
    model = symmetrize(toy_model, preset="tight", mode=mode)
    assert_continuous_scan(model, stretched_methane, np.arange(-0.12, 0.12, 0.006))


@pytest.mark.parametrize("fallback", ["aux", "adaptive", "adaptive_near_collinear"])
def test_bent_molecule_straightening_through_collinearity(
    toy_model, aux_model, fallback
):
    """CO2 bent from 150° through 180° to 170° the other way. With ``aux``, energies
    and forces are continuous. With ``adaptive`` (a sketch in App. F.3) the energy is
    continuous, but the frames of a nearly collinear environment all see the
    molecule bent in the same way, so E(θ) ≈ E(0) + c|θ| has a cusp at 180° and the
    forces jump there: only the energy is checked. ``adaptive_near_collinear``
    passes from the fixed ω to Eq. 21 between 153° and 162° (sin² of the bend
    from 0.2 to 0.1 for the carbon)."""
    if fallback == "aux":
        model = symmetrize(toy_model, aux_model=aux_model)
    else:
        model = symmetrize(toy_model, fallback=fallback)

    def make_structure(angle):
        half = (np.pi - np.radians(angle)) / 2
        positions = [
            [0.0, 0.0, 0.0],
            [1.16 * np.sin(half), 1.16 * np.cos(half), 0.0],
            [-1.16 * np.sin(half), 1.16 * np.cos(half), 0.0],
        ]
        return Atoms("COO", positions=positions)

    assert_continuous_scan(
        model,
        make_structure,
        np.arange(-30.0, 10.0, 0.5),
        check_forces=fallback == "aux",
    )


@pytest.mark.parametrize("mode", ["global", "per_atom"])
def test_forces_are_derivatives_of_the_energy(toy_model, mode):
    """Central finite differences of the symmetrized energy (float64) along random
    directions, against the autograd forces: agreement to 1e-6."""
    model = symmetrize(toy_model, mode=mode)
    ethanol = ase.io.read(f"{DATA}/ethanol_40.xyz", 0)
    rng = np.random.default_rng(3)
    directions = rng.normal(size=(3,) + ethanol.positions.shape)
    directions /= np.linalg.norm(directions, axis=(1, 2), keepdims=True)
    h = 1e-5
    structures = [ethanol]
    for direction in directions:
        for sign in (1.0, -1.0):
            displaced = ethanol.copy()
            displaced.positions += sign * h * direction
            structures.append(displaced)
    energies, forces = energies_and_forces(model, structures)
    for index, direction in enumerate(directions):
        finite_difference = (energies[1 + 2 * index] - energies[2 + 2 * index]) / (
            2 * h
        )
        analytic = -np.sum(forces[0] * direction)
        assert finite_difference == pytest.approx(analytic, rel=1e-6, abs=1e-9)


def test_stress_is_the_strain_derivative(toy_model):
    """Periodic water (per_atom, tight, R_out = 3.5 Å): the autograd stress matches
    a finite difference of the energy under a small strain."""
    atoms = ase.io.read(f"{DATA}/water64_2.xyz", 0)
    model = symmetrize(toy_model, mode="per_atom", preset="tight", r_out=3.5)
    stress = evaluate(model, atoms, stress=True)["stress"]
    h = 1e-5
    strain = np.zeros((3, 3))
    strain[0, 1] = strain[1, 0] = 0.5
    strained = []
    for sign in (1.0, -1.0):
        deformation = np.eye(3) + sign * h * strain
        copy = atoms.copy()
        copy.set_cell(atoms.cell.array @ deformation, scale_atoms=False)
        copy.positions = atoms.positions @ deformation
        strained.append(copy)
    energies, _ = energies_and_forces(model, strained)
    finite_difference = (energies[0] - energies[1]) / (2 * h) / atoms.get_volume()
    assert finite_difference == pytest.approx(np.sum(stress * strain), rel=1e-6)
