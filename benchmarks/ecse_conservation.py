"""Energy conservation of ECSE as a function of how far the wrapped model is from
rotational invariance.

ECSE averages a model over frames with geometry-dependent weights, so its forces pick
up the weights' gradients times the differences between the frame predictions: the
further the wrapped model is from invariance, the more curved the symmetrized energy
and the larger the NVE energy error at a given time step. This script measures that
dependence with a family of models

    E_λ = E_bonds + λ E_anisotropic

where E_bonds is an exactly invariant elastic network that keeps the molecule
bound (harmonic springs between all atoms closer than 2.6 Å in the starting
geometry, 10 eV/Å²) and E_anisotropic an untrained PET, far from invariance. (An
untrained PET alone does not bind ethanol: the molecule falls apart within a few
hundred femtoseconds, and fragments that become collinear or isolated stop
having frames.) For each λ it reports the spread of the raw energy over random
rotations and the drift and RMS error of 300 K NVE runs (ASE velocity Verlet,
ethanol, float64) of the raw and of the ECSE-wrapped model, side by side.

    python benchmarks/ecse_conservation.py --steps 1000 --weights 1 0.1 0.01

``--seeds 0 1 2 3`` runs one trajectory per seed of the initial velocities and
summarises the drifts (mean ± standard error, RMS), as ``engines.py`` does.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import ase.io
import numpy as np
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import AtomisticModel, ModelOutput, System

from engines import DATA, add_seeds_argument, run_ase, run_seeds
from metatrain_pet.ecse import symmetrize
from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model
from metatrain_pet.symmetry.diagnostics import (
    random_orthogonal_matrices,
    symmetry_errors,
)

BOND_RANGE = 2.6
STIFFNESS = 10.0


class ElasticNetwork(torch.nn.Module):
    """Harmonic springs k (|r_i - r_j| - d_ij)² between fixed pairs of atoms."""

    def __init__(self, pairs: torch.Tensor, lengths: torch.Tensor, stiffness: float):
        super().__init__()
        self.register_buffer("pairs", pairs)
        self.register_buffer("lengths", lengths)
        self.stiffness = stiffness

    def forward(self, system: System) -> torch.Tensor:
        vectors = (
            system.positions[self.pairs[:, 1]] - system.positions[self.pairs[:, 0]]
        )
        stretch = torch.linalg.norm(vectors, dim=-1) - self.lengths
        return self.stiffness * torch.sum(stretch**2)


class AnisotropyMix(torch.nn.Module):
    """Energy of ``bonds`` plus ``weight`` times the energy of ``anisotropic``."""

    def __init__(
        self, bonds: ElasticNetwork, anisotropic: torch.nn.Module, weight: float
    ):
        super().__init__()
        self.bonds = bonds
        self.anisotropic = anisotropic
        self.weight = weight

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        block = self.anisotropic(systems, outputs, selected_atoms)["energy"].block()
        springs = torch.stack([self.bonds(system) for system in systems])
        block = TensorBlock(
            values=springs.unsqueeze(-1) + self.weight * block.values,
            samples=block.samples,
            components=block.components,
            properties=block.properties,
        )
        keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32))
        return {"energy": TensorMap(keys, [block])}


def mixed_model(atoms: ase.Atoms, weight: float) -> AtomisticModel:
    distances = atoms.get_all_distances()
    pairs = np.argwhere(np.triu(distances < BOND_RANGE, k=1))
    bonds = ElasticNetwork(
        torch.tensor(pairs),
        torch.tensor(distances[pairs[:, 0], pairs[:, 1]]),
        STIFFNESS,
    )
    anisotropic = untrained_energy_model(seed=1, **TINY_SIZES)
    reference = anisotropic.export()
    mix = AnisotropyMix(bonds, anisotropic, weight).eval()
    return AtomisticModel(mix, reference.metadata(), reference.capabilities())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[1.0, 0.1, 0.01])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--preset", default="loose")
    parser.add_argument("--threads", type=int, default=1)
    add_seeds_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    atoms.calc = None
    atoms.cell = [0.0, 0.0, 0.0]
    atoms.pbc = False
    rotations = random_orthogonal_matrices(8, seed=1, inversion=False)
    directory = Path(tempfile.mkdtemp())
    print(
        f"{'lambda':>7} {'spread/meV':>11} {'model':5} {'seed':>4} "
        f"{'drift/eV/atom/ps':>17} {'error/eV/atom':>14} {'ms/step':>8} "
        f"{'closest/A':>9}"
    )
    for weight in args.weights:
        raw = mixed_model(atoms, weight)
        spread = 1e3 * symmetry_errors(raw, atoms, rotations).energy
        models = {"raw": raw, "ecse": symmetrize(raw, preset=args.preset)}
        for name, model in models.items():
            path = directory / f"{name}-{weight}.pt"
            model.save(str(path))
            run_seeds(
                run_ase,
                path,
                atoms,
                args.steps,
                args.timestep,
                "cpu",
                args.seeds,
                f"{weight:7.3g} {spread:11.3g} {name:5}",
            )


if __name__ == "__main__":
    main()
