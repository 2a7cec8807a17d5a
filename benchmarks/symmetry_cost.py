"""Symmetry error and cost of raw, grid-averaged, random-rotation and ECSE models.

For one ethanol molecule (tests/data/ethanol_40.xyz) and one 192-atom water box
(tests/data/water64_2.xyz) every model is evaluated (energy and forces through
autograd) on copies of the structure turned by random proper rotations (SO(3): ECSE
averages over rotations only by default). The symmetry error is the
spread of these predictions (std of the energy, RMS deviation of the back-rotated
forces, see ``metatrain_pet.symmetry.diagnostics.symmetry_errors``); the cost is the
CPU time of one evaluation, relative to the raw model measured in the same run on
the same outputs. ECSE runs in ``global`` mode (loose preset) on ethanol and in
``per_atom`` mode (tight preset) on the periodic box. On the box, grids with more
than ``--water-force-evaluations`` evaluations and ECSE are measured on energies
alone, without autograd (their force graphs need tens of GB).

Without ``--model`` an untrained metatrain PET is built: untrained models break the
symmetry far more than trained ones (which learn approximate invariance from rotational
augmentation), so the absolute errors are upper bounds while their decay with the grid
order and the relative costs carry over.

Usage: python benchmarks/symmetry_cost.py [--model MODEL.pt] [--json OUT.json]
"""

import argparse
import json
import time
from pathlib import Path

import ase.io
import torch
from inference import ecse_settings
from metatomic.torch import AtomisticModel, load_atomistic_model

from metatrain_pet.pet.untrained import untrained_energy_model
from metatrain_pet.symmetry.diagnostics import (
    predict,
    random_orthogonal_matrices,
    symmetry_errors,
)
from metatrain_pet.symmetry.grid import grid_average, grid_evaluation_count
from metatrain_pet.symmetry.random_rotation import random_rotation_average

DATA_DIRECTORY = Path(__file__).resolve().parents[1] / "tests" / "data"

# a small PET: two message-passing layers, large enough for the evaluation cost to
# be dominated by arithmetic rather than by TorchScript overhead
BENCHMARK_HYPERS = {
    "cutoff": 4.5,
    "d_pet": 32,
    "d_head": 32,
    "d_node": 64,
    "d_feedforward": 64,
    "num_heads": 4,
    "num_attention_layers": 1,
    "num_gnn_layers": 2,
}


def build_untrained_pet(dtype: torch.dtype) -> AtomisticModel:
    """Export an untrained metatrain PET for H, C and O."""
    return untrained_energy_model("pet", dtype=dtype, **BENCHMARK_HYPERS).export()


def symmetrized_models(raw: AtomisticModel, orders, atoms, with_ecse: bool):
    """(label, model, evaluations per structure) for every model to compare on
    ``atoms``; ECSE with the settings of :func:`inference.ecse_settings`."""
    models = [("raw", raw, 1)]
    for order in orders:
        models.append(
            (f"grid L={order}", grid_average(raw, order), grid_evaluation_count(order))
        )
    models.append(("random", random_rotation_average(raw, seed=0), 1))
    if with_ecse:
        from metatrain_pet.ecse import symmetrize

        settings = ecse_settings(atoms)
        label = f"ECSE ({settings['mode']}, {settings['preset']})"
        models.append((label, symmetrize(raw, **settings), None))
    return models


def measure(model, atoms, rotations, warmup: int, forces: bool):
    """Symmetry errors and CPU/wall seconds per evaluation of ``model`` (energy and
    forces, or the energy alone without autograd)."""
    for _ in range(warmup):
        predict(model, [atoms], forces=forces)
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    errors = symmetry_errors(model, atoms, rotations, batch_size=1, forces=forces)
    cpu = (time.process_time() - cpu_start) / len(rotations)
    wall = (time.perf_counter() - wall_start) / len(rotations)
    return errors, cpu, wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="exported model (default: new PET)")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--rotations", type=int, default=3, help="for ethanol")
    parser.add_argument("--water-rotations", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--no-ecse", action="store_true")
    parser.add_argument(
        "--water-force-evaluations",
        type=int,
        default=200,
        help="on the water box, models with more evaluations per structure than "
        "this (and ECSE) are measured on energies alone, without autograd: keeping "
        "the graphs of hundreds of 192-atom evaluations for the forces needs tens of "
        "GB",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.model is not None:
        raw = load_atomistic_model(str(args.model))
    else:
        raw = build_untrained_pet(getattr(torch, args.dtype))
    datasets = [
        ("ethanol", DATA_DIRECTORY / "ethanol_40.xyz", args.rotations),
        ("water (192 atoms)", DATA_DIRECTORY / "water64_2.xyz", args.water_rotations),
    ]
    rows = []
    for dataset, path, n_rotations in datasets:
        atoms = ase.io.read(path, index=0)
        periodic = bool(atoms.pbc.any())
        rotations = random_orthogonal_matrices(n_rotations, seed=42, inversion=False)
        models = symmetrized_models(raw, args.orders, atoms, not args.no_ecse)
        raw_cpu = {}
        for label, model, evaluations in models:
            forces = not periodic or (
                evaluations is not None and evaluations <= args.water_force_evaluations
            )
            warmup = 2 if evaluations == 1 or evaluations is None else 0
            if forces not in raw_cpu and model is not raw:
                raw_cpu[forces] = measure(raw, atoms, rotations, 2, forces)[1]
            errors, cpu, wall = measure(model, atoms, rotations, warmup, forces)
            if model is raw:
                raw_cpu[forces] = cpu
            relative = cpu / raw_cpu[forces]
            rows.append(
                {
                    "system": dataset,
                    "model": label,
                    "evaluations": evaluations,
                    "forces": forces,
                    "energy_spread_meV": 1000 * errors.energy,
                    "force_spread_meV_per_A": 1000 * errors.forces,
                    "cpu_seconds": cpu,
                    "wall_seconds": wall,
                    "relative_cost": relative,
                }
            )
            what = "E+F" if forces else "E only"
            print(
                f"{dataset:<18} {label:<24} E spread {1000 * errors.energy:10.4g} meV"
                f"  F spread {1000 * errors.forces:10.4g} meV/A"
                f"  {cpu:8.3f} s CPU  x{relative:7.1f} ({what})",
                flush=True,
            )

    print()
    print(
        "| system | model | evaluations | energy spread (meV) | "
        "force spread (meV/Å) | CPU s / evaluation | cost vs raw (same outputs) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        evaluations = "?" if row["evaluations"] is None else row["evaluations"]
        force_spread = (
            f"{row['force_spread_meV_per_A']:.3g}" if row["forces"] else "(E only)"
        )
        print(
            f"| {row['system']} | {row['model']} | {evaluations} | "
            f"{row['energy_spread_meV']:.3g} | {force_spread} | "
            f"{row['cpu_seconds']:.3g} | {row['relative_cost']:.3g} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
