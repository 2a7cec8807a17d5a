"""Measurements of broken rotational symmetry for exported models.

The quantities follow Langer, Pozdnyakov and Ceriotti, "Probing the effects of
broken symmetries in machine learning" (2024):

- the net torque ``sum_i r_i x F_i`` on an isolated structure, which vanishes for a
  rotationally invariant energy and whose magnitude drops with the averaging grid
  (main text, Fig. 1b);
- the energy and force differences between a model and its rotational average
  (Supp. Table II and Supp. Fig. 1);
- the spread of the energy and of the back-rotated forces over random orientations
  of one structure, zero for an invariant model.
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import ase
import numpy as np
import torch
from metatomic.torch import (
    AtomisticModel,
    ModelEvaluationOptions,
    ModelOutput,
    systems_to_torch,
)
from vesin.metatomic import neighbor_lists_for_model

from ..geometry.rotations import random_rotations


@dataclass
class EnergyAndForces:
    """Energy (eV) and forces (eV/Å, ``None`` when not computed) predicted for
    one structure."""

    energy: float
    forces: Optional[np.ndarray]


def predict(
    model: AtomisticModel,
    structures: Sequence[ase.Atoms],
    batch_size: int = 32,
    forces: bool = True,
) -> List[EnergyAndForces]:
    """Energies and conservative forces (``-dE/dr`` through autograd).

    Structures are evaluated ``batch_size`` at a time in one model call. With
    ``forces=False`` only energies are computed, without an autograd graph: a
    symmetrized model then needs memory for one of its evaluations at a time instead
    of all of them.
    """
    if "energy" not in model.capabilities().outputs:
        raise ValueError("the model does not declare an 'energy' output")
    dtype = getattr(torch, model.capabilities().dtype)
    calculators = neighbor_lists_for_model("Angstrom", model)
    options = ModelEvaluationOptions(
        length_unit="Angstrom",
        outputs={"energy": ModelOutput(unit="eV", sample_kind="system")},
    )
    predictions: List[EnergyAndForces] = []
    for start in range(0, len(structures), batch_size):
        systems = systems_to_torch(
            list(structures[start : start + batch_size]),
            dtype=dtype,
            positions_requires_grad=forces,
        )
        for calculator in calculators:
            calculator.add_neighbor_list(systems)
        with torch.set_grad_enabled(forces):
            energies = model(systems, options, check_consistency=False)["energy"]
        energies = energies.block().values.reshape(-1)
        if not forces:
            predictions.extend(
                EnergyAndForces(energy=float(energy), forces=None)
                for energy in energies
            )
            continue
        gradients = torch.autograd.grad(
            energies.sum(), [system.positions for system in systems]
        )
        for energy, gradient in zip(energies, gradients, strict=True):
            predictions.append(
                EnergyAndForces(
                    energy=float(energy.detach()),
                    forces=-gradient.to(torch.float64).numpy(),
                )
            )
    return predictions


def net_torque(atoms: ase.Atoms, forces: np.ndarray) -> Optional[np.ndarray]:
    """Net torque ``sum_i (r_i - r_c) x F_i`` about the centroid ``r_c``.

    Returns ``None`` for periodic structures, where the torque is not defined.
    Taking the centroid as origin makes the result independent of where the
    structure sits even if the forces do not sum exactly to zero.
    """
    if np.any(atoms.pbc):
        return None
    positions = atoms.positions - atoms.positions.mean(axis=0)
    return np.cross(positions, forces).sum(axis=0)


def rotated(atoms: ase.Atoms, matrix: np.ndarray) -> ase.Atoms:
    """Copy of ``atoms`` with positions and cell transformed by ``matrix``."""
    copy = atoms.copy()
    copy.positions = atoms.positions @ matrix.T
    copy.cell = np.asarray(atoms.cell) @ matrix.T
    return copy


def random_orthogonal_matrices(
    count: int, seed: int, inversion: bool = True
) -> np.ndarray:
    """``count`` uniformly distributed O(3) (SO(3) without inversion) matrices,
    reproducible from ``seed``."""
    if count < 1:
        raise ValueError(f"the number of rotations must be positive, got {count}")
    generator = torch.Generator().manual_seed(seed)
    matrices = random_rotations(
        count, inversion, torch.float64, torch.device("cpu"), generator
    )
    return matrices.numpy()


@dataclass
class SymmetryErrors:
    """Spread of the predictions over orientations of one structure.

    ``energy`` is the standard deviation (eV) of the energy; ``forces`` the RMS
    deviation (eV/Å) of the back-rotated forces ``R^T F(R A)`` from their mean, i.e.
    the violation of ``F(R A) = R F(A)``, NaN when forces were not computed. Both
    vanish for an invariant model.
    """

    energy: float
    forces: float


def symmetry_errors(
    model: AtomisticModel,
    atoms: ase.Atoms,
    rotations: np.ndarray,
    batch_size: int = 32,
    forces: bool = True,
) -> SymmetryErrors:
    """Evaluate ``atoms`` rotated by each of ``rotations`` and measure the spread
    (of the energy only with ``forces=False``)."""
    copies = [rotated(atoms, matrix) for matrix in rotations]
    predictions = predict(model, copies, batch_size=batch_size, forces=forces)
    energies = np.array([prediction.energy for prediction in predictions])
    if not forces:
        return SymmetryErrors(energy=float(np.std(energies)), forces=float("nan"))
    back_rotated = np.stack(
        [
            prediction.forces @ matrix
            for prediction, matrix in zip(predictions, rotations, strict=True)
        ]
    )
    deviations = back_rotated - back_rotated.mean(axis=0)
    return SymmetryErrors(
        energy=float(np.std(energies)),
        forces=float(np.sqrt(np.mean(deviations**2))),
    )
