"""CPU time per atom of one energy + forces step of ours for several chunk sizes
(tokens per chunk of environments, ``nn/chunks.py``), alternating the sizes at
every repeat; the default model unless sizes are given.

    python benchmarks/chunk_size.py --label water1536 \\
        --max-tokens 1000000000 32768 16384 8192 4096 2048 --repeats 3

``--lean-forces-above 0`` times lean forces (``metatrain_pet.runtime``) instead.
"""

import argparse
import json
import statistics
import time

import inference
import torch
from matched_hypers import OURS

from metatrain_pet.runtime import set_lean_forces, set_max_tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="water1536")
    parser.add_argument(
        "--max-tokens", nargs="*", type=int, default=[10**9, 16384, 8192, 4096]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--lean-forces-above", type=int, default=None, help="default: the model's"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = inference.build_models(torch.float32, **json.loads(args.model))[OURS]
    if args.lean_forces_above is not None:
        set_lean_forces(model, args.lean_forces_above)
    atoms = inference.structure(args.label)
    system = inference.prepare(model, atoms)

    def timed(max_tokens: int) -> float:
        set_max_tokens(model, max_tokens)
        start = time.process_time()
        inference.step(model, system)
        return time.process_time() - start

    for max_tokens in args.max_tokens:
        timed(max_tokens)  # warm-up
    times = {max_tokens: [] for max_tokens in args.max_tokens}
    for _ in range(args.repeats):
        for max_tokens in args.max_tokens:
            times[max_tokens].append(timed(max_tokens))
    for max_tokens, values in times.items():
        per_atom = statistics.median(values) * 1e3 / len(atoms)
        print(f"{args.label} max_tokens={max_tokens}: {per_atom:.2f} ms/atom (CPU)")


if __name__ == "__main__":
    main()
