"""Energy and forces along the straight path between two steps of an ASE NVE
trajectory: is a jump of the total energy in molecular dynamics a discontinuity of
the model, or a feature narrower than what velocity Verlet resolves?

The trajectory is the one of ``benchmarks/engines.py --engines ase`` for the same
model (or of ``--replay``), system, seed and time step (replayed: it is
deterministic), so that another model can be evaluated on the same path. The
positions at steps A and B (0 = the first step whose energy ``--save-energies``
records) give the path x(t) = x_A + t (x_B - x_A); every point prints the
potential energy, minus the work of the forces from the first point (trapezoids:
equal to the energy change where the surface is smooth at this resolution), the
largest force and its atom.

    python benchmarks/md_path.py model-lw.pt --seed 0 --steps 89 91 \\
        --range 0.36 0.39 --points 31
    python benchmarks/md_path.py model-smoother.pt --replay model-lw.pt ...
"""

import argparse

import numpy as np
import torch
from metatomic.torch import load_atomistic_model
from metatomic_ase import MetatomicCalculator

from engines import ase_dynamics, load_system


def positions_at(model, system, seed, timestep_fs, steps, device):
    """Positions at each of ``steps`` of the replayed trajectory."""
    atoms = load_system(system)
    dynamics = ase_dynamics(model, atoms, timestep_fs, device, seed)
    saved = []
    dynamics.attach(lambda: saved.append(atoms.get_positions()), interval=1)
    dynamics.run(max(steps) + 1)
    return atoms, [saved[step] for step in steps]


def scan(atoms, start, end, parameters):
    """Rows (t, energy in eV, forces) at the points ``parameters`` of the path."""
    rows = []
    for t in parameters:
        atoms.set_positions(start + t * (end - start))
        rows.append((t, atoms.get_potential_energy(), atoms.get_forces()))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported metatomic model, .pt")
    parser.add_argument(
        "--replay", help="model that runs the trajectory (default: the model)"
    )
    parser.add_argument("--system", choices=["ethanol", "water"], default="water")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, nargs=2, required=True, metavar="A B")
    parser.add_argument("--range", type=float, nargs=2, default=[0.0, 1.0])
    parser.add_argument("--points", type=int, default=41)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    replay = args.model if args.replay is None else args.replay
    atoms, (start, end) = positions_at(
        replay, args.system, args.seed, args.timestep, args.steps, args.device
    )
    if replay != args.model:
        atoms.calc = MetatomicCalculator(
            load_atomistic_model(args.model), device=args.device
        )
    rows = scan(atoms, start, end, np.linspace(*args.range, args.points))
    step = (end - start) * (rows[1][0] - rows[0][0]) if len(rows) > 1 else 0.0
    print("#      t  E - E(t0) (meV)  -work (meV)  max |F| (eV/A)  atom")
    work = 0.0
    for k, (t, energy, forces) in enumerate(rows):
        if k > 0:
            work -= 0.5 * np.sum((forces + rows[k - 1][2]) * step)
        norms = np.linalg.norm(forces, axis=1)
        print(
            f"{t:8.5f} {1e3 * (energy - rows[0][1]):15.3f} {1e3 * work:12.3f} "
            f"{norms.max():15.3f} {int(norms.argmax()):5d}"
        )
    moved = np.linalg.norm(end - start, axis=1).max()
    print(f"# largest displacement of an atom from step A to B: {moved:.4f} A")


if __name__ == "__main__":
    main()
