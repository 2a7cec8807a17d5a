"""Where lean forces start to pay: CPU time per atom of one energy + forces step of
ours with the full graph, with lean forces through the last block only (the graph
of the other blocks kept) and with lean forces (``metatrain_pet.runtime``), one
fresh process per (system, mode), the modes alternated over rounds.

    OMP_NUM_THREADS=1 python benchmarks/lean_crossover.py \\
        --labels water1536 water2304 water3456 water5184 --rounds 3 --steps 2

Each process builds the model, takes one warm-up step and times ``--steps`` more,
so that every mode starts from a fresh heap (the graph's cost is largely the first
touch of its pages). The default model unless ``--model`` gives sizes (JSON). The
last column is the estimated graph of the box in the unit of the default threshold
(``PETNetwork.graph_tokens``), in which the default thresholds are set.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import inference
import torch
from matched_hypers import OURS

from metatrain_pet.runtime import set_lean_forces
from metatrain_pet.systems.batch import longest_environment

MODES = {"graph": (-1, -1), "last block": (-1, 0), "lean": (0, -1)}
"""``set_lean_forces`` arguments of each mode."""


def worker(label: str, mode: str, steps: int, sizes: dict) -> dict:
    """Times of one process: CPU ms per atom of ``steps`` steps after a warm-up."""
    model = inference.build_models(torch.float32, **sizes)[OURS]
    set_lean_forces(model, *MODES[mode])
    atoms = inference.structure(label)
    system = inference.prepare(model, atoms)
    inference.step(model, system)
    times = []
    for _ in range(steps):
        start = time.process_time()
        inference.step(model, system)
        times.append((time.process_time() - start) * 1e3 / len(atoms))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms_per_atom": times, "max_rss_mib": rss, "units": _units(model, system)}


def _units(model, system) -> int:
    """The box's tokens (atoms times their longest environment) in the unit of the
    lean-forces threshold."""
    network = next(m for m in model.modules() if type(m).__name__ == "PETNetwork")
    width = longest_environment(system, network.neighbor_list_options)
    return network.graph_tokens(len(system) * width, width, system.positions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="+", default=["water1536", "water5184"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.worker:
        result = worker(*args.worker, args.steps, json.loads(args.model))
        print(json.dumps(result))
        return
    names = list(MODES)
    print(
        "| system | "
        + " | ".join(f"{m} (ms/atom)" for m in names)
        + " | / graph | max RSS (MiB) | graph units |"
    )
    print("|---|" + "---:|" * len(names) + "---|---|---:|")
    for label in args.labels:
        runs = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                runs[mode].append(_subprocess(label, mode, args))
        per_atom = {m: statistics.median(_all_times(r)) for m, r in runs.items()}
        rss = {m: max(run["max_rss_mib"] for run in r) for m, r in runs.items()}
        times = " | ".join(f"{per_atom[m]:.2f}" for m in names)
        ratios = " / ".join(f"{per_atom[m] / per_atom['graph']:.2f}" for m in names)
        memory = " / ".join(f"{rss[m]:.0f}" for m in names)
        units = runs["graph"][0]["units"]
        print(f"| {label} | {times} | {ratios} | {memory} | {units} |", flush=True)


def _subprocess(label: str, mode: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", label, mode]
    command += ["--steps", str(args.steps), "--model", args.model]
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def _all_times(runs) -> list:
    return [t for run in runs for t in run["ms_per_atom"]]


if __name__ == "__main__":
    main()
