"""How curved the ECSE-symmetrized energy surface is compared with the raw one.

Velocity Verlet's energy error grows with the curvature of the energy along the
trajectory (times dt²), so this is the quantity behind ECSE's larger NVE drift. The
script moves every atom along one fixed random direction (a collective
displacement of total norm ``--span`` Å), evaluates the energy of the raw and of
the ECSE model at ``--points`` equally spaced steps, and reports the median and
largest second difference |d²E/ds²| (eV/Å²) of each, and their ratios.

    python benchmarks/ecse_curvature.py model.pt --system water --preset tight \
        --r-out 3
"""

import argparse

import numpy as np
import torch
from metatomic.torch import load_atomistic_model

from engines import load_system
from metatrain_pet.ecse import symmetrize
from metatrain_pet.symmetry.diagnostics import predict


def curvature_along_line(model, structures, step):
    """Energies along the line and the absolute second differences, eV/Å²."""
    energies = np.array(
        [result.energy for result in predict(model, structures, 1, forces=False)]
    )
    return energies, np.abs(np.diff(energies, 2)) / step**2


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported (raw) metatomic model, .pt")
    parser.add_argument("--system", choices=["ethanol", "water"], default="water")
    parser.add_argument("--preset", default="tight")
    parser.add_argument("--r-out", type=float, default=3.0)
    parser.add_argument("--frame-types", type=int, nargs="+", default=[])
    parser.add_argument("--span", type=float, default=0.4, help="Å")
    parser.add_argument("--points", type=int, default=81)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms = load_system(args.system)
    raw = load_atomistic_model(args.model)
    ecse = symmetrize(
        raw,
        preset=args.preset,
        r_out=args.r_out,
        mode="per_atom" if atoms.pbc.any() else "global",
        frame_types=args.frame_types,
    )
    direction = np.random.default_rng(args.seed).normal(size=(len(atoms), 3))
    direction /= np.linalg.norm(direction)
    displacements = np.linspace(0.0, args.span, args.points)
    structures = []
    for displacement in displacements:
        moved = atoms.copy()
        moved.positions += displacement * direction
        structures.append(moved)

    step = displacements[1] - displacements[0]
    summary = {}
    for name, model in (("raw", raw), ("ecse", ecse)):
        energies, second = curvature_along_line(model, structures, step)
        summary[name] = (np.median(second), second.max())
        print(
            f"{name:5} energy range {energies.max() - energies.min():.4g} eV, "
            f"|d2E/ds2| median {summary[name][0]:.4g}, max {summary[name][1]:.4g} "
            "eV/A^2",
            flush=True,
        )
    print(
        f"ratio ecse/raw: median {summary['ecse'][0] / summary['raw'][0]:.3g}, "
        f"max {summary['ecse'][1] / summary['raw'][1]:.3g}"
    )


if __name__ == "__main__":
    main()
