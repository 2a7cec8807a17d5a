"""Which atom's ECSE frames turn fastest along an MD step: the frames and weights
alone (no model evaluation), for every atom, at many points of the straight path
between two steps of a replayed ASE trajectory.

A kick of the total energy in layer-wise ECSE molecular dynamics (``md_path.py``
shows the force spike) comes from frame weights that change over less than a
step's displacement. For every atom i this script follows the weighted mean frame
M_i(t) = Σ_f ŵ_f R_f (normalised weights ŵ, after pruning) along x(t) = x_A +
t (x_B - x_A) and prints the atoms with the largest second difference
max |d²M_i/dt²| divided by the largest displacement of an atom squared (Å⁻²), the
number of frames they have along the path and their closest neighbour. A smooth
ensemble gives small values; a frame or weight that switches over a short distance
gives a spike.

    python benchmarks/frame_roughness.py model-lw.pt --seed 2 --steps 107 109 \\
        --ecse '{"fallback": "adaptive_near_collinear"}'
    python benchmarks/frame_roughness.py model-raw.pt --seed 2 --steps 9 11 ...

The trajectory is that of ``engines.py --engines ase`` for the model (``md_path.py``
replays it); the ECSE parameters are ``--preset`` and ``--ecse`` (JSON), those the
model was exported with.
"""

import argparse
import json

import numpy as np
import torch
from md_path import positions_at
from metatomic.torch import systems_to_torch
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.ecse.ensemble import ensemble_average
from metatrain_pet.ecse.hypers import resolve_ecse_hypers
from metatrain_pet.ecse.symmetrizer import Symmetrizer


def mean_frames(symmetrizer, atoms):
    """(atoms, 9) weighted mean frame and (atoms,) number of frames of every atom."""
    system = systems_to_torch(atoms, dtype=torch.float64)
    system = get_system_with_neighbor_lists(system, [symmetrizer.ecse_options])
    with torch.no_grad():
        frames, _ = symmetrizer.atom_frames([system])
    rotations = frames.rotations.reshape(-1, 9)
    n_atoms = len(atoms)
    mean = ensemble_average(
        rotations, frames.weights, frames.pools, n_atoms, None, None
    )
    return mean.numpy(), np.bincount(frames.pools.numpy(), minlength=n_atoms)


def roughness(symmetrizer, atoms, start, end, parameters):
    """Per point of the path and atom: |d²M/dt²| (largest component, central
    differences; first and last point excluded) and the number of frames."""
    means, counts = [], []
    for t in parameters:
        atoms.set_positions(start + t * (end - start))
        mean, count = mean_frames(symmetrizer, atoms)
        means.append(mean)
        counts.append(count)
    means = np.array(means)
    step = parameters[1] - parameters[0]
    second = np.abs(means[2:] - 2 * means[1:-1] + means[:-2]).max(axis=2) / step**2
    return second, np.array(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported metatomic model that ran the MD")
    parser.add_argument("--system", choices=["ethanol", "water"], default="water")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, nargs=2, required=True, metavar="A B")
    parser.add_argument("--preset", default="loose")
    parser.add_argument("--ecse", default="{}", help="ECSE parameters, JSON")
    parser.add_argument("--points", type=int, default=201)
    parser.add_argument("--atoms", type=int, default=5, help="atoms to print")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms, (start, end) = positions_at(
        args.model, args.system, args.seed, args.timestep, args.steps, "cpu"
    )
    atoms.calc = None
    params = dict(json.loads(args.ecse), mode="layerwise")
    symmetrizer = Symmetrizer(resolve_ecse_hypers(None, args.preset, **params), [])
    parameters = np.linspace(0.0, 1.0, args.points)
    second, counts = roughness(symmetrizer, atoms, start, end, parameters)
    moved = np.linalg.norm(end - start, axis=1).max()
    per_area = second / moved**2
    atoms.set_positions(start)
    distances = atoms.get_all_distances(mic=True) + np.diag(np.full(len(atoms), np.inf))
    print(f"# largest displacement of an atom from step A to B: {moved:.4f} A")
    print(
        f"# frames per atom: {counts.mean():.1f}; median |d2M/dx2|: "
        f"{np.median(per_area):.3g} /A^2"
    )
    print("# atom  Z  max |d2M/dx2| (/A^2)   at t  frames  closest neighbour (A)")
    for atom in np.argsort(per_area.max(axis=0))[::-1][: args.atoms]:
        at = parameters[1 + per_area[:, atom].argmax()]
        print(
            f"{atom:6d} {atoms.numbers[atom]:2d} {per_area[:, atom].max():20.3g} "
            f"{at:6.3f} {counts[:, atom].min():3d}-{counts[:, atom].max():<3d} "
            f"{distances[atom].min():8.3f} ({distances[atom].argmin()})"
        )


if __name__ == "__main__":
    main()
