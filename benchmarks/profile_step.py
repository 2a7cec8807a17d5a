"""Where the time of one energy + forces step goes, per atom, for both
architectures (matched hypers, the default model unless sizes are given), from
torch's profiler: the operators with the largest self CPU time, in ms per atom.

    python benchmarks/profile_step.py --labels water192 water1536 \\
        [--max-tokens 1000000000] [--lean-forces-above -1] \\
        [--model '{"d_pet": 32}'] [--top 12] [--script] [--steps 20]

``--max-tokens`` sets the tokens per chunk of environments of ours (a huge value:
one padded tensor, as before chunking) and ``--lean-forces-above`` when ours drops
the graph of its blocks (-1: never, as before lean forces), to show the profile
before and after. ``--script`` profiles the TorchScript-compiled models, and
``--steps`` averages the profile over that many steps (small systems, where a step
is a few milliseconds). Printed as Markdown tables, one per system, with the calls
per step of every operator and the operator events per step (nested calls counted).
"""

import argparse
import json
import time

import inference
import torch
from matched_hypers import NAMES


def profile(model, system, top: int, steps: int, warmup: int):
    """(CPU seconds of one step, operator events per step, [(operator, self CPU
    seconds per step, calls per step)] largest first), after ``warmup`` steps."""
    for _ in range(warmup):
        inference.step(model, system)
    start = time.process_time()
    inference.step(model, system)
    seconds = time.process_time() - start
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        for _ in range(steps):
            inference.step(model, system)
    rows = [
        (e.key, e.self_cpu_time_total * 1e-6 / steps, e.count / steps)
        for e in p.key_averages()
    ]
    rows.sort(key=lambda row: -row[1])
    return seconds, sum(row[2] for row in rows), rows[:top]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="*", default=["water192", "water1536"])
    parser.add_argument("--max-tokens", type=int, default=0)
    parser.add_argument("--lean-forces-above", type=int, default=None)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--script", action="store_true", help="TorchScript models")
    parser.add_argument("--steps", type=int, default=1, help="steps profiled")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    # TorchScript's profiling executor optimises the graph over a few calls
    warmup = 10 if args.script else 1
    torch.set_num_threads(args.threads)
    models = inference.build_models(
        torch.float32,
        script=args.script,
        max_tokens=args.max_tokens,
        lean_forces_above=args.lean_forces_above,
        **json.loads(args.model),
    )
    for label in args.labels:
        atoms = inference.structure(label)
        n_atoms = len(atoms)
        results = {}
        for name, model in models.items():
            system = inference.prepare(model, atoms)
            results[name] = profile(model, system, args.top, args.steps, warmup)
        print(f"\n{label} ({n_atoms} atoms), ms per atom, self CPU time\n")
        print(
            "| " + " | ".join(f"{NAMES[n]} operator | ms/atom" for n in models) + " |"
        )
        print("|---" * (2 * len(models)) + "|")
        print(
            "| "
            + " | ".join(
                f"**step (CPU time)** | **{results[n][0] * 1e3 / n_atoms:.2f}**"
                for n in models
            )
            + " |"
        )
        print(
            "| "
            + " | ".join(
                f"operator events per step | {results[n][1]:.0f}" for n in models
            )
            + " |"
        )
        for k in range(args.top):
            cells = []
            for name in models:
                key, seconds, calls = results[name][2][k]
                cells.append(f"{key} ({calls:.0f}) | {seconds * 1e3 / n_atoms:.3f}")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
