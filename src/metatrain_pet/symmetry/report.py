"""The symmetry report: how far a model is from rotational invariance.

For every structure the raw model is compared with its rotational average over a
fine grid (the reference, like the ``3i`` average of Table II in the supplement of
Langer, Pozdnyakov and Ceriotti, "Probing the effects of broken symmetries in machine
learning", 2024) and optionally with its ECSE symmetrization (Pozdnyakov and Ceriotti,
NeurIPS 2023, Sec. 5). For isolated structures the net torque of each model is
reported: it vanishes for an invariant energy. Coarser grids give the convergence of
the symmetry error with the grid order (Supp. Fig. 1 of the same paper).

Energies are in meV, forces in meV/Å and torques in meV (eV/Å times Å).
"""

from typing import Dict, List, Optional, Sequence

import ase
import numpy as np
from metatomic.torch import AtomisticModel

from ..systems.checks import report_problems
from .diagnostics import EnergyAndForces, net_torque, predict
from .grid import grid_average, grid_evaluation_count

MILLI = 1000.0


def _torques(
    structures: Sequence[ase.Atoms], predictions: List[EnergyAndForces]
) -> List[Optional[np.ndarray]]:
    return [
        net_torque(atoms, prediction.forces)
        for atoms, prediction in zip(structures, predictions, strict=True)
    ]


def _mean_torque(torques: List[Optional[np.ndarray]]) -> Optional[float]:
    """Mean norm (meV) of the torques of the isolated structures, if any."""
    norms = [np.linalg.norm(torque) for torque in torques if torque is not None]
    if len(norms) == 0:
        return None
    return MILLI * float(np.mean(norms))


def _differences(
    predictions: List[EnergyAndForces], reference: List[EnergyAndForces]
) -> Dict[str, List[float]]:
    """Per structure |E - E_ref| (meV) and force MAE (meV/Å)."""
    return {
        "energy": [
            MILLI * abs(value.energy - target.energy)
            for value, target in zip(predictions, reference, strict=True)
        ],
        "force": [
            MILLI * float(np.mean(np.abs(value.forces - target.forces)))
            for value, target in zip(predictions, reference, strict=True)
        ],
    }


def build_report(
    raw_model: AtomisticModel,
    structures: Sequence[ase.Atoms],
    order: int,
    ecse_model: Optional[AtomisticModel] = None,
    convergence_orders: Sequence[int] = (),
) -> dict:
    """Compare ``raw_model`` with its grid average (and ECSE) on ``structures``.

    :param raw_model: the model to diagnose
    :param structures: the structures to evaluate
    :param order: degree of the reference averaging grid
    :param ecse_model: ECSE-symmetrized version of ``raw_model``, if any
    :param convergence_orders: coarser grid degrees whose deviation from the
        reference grid is reported in ``convergence``
    :return: a JSON-serialisable dictionary
    """
    if len(structures) == 0:
        raise ValueError("no structures to evaluate")
    problems = report_problems(structures)
    for index, atoms in enumerate(structures):
        if len(atoms) == 0:
            raise ValueError(f"structure {index} has no atoms: nothing to evaluate")
    coarse_orders = _coarse_orders(convergence_orders, order)

    models = {"raw": raw_model, "grid": grid_average(raw_model, order)}
    if ecse_model is not None:
        models["ecse"] = ecse_model
    predictions = _predictions(models, structures)
    torques = {
        name: _torques(structures, values) for name, values in predictions.items()
    }
    compared = [name for name in models if name != "raw"]
    differences = {
        name: _differences(predictions["raw"], predictions[name]) for name in compared
    }
    return {
        "units": {"energy": "meV", "force": "meV/Angstrom", "torque": "meV"},
        "reference_order": order,
        "reference_evaluations": grid_evaluation_count(order),
        "models": list(models),
        "problems": problems,
        "structures": _per_structure(structures, predictions, differences, torques),
        "summary": {name: _mean_differences(differences[name]) for name in compared},
        "torque": {name: _mean_torque(values) for name, values in torques.items()},
        "convergence": _convergence(
            raw_model, structures, coarse_orders, predictions["grid"]
        ),
    }


def _mean_differences(differences: Dict[str, List[float]]) -> Dict[str, float]:
    """Mean energy and force differences over the structures."""
    return {
        "energy_mae": float(np.mean(differences["energy"])),
        "force_mae": float(np.mean(differences["force"])),
    }


def _coarse_orders(convergence_orders: Sequence[int], order: int) -> List[int]:
    """The distinct convergence orders, sorted, all below the reference ``order``."""
    coarse_orders = sorted(set(convergence_orders))
    if any(coarse >= order for coarse in coarse_orders):
        raise ValueError(
            f"convergence orders {coarse_orders} must be below the reference order "
            f"{order}"
        )
    return coarse_orders


def _predictions(
    models: Dict[str, AtomisticModel], structures: Sequence[ase.Atoms]
) -> Dict[str, List[EnergyAndForces]]:
    """Energies and forces of every model on every structure."""
    # symmetrized models keep the graphs of all their evaluations for autograd:
    # evaluate them one structure at a time to bound the memory
    return {
        name: predict(model, structures, batch_size=32 if name == "raw" else 1)
        for name, model in models.items()
    }


def _per_structure(
    structures: Sequence[ase.Atoms],
    predictions: Dict[str, List[EnergyAndForces]],
    differences: Dict[str, Dict[str, List[float]]],
    torques: Dict[str, List[Optional[np.ndarray]]],
) -> List[dict]:
    """One entry per structure: energies, differences from the raw model, torques."""
    per_structure = []
    for index, atoms in enumerate(structures):
        per_structure.append(
            {
                "index": index,
                "formula": atoms.get_chemical_formula(),
                "n_atoms": len(atoms),
                "periodic": bool(np.any(atoms.pbc)),
                "energy": {
                    name: values[index].energy for name, values in predictions.items()
                },
                "energy_difference": {
                    name: values["energy"][index]
                    for name, values in differences.items()
                },
                "force_mae": {
                    name: values["force"][index] for name, values in differences.items()
                },
                "torque": {
                    name: None
                    if values[index] is None
                    else (MILLI * values[index]).tolist()
                    for name, values in torques.items()
                },
            }
        )
    return per_structure


def _convergence(
    raw_model: AtomisticModel,
    structures: Sequence[ase.Atoms],
    coarse_orders: List[int],
    reference: List[EnergyAndForces],
) -> List[dict]:
    """Deviation of every coarse grid average from the reference grid average."""
    convergence = []
    for coarse in coarse_orders:
        coarse_predictions = predict(
            grid_average(raw_model, coarse), structures, batch_size=1
        )
        deviations = _differences(coarse_predictions, reference)
        convergence.append(
            {
                "order": coarse,
                "evaluations": grid_evaluation_count(coarse),
                **_mean_differences(deviations),
                "torque": _mean_torque(_torques(structures, coarse_predictions)),
            }
        )
    return convergence


def format_summary(report: dict) -> str:
    """Text table in the spirit of Supp. Table II, plus the mean torques."""
    order = report["reference_order"]
    lines = [
        f"Symmetry error against the order-{order} grid average "
        f"({report['reference_evaluations']} evaluations per structure), "
        f"{len(report['structures'])} structures",
        "",
        f"{'model':<12}{'<|E_raw - E|> (meV)':>22}{'<|F_raw - F|> (meV/A)':>24}"
        f"{'<|torque|> (meV)':>19}",
    ]
    for name in report["models"]:
        torque = report["torque"][name]
        torque_text = "n/a (periodic)" if torque is None else f"{torque:.4g}"
        if name == "raw":
            energy_text, force_text = "-", "-"
        else:
            energy_text = f"{report['summary'][name]['energy_mae']:.4g}"
            force_text = f"{report['summary'][name]['force_mae']:.4g}"
        label = f"grid L={order}" if name == "grid" else name
        lines.append(f"{label:<12}{energy_text:>22}{force_text:>24}{torque_text:>19}")

    if len(report["convergence"]) != 0:
        lines += [
            "",
            f"Convergence with the grid order (deviation from the order-{order} grid)",
            f"{'order':>6}{'evaluations':>13}{'<|dE|> (meV)':>15}{'<|dF|> (meV/A)':>17}"
            f"{'<|torque|> (meV)':>19}",
        ]
        for row in report["convergence"]:
            torque = "n/a" if row["torque"] is None else f"{row['torque']:.4g}"
            lines.append(
                f"{row['order']:>6}{row['evaluations']:>13}"
                f"{row['energy_mae']:>15.4g}{row['force_mae']:>17.4g}{torque:>19}"
            )
    if report["problems"]:
        lines += ["", "Structures to check (`metatrain-pet check`):"]
        lines += [f"  {problem}" for problem in report["problems"]]
    return "\n".join(lines)
