"""Table 1 of the paper for layer-wise ECSE (App. F.10): the test errors of trained
PETs, raw (y_0) and with layer-wise ECSE switched on a posteriori (y_S).

    python benchmarks/layerwise_accuracy.py \\
        --checkpoint structure=structure.ckpt --checkpoint environment=env.ckpt \\
        --test ../shared/data/rmd17/ethanol_test_01.xyz --n-test 100 \\
        --presets md tight loose

The checkpoints come from ``learning_curve.py --save`` (for example trained with
``augmentation: structure`` and ``augmentation: environment``). One line per
checkpoint, preset and quantity, ``ours`` the layer-wise model, ``peer`` the raw
one::

    layerwise/<name>/<preset>/forces_mae: ours=… peer=… ratio=…   (meV/Å)
    layerwise/<name>/<preset>/energy_mae: ours=… peer=… ratio=…   (meV/atom)
    layerwise/<name>/<preset>/rotational_spread: ours=… peer=… …  (meV)
"""

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np
import torch
from metatrain.utils.io import model_from_checkpoint

from metatrain_pet.ecse.command import symmetrized_checkpoint
from metatrain_pet.symmetry.diagnostics import (
    predict,
    random_orthogonal_matrices,
    symmetry_errors,
)


def errors(model, structures) -> dict:
    """Energy MAE per atom (meV/atom) and force MAE (meV/Å) against the data."""
    predictions = predict(model, structures, batch_size=4, forces=True)
    energy, forces = [], []
    for atoms, prediction in zip(structures, predictions, strict=True):
        reference = atoms.get_potential_energy()
        energy.append(abs(prediction.energy - reference) / len(atoms))
        forces.append(np.abs(prediction.forces - atoms.get_forces()).ravel())
    return {
        "energy_mae": 1e3 * float(np.mean(energy)),
        "forces_mae": 1e3 * float(np.mean(np.concatenate(forces))),
    }


def spread(model, structures) -> float:
    """Mean standard deviation of the energy over 8 rotations, meV."""
    rotations = random_orthogonal_matrices(8, seed=0, inversion=False)
    values = [
        symmetry_errors(model, atoms, rotations, batch_size=4, forces=False).energy
        for atoms in structures
    ]
    return 1e3 * float(np.mean(values))


def report(name, ours, peer, unit):
    ratio = ours / peer if peer != 0 else float("nan")
    print(f"{name}: ours={ours:.4g}{unit} peer={peer:.4g}{unit} ratio={ratio:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--presets", nargs="+", default=["md", "tight", "loose"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    structures = ase.io.read(args.test, f":{args.n_test}")
    results = {}
    for entry in args.checkpoint:
        name, path = entry.split("=", 1)
        checkpoint = torch.load(path, weights_only=False, map_location="cpu")
        raw = model_from_checkpoint(checkpoint, context="export").export()
        raw_errors = errors(raw, structures)
        raw_spread = spread(raw, structures[:10])
        results[name] = {"raw": dict(raw_errors, rotational_spread=raw_spread)}
        for preset in args.presets:
            symmetrized = symmetrized_checkpoint(path, preset, {"mode": "layerwise"})
            values = dict(
                errors(symmetrized, structures),
                rotational_spread=spread(symmetrized, structures[:10]),
            )
            results[name][preset] = values
            for key, unit in (
                ("forces_mae", "meV/Å"),
                ("energy_mae", "meV/atom"),
                ("rotational_spread", "meV"),
            ):
                peer = raw_spread if key == "rotational_spread" else raw_errors[key]
                report(f"layerwise/{name}/{preset}/{key}", values[key], peer, unit)
    if args.out is not None:
        partial = Path(args.out + ".tmp")
        partial.write_text(json.dumps(results, indent=1))
        partial.replace(args.out)


if __name__ == "__main__":
    main()
