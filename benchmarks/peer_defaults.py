"""Energy + forces inference of ours against metatrain's ``pet`` with *its own*
default hypers, as users compare them: both defaults as they are, and ours widened
to the peer's parameter count (``d_pet`` in steps of the number of heads,
``d_feedforward = 4 d_pet``, ``d_readout = d_pet``). Each model uses its own
cutoff (ours 5.0 Å, the peer 4.5 Å) and neighbour list; CPU time of one step,
models alternated.

    OMP_NUM_THREADS=1 python benchmarks/peer_defaults.py \\
        --labels ethanol water192 water1536 --repeats 3

Prints a Markdown table: ms per atom of every model and its ratio to the peer.
"""

import argparse
import copy
import statistics
import time

import inference
import torch
from matched_hypers import OURS, PEER
from metatrain.utils.architectures import get_default_hypers


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def widened_to(count: int) -> dict:
    """Our default hypers with the width whose parameter count is closest to
    ``count``."""
    hypers = copy.deepcopy(get_default_hypers(OURS)["model"])
    best, best_gap = hypers, None
    for d_pet in range(hypers["num_heads"] * 8, 513, hypers["num_heads"] * 4):
        wide = dict(hypers, d_pet=d_pet, d_feedforward=4 * d_pet, d_readout=d_pet)
        gap = abs(parameter_count(inference.untrained_model(OURS, wide)) - count)
        if best_gap is None or gap < best_gap:
            best, best_gap = wide, gap
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", nargs="*", default=["ethanol", "water192"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peer_hypers = get_default_hypers(PEER)["model"]
    peer = inference.untrained_model(PEER, peer_hypers)
    hypers = {
        "peer (defaults)": (PEER, peer_hypers),
        "ours (defaults)": (OURS, get_default_hypers(OURS)["model"]),
        "ours (peer's parameter count)": (OURS, widened_to(parameter_count(peer))),
    }
    models, counts = {}, {}
    for label, (name, model_hypers) in hypers.items():
        model = inference.untrained_model(name, model_hypers)
        counts[label] = parameter_count(model)
        exported = model.export()
        exported.eval()
        models[label] = exported
    wide = hypers["ours (peer's parameter count)"][1]
    print(f"ours widened: d_pet = {wide['d_pet']}, d_feedforward = 4 d_pet")
    print("| system | model | parameters | CPU ms/atom | ratio to the peer |")
    print("|---|---|---:|---:|---:|")
    for atoms_label in args.labels:
        atoms = inference.structure(atoms_label)
        systems = {label: inference.prepare(m, atoms) for label, m in models.items()}
        times = inference.interleaved_times(
            models, systems, args.repeats, warmup=1, clock=time.process_time
        )
        medians = {label: statistics.median(v) for label, v in times.items()}
        for label, seconds in medians.items():
            ratio = seconds / medians["peer (defaults)"]
            print(
                f"| {atoms_label} | {label} | {counts[label]:,} "
                f"| {seconds * 1e3 / len(atoms):.2f} | {ratio:.2f} |"
            )


if __name__ == "__main__":
    main()
