"""The fixed cost of an energy + forces step on small molecules, ours vs
metatrain's ``pet`` (matched hypers, exported models): CPU time per step on a water
molecule and on 1, 2, 4, 8 ... ethanol molecules 10 Å apart (beyond the cutoff, so
that the work per atom stays that of one molecule), and the straight line through
the ethanol points: the cost of a step independent of its size (the intercept, the
dispatch of the model's few thousand operators, its wrappers and the autograd
engine) and the cost per atom (the slope). A ratio below 0.5 on ethanol needs a
fixed cost below half the peer's.

    OMP_NUM_THREADS=1 python benchmarks/fixed_cost.py [--copies 1 2 4 8] \\
        [--script] [--repeats 40] [--model '{"d_pet": 32}']

Prints a Markdown table and the fitted lines.
"""

import argparse
import json
import time

import ase
import ase.build
import inference
import numpy as np
import torch
from matched_hypers import NAMES, OURS, PEER


def molecules(copies) -> dict:
    """``water`` and ``ethanol<n>``: n ethanol molecules on a line, 10 Å apart."""
    systems = {"water": ase.build.molecule("H2O")}
    ethanol = inference.structure("ethanol")
    for n in copies:
        atoms = ase.Atoms()
        for k in range(n):
            shifted = ethanol.copy()
            shifted.translate([10.0 * k, 0.0, 0.0])
            atoms += shifted
        systems[f"ethanol{n}"] = atoms
    return systems


def straight_line(atoms, seconds):
    """(intercept, slope) of the least-squares line through the points."""
    slope, intercept = np.polyfit(np.asarray(atoms, float), np.asarray(seconds), 1)
    return intercept, slope


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--script", action="store_true", help="TorchScript models")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    args = parser.parse_args()
    if len(args.copies) < 2 or min(args.copies) < 1:
        parser.error("--copies needs two or more counts of at least 1")
    torch.set_num_threads(1)
    models = inference.build_models(
        torch.float32, script=args.script, **json.loads(args.model)
    )
    print(f"| system | atoms | {NAMES[OURS]} ms | {NAMES[PEER]} ms | ratio |")
    print("|---|---:|---:|---:|---:|")
    points = {OURS: [], PEER: []}
    for label, atoms in molecules(args.copies).items():
        systems = {name: inference.prepare(m, atoms) for name, m in models.items()}
        times = inference.interleaved_times(
            models, systems, args.repeats, warmup=12, clock=time.process_time
        )
        ms = {name: 1e3 * inference.median(times[name]) for name in models}
        print(
            f"| {label} | {len(atoms)} | {ms[OURS]:.2f} | {ms[PEER]:.2f} "
            f"| {ms[OURS] / ms[PEER]:.3f} |"
        )
        if label != "water":
            for name in models:
                points[name].append((len(atoms), ms[name]))
    fits = {name: straight_line(*zip(*points[name])) for name in models}
    for name, (intercept, slope) in fits.items():
        print(f"\n{NAMES[name]}: {intercept:.2f} ms per step + {slope:.3f} ms per atom")
    print(f"\nratio of the costs per atom: {fits[OURS][1] / fits[PEER][1]:.3f}")


if __name__ == "__main__":
    main()
