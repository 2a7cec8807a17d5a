"""Does a water model hold its molecules together? The energy of the water box as
one molecule's H-O-H angle is closed (the O-H lengths and every other atom fixed),
for the first few molecules of the box, against a harmonic bend of liquid water's
stiffness.

A model trained briefly on liquid water only sees angles near 104°; if it does not
learn the bend's stiffness, 300 K molecular dynamics closes the angles until two H
atoms of one molecule overlap (``engines.py``'s ``closest/A`` column), and any
energy-conservation figure measured there describes a collapsed box.

    python benchmarks/water_bend.py model.pt --angles 90 75 60 45 35
"""

import argparse

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from engines import attach_model, load_system

BEND_STIFFNESS = 3.29
"""eV/rad²: k of E = k/2 (θ - θ₀)², the flexible SPC/Fw water model's bend
(75.9 kcal/mol/rad²; Wu, Tepper and Voth, J. Chem. Phys. 124, 024503, 2006)."""


def bent_positions(atoms, oxygen, angle):
    """Positions with the H-O-H angle of the molecule of ``oxygen`` set to ``angle``
    (rad) by turning its second H about the molecule's normal (the O-H lengths and
    every other atom unchanged); and the angle it had (rad)."""
    hydrogens = np.flatnonzero(atoms.numbers == 1)
    distances = atoms.get_distances(oxygen, hydrogens, mic=True)
    first, second = hydrogens[np.argsort(distances)[:2]]
    v1 = atoms.get_distance(oxygen, first, mic=True, vector=True)
    v2 = atoms.get_distance(oxygen, second, mic=True, vector=True)
    normal = np.cross(v1, v2)
    normal /= np.linalg.norm(normal)
    start = np.arccos(v1 @ v2 / np.linalg.norm(v1) / np.linalg.norm(v2))
    positions = atoms.get_positions()
    turn = Rotation.from_rotvec((angle - start) * normal)
    positions[second] = positions[oxygen] + turn.apply(v2)
    return positions, start


def bend_energies(atoms, oxygen, angles_deg):
    """The box's energy (eV) at each H-O-H angle of the molecule of ``oxygen``,
    minus the energy at its own angle; and that angle (degrees)."""
    positions = atoms.get_positions()
    reference = atoms.get_potential_energy()
    energies = []
    for angle in np.radians(angles_deg):
        bent, start = bent_positions(atoms, oxygen, angle)
        atoms.set_positions(bent)
        energies.append(atoms.get_potential_energy() - reference)
        atoms.set_positions(positions)
    return np.array(energies), np.degrees(start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported metatomic model, .pt")
    parser.add_argument("--angles", type=float, nargs="+", default=[90, 75, 60, 45, 35])
    parser.add_argument("--molecules", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms = load_system("water")
    attach_model(atoms, args.model, "cpu")
    header = " ".join(f"{angle:7.0f}" for angle in args.angles)
    print(f"# energy change (meV) as one H-O-H angle closes to (degrees): {header}")
    oxygens = np.flatnonzero(atoms.numbers == 8)[: args.molecules]
    for oxygen in oxygens:
        energies, start = bend_energies(atoms, oxygen, args.angles)
        values = " ".join(f"{1e3 * energy:7.0f}" for energy in energies)
        print(f"O {oxygen:3d} from {start:5.1f}              {values}")
    harmonic = 0.5 * BEND_STIFFNESS * np.radians(104.5 - np.array(args.angles)) ** 2
    values = " ".join(f"{1e3 * energy:7.0f}" for energy in harmonic)
    print(f"harmonic bend (SPC/Fw) from 104.5    {values}")


if __name__ == "__main__":
    main()
