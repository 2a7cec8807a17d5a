"""Evaluation of exported models on ASE structures, for the ECSE tests."""

from typing import Dict, Sequence

import numpy as np
import torch
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
