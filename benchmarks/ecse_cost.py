"""Cost and exactness of ECSE around metatrain's PET (untrained, default width).

For each structure and ECSE setting, prints: the time of one energy+forces
evaluation of the symmetrized model divided by that of the raw model (same process,
same thread count, median of ``--repeats``), the number of frames the raw model was
evaluated in, and the largest relative change of the energy over ``--rotations``
random rotations, for the raw and the symmetrized model.

    python benchmarks/ecse_cost.py --threads 1
"""

import argparse
import pathlib
import time

import ase.io
import numpy as np
import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput, System
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from scipy.spatial.transform import Rotation

from metatrain_pet.ecse import symmetrize
from metatrain_pet.pet.untrained import untrained_energy_model

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data"
SETTINGS = {
    "global/loose": {"mode": "global"},
    "global/tight": {"mode": "global", "preset": "tight"},
    "per_atom/loose": {"mode": "per_atom"},
    "per_atom/tight": {"mode": "per_atom", "preset": "tight"},
}


def pet_model(d_pet: int, d_feedforward: int, num_heads: int, cutoff: float):
    model = untrained_energy_model(
        "pet",
        atomic_types=[1, 6, 7, 8],
        d_pet=d_pet,
        d_feedforward=d_feedforward,
        num_heads=num_heads,
        cutoff=cutoff,
    )
    return model.export()


def energy_and_forces(model, atoms, outputs=("energy",)):
    positions = torch.tensor(atoms.positions, requires_grad=True)
    system = System(
        types=torch.tensor(atoms.numbers, dtype=torch.int32),
        positions=positions,
        cell=torch.tensor(atoms.cell.array),
        pbc=torch.tensor(atoms.pbc),
    )
    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={name: ModelOutput(sample_kind="system") for name in outputs},
    )
    results = model([system], options, check_consistency=False)
    energy = results["energy"].block().values.sum()
    forces = -torch.autograd.grad(energy, positions)[0]
    return energy.item(), forces, results


def timed(model, atoms, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        energy_and_forces(model, atoms)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def invariance_error(model, atoms, n_rotations):
    reference = energy_and_forces(model, atoms)[0]
    errors = []
    for rotation in Rotation.random(n_rotations, random_state=0).as_matrix():
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ rotation.T
        rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
        errors.append(abs(energy_and_forces(model, rotated)[0] - reference))
    return max(errors) / abs(reference)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rotations", type=int, default=3)
    parser.add_argument("--d-pet", type=int, default=128)
    parser.add_argument("--d-feedforward", type=int, default=256)
    parser.add_argument("--num-heads", type=int, default=8)
    parser.add_argument("--cutoff", type=float, default=4.5, help="PET cutoff, Å")
    parser.add_argument(
        "--structures", nargs="*", default=["ethanol", "water"], help="which to run"
    )
    parser.add_argument(
        "--water-settings",
        nargs="*",
        default=["per_atom/tight", "global/tight", "per_atom/loose"],
        help="settings run on the 192-atom water box (all four on ethanol)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw = pet_model(args.d_pet, args.d_feedforward, args.num_heads, args.cutoff)
    structures = {}
    if "ethanol" in args.structures:
        structures["ethanol (9 atoms)"] = (
            ase.io.read(DATA / "ethanol_40.xyz", 0),
            list(SETTINGS),
        )
    if "water" in args.structures:
        structures["water box (192 atoms)"] = (
            ase.io.read(DATA / "water64_2.xyz", 0),
            args.water_settings,
        )
    print(
        f"PET d_pet={args.d_pet}, d_feedforward={args.d_feedforward}, "
        f"num_heads={args.num_heads}, cutoff={args.cutoff}, float64, "
        f"{args.threads} thread(s)"
    )
    print(
        f"{'structure':<22} {'setting':<15} {'time ratio':>10} {'frames':>8} "
        f"{'raw inv. err':>13} {'ECSE inv. err':>13}"
    )
    for label, (atoms, settings) in structures.items():
        raw_time = timed(raw, atoms, args.repeats)
        raw_error = invariance_error(raw, atoms, args.rotations)
        for setting in settings:
            model = symmetrize(raw, **SETTINGS[setting])
            _, _, results = energy_and_forces(
                model, atoms, ("energy", "mtt::aux::ecse_num_frames")
            )
            frames = results["mtt::aux::ecse_num_frames"].block().values.item()
            ratio = timed(model, atoms, args.repeats) / raw_time
            error = invariance_error(model, atoms, args.rotations)
            print(
                f"{label:<22} {setting:<15} {ratio:>10.1f} {frames:>8.0f} "
                f"{raw_error:>13.1e} {error:>13.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
