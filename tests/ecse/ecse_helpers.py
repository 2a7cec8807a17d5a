"""Evaluation of exported models on ASE structures, for the ECSE tests."""

from typing import Dict, Sequence

import numpy as np
import torch
from ase import Atoms
from metatomic.torch import ModelEvaluationOptions, ModelOutput, System
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from scipy.spatial.transform import Rotation


def evaluate(
    model,
    atoms,
    outputs: Sequence[str] = ("energy",),
    dtype: torch.dtype = torch.float64,
    stress: bool = False,
) -> Dict[str, np.ndarray]:
    """Outputs (per structure) of ``model`` for ``atoms``, plus ``forces`` (and
    ``stress`` when asked) as autograd derivatives of the energy."""
    strain = torch.eye(3, dtype=dtype, requires_grad=stress)
    positions = torch.tensor(atoms.positions, dtype=dtype, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, dtype=dtype)
    system = System(
        types=torch.tensor(atoms.numbers, dtype=torch.int32),
        positions=positions @ strain,
        cell=cell @ strain,
        pbc=torch.tensor(atoms.pbc),
    )
    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={name: ModelOutput(sample_kind="system") for name in outputs},
    )
    results = model([system], options, check_consistency=True)
    values = {
        name: results[name].block().values.detach().numpy().astype(np.float64)[0]
        for name in outputs
    }
    if "energy" in outputs:
        energy = results["energy"].block().values.sum()
        inputs = [positions, strain] if stress else [positions]
        gradients = torch.autograd.grad(energy, inputs)
        values["energy"] = energy.item()
        values["forces"] = -gradients[0].numpy().astype(np.float64)
        if stress:
            values["stress"] = (
                gradients[1].numpy().astype(np.float64) / atoms.get_volume()
            )
    return values


def rotated(atoms, rotation: np.ndarray):
    """A copy of ``atoms`` rotated by the 3x3 matrix ``rotation`` (cell included)."""
    copy = atoms.copy()
    copy.positions = atoms.positions @ rotation.T
    copy.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    return copy


def random_rotations(n: int, seed: int = 0) -> np.ndarray:
    return Rotation.random(n, random_state=seed).as_matrix()


def relative(a, b) -> float:
    """max |a - b| / max(max |b|, 1): relative to the size of the expected value, or
    absolute (in model units) when that vanishes by symmetry, e.g. the dipole of
    benzene."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0))


def covariance_errors(model, atoms, rotations, outputs=("energy",), **kwargs):
    """Largest relative violation of invariance (energy) and covariance (forces,
    vectors ``mtt::dipole`` and rank-2 ``mtt::polarizability``, stress) over
    ``rotations``."""
    reference = evaluate(model, atoms, outputs, **kwargs)
    errors: Dict[str, float] = {}
    for rotation in rotations:
        result = evaluate(model, rotated(atoms, rotation), outputs, **kwargs)
        expected = {"energy": reference["energy"]}
        expected["forces"] = reference["forces"] @ rotation.T
        if "stress" in reference:
            expected["stress"] = rotation @ reference["stress"] @ rotation.T
        if "mtt::dipole" in reference:
            expected["mtt::dipole"] = rotation @ reference["mtt::dipole"][:, 0]
            result["mtt::dipole"] = result["mtt::dipole"][:, 0]
        if "mtt::polarizability" in reference:
            tensor = reference["mtt::polarizability"][:, :, 0]
            expected["mtt::polarizability"] = rotation @ tensor @ rotation.T
            result["mtt::polarizability"] = result["mtt::polarizability"][:, :, 0]
        for name, value in expected.items():
            errors[name] = max(errors.get(name, 0.0), relative(result[name], value))
    return errors


def energies_and_forces(model, structures, dtype: torch.dtype = torch.float64):
    """Energies (N,) and forces (list of (n_atoms, 3)) of many structures, evaluated
    in one call of ``model``."""
    systems = []
    positions = []
    for atoms in structures:
        position = torch.tensor(atoms.positions, dtype=dtype, requires_grad=True)
        positions.append(position)
        system = System(
            types=torch.tensor(atoms.numbers, dtype=torch.int32),
            positions=position,
            cell=torch.tensor(atoms.cell.array, dtype=dtype),
            pbc=torch.tensor(atoms.pbc),
        )
        systems.append(
            get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
        )
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={"energy": ModelOutput(sample_kind="system")}
    )
    energy = model(systems, options, check_consistency=False)["energy"].block().values
    gradients = torch.autograd.grad(energy.sum(), positions)
    forces = [-gradient.numpy() for gradient in gradients]
    return energy.detach().numpy()[:, 0], forces


def random_methane(n_structures, seed=0):
    """CH4 with random C-H distances (0.9-1.6 Å) and directions, like the random
    methane data set of App. C."""
    rng = np.random.default_rng(seed)
    structures = []
    for _ in range(n_structures):
        directions = rng.normal(size=(4, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        hydrogens = directions * rng.uniform(0.9, 1.6, size=(4, 1))
        structures.append(Atoms("CH4", positions=np.vstack([[0, 0, 0], hydrogens])))
    return structures


def _steps(values):
    return np.abs(np.diff(values, axis=0)).reshape(len(values) - 1, -1).max(axis=1)


def assert_continuous_scan(
    model, make_structure, parameters, n_refined=3, check_forces=True
):
    """Energies and forces along a scan have no jump.

    The steps that stand out most against their neighbouring steps (where a jump
    would be) are refined into 8 sub-steps: a smooth, if sharp, feature spreads over
    the sub-steps, each much smaller than the step, while a jump of size J keeps a
    sub-step of size J."""
    structures = [make_structure(x) for x in parameters]
    energies, forces = energies_and_forces(model, structures)
    forces = np.stack(forces)
    assert np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))
    for values in (energies, forces) if check_forces else (energies,):
        steps = _steps(values)
        neighbors = np.maximum(np.roll(steps, 1), np.roll(steps, -1))
        suspicious = np.argsort(steps / (neighbors + 1e-12 * np.max(steps)))[::-1]
        for k in suspicious[:n_refined]:
            fine = np.linspace(parameters[k], parameters[k + 1], 9)
            fine_energies, fine_forces = energies_and_forces(
                model, [make_structure(x) for x in fine]
            )
            fine_values = fine_energies if values is energies else np.stack(fine_forces)
            assert _steps(fine_values).max() <= 0.5 * steps[k] + 1e-10 * np.max(
                np.abs(values)
            ), (k, steps[k], _steps(fine_values))
    return energies, forces


def stretched_methane(stretch: float):
    """CH4 with one H moved by ``stretch`` Å along its bond: through the C-H
    distance of the three others, the two closest neighbours of C, which define
    the dominant frames, change."""
    import ase.build

    atoms = ase.build.molecule("CH4")
    direction = atoms.positions[1] / np.linalg.norm(atoms.positions[1])
    atoms.positions[1] += stretch * direction
    return atoms
