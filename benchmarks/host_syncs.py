"""Host synchronisations per energy + forces step, ours vs metatrain's ``pet``
(matched hypers, exported models, eager): on a GPU each waits for every kernel
queued before it, so their number per step should not grow with the system.
Counted on CPU (``metatrain_pet.host_syncs``); ``--max-tokens 1048576`` gives ours
the chunks of environments it uses on a GPU.

    python benchmarks/host_syncs.py --labels ethanol water192 water1536 \\
        [--max-tokens 1048576] [--lean-forces-above 0] [--model '{"d_pet": 32}']

Prints a Markdown table: synchronisations per step, and by operator.
"""

import argparse
import json

import inference
import torch
from matched_hypers import NAMES

from metatrain_pet.host_syncs import count_host_syncs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="*", default=["ethanol", "water192"])
    parser.add_argument("--max-tokens", type=int, default=0)
    parser.add_argument("--lean-forces-above", type=int, default=None)
    parser.add_argument("--model", default="{}", help="model sizes, as JSON")
    args = parser.parse_args()
    models = inference.build_models(
        torch.float32,
        max_tokens=args.max_tokens,
        lean_forces_above=args.lean_forces_above,
        **json.loads(args.model),
    )
    print("| system | model | syncs per step | by operator |")
    print("|---|---|---:|---|")
    for label in args.labels:
        for name, model in models.items():
            system = inference.prepare(model, inference.structure(label))
            inference.step(model, system)
            _, syncs = count_host_syncs(inference.step, model, system)
            detail = ", ".join(f"{op} {n}" for op, n in sorted(syncs.items()))
            total = sum(syncs.values())
            print(f"| {label} | {NAMES[name]} | {total} | {detail} |", flush=True)


if __name__ == "__main__":
    main()
