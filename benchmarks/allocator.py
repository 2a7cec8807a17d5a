"""What the C allocator costs a forces step on CPU: CPU time, minor page faults and
system time per atom of one energy + forces step of ours and of metatrain's
``pet`` (matched hypers, default model unless sizes are given), steps alternated.

glibc returns large freed blocks to the system (``mmap`` above a threshold, heap
trimming), so the memory autograd keeps for the backward is mapped again, page by
page, at every step. Run it twice to see what keeping that memory saves:

    OMP_NUM_THREADS=1 python benchmarks/allocator.py --labels water192 water1536
    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 \\
        OMP_NUM_THREADS=1 python benchmarks/allocator.py --labels water192 water1536

Prints one Markdown table row per model and system.
"""

import argparse
import json
import os
import resource
import statistics
import time

import inference
import torch
from matched_hypers import NAMES


def measured_step(model, system) -> tuple:
    """(CPU seconds, minor page faults, system seconds) of one step."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.process_time()
    inference.step(model, system)
    seconds = time.process_time() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    faults = after.ru_minflt - before.ru_minflt
    return seconds, faults, after.ru_stime - before.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="*", default=["water192", "water1536"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    models = inference.build_models(torch.float32, **json.loads(args.model))
    settings = {
        key: value for key, value in os.environ.items() if key.startswith("MALLOC_")
    }
    print(f"allocator settings: {settings or 'glibc defaults'}")
    print("| system | model | CPU ms/atom | page faults/atom | system time share |")
    print("|---|---|---:|---:|---:|")
    for label in args.labels:
        atoms = inference.structure(label)
        systems = {name: inference.prepare(m, atoms) for name, m in models.items()}
        steps = {name: [] for name in models}
        for name, model in models.items():
            measured_step(model, systems[name])  # warm-up
        for _ in range(args.repeats):
            for name, model in models.items():
                steps[name].append(measured_step(model, systems[name]))
        for name, values in steps.items():
            cpu, faults, system = (statistics.median(v) for v in zip(*values))
            n = len(atoms)
            print(
                f"| {label} | {NAMES[name]} | {cpu * 1e3 / n:.2f} | {faults / n:.0f} "
                f"| {system / cpu:.2f} |"
            )


if __name__ == "__main__":
    main()
