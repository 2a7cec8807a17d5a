"""Memory of the autograd graph of an energy + forces step of our PET, measured
against the estimate that decides when lean forces switch on
(``metatrain_pet.nn.graph_memory``), for models of several shapes.

    OMP_NUM_THREADS=1 python benchmarks/graph_memory.py --system water192

Each shape is measured in a fresh process, lean forces off: the bytes of the
tensors autograd keeps for the backward pass of one energy + forces step
(``saved_bytes``, independent of the allocator), per token of the batch (rows,
i.e. atoms or (atom, frame) pairs with ``--layerwise``, times the longest
environment), beside the estimate (``token_floats``). A ratio near one for every
shape is what makes one lean-forces threshold mean one amount of memory for a
small, a default and a wide model.
"""

import argparse
import json
import os
import subprocess
import sys

import torch
from matched_hypers import OURS

from metatrain_pet.nn.graph_memory import REFERENCE_FLOATS, saved_bytes
from metatrain_pet.systems.batch import longest_environment

SHAPES = {
    "default": {},
    "small": {"d_pet": 32, "d_readout": 32, "d_feedforward": 64},
    "wide": {"d_pet": 256, "d_readout": 256, "d_feedforward": 1024},
    "feedforward_2048": {"d_feedforward": 2048},
    "heads_16": {"num_heads": 16},
    "layers_3x3": {"num_attention_layers": 3, "num_gnn_layers": 3},
    "swiglu": {"activation": "SwiGLU"},
}


def measure(shape: dict, label: str, dtype: str, preset: str) -> dict:
    """Worker: graph memory per token of one step of the model of ``shape``
    (with layer-wise ECSE and ``preset`` unless it is empty)."""
    import inference
    import layerwise

    dtype = getattr(torch, dtype)
    if preset:
        model = layerwise.models(shape, preset, -1, dtype)["layerwise"]
    else:
        model = inference.build_models(dtype, lean_forces_above=-1, **shape)[OURS]
    network = model.module.network
    system = inference.prepare(model, inference.structure(label), dtype)
    width = longest_environment(system, network.neighbor_list_options)
    rows = len(system)
    if preset:
        rows = round(layerwise.frames_per_atom(model, system) * len(system))
    estimate = network.graph_tokens(rows * width, width, system.positions)
    positions = system.positions.requires_grad_(True)
    energy, kept = saved_bytes(lambda: total_energy(model, system), model)
    torch.autograd.grad(energy, positions)
    measured = kept / (rows * width)
    estimated = estimate * 4 * REFERENCE_FLOATS / (rows * width)
    return {"rows": rows, "width": width, "measured": measured, "estimated": estimated}


def total_energy(model, system) -> torch.Tensor:
    from inference import OPTIONS

    energy = model([system], OPTIONS, check_consistency=False)["energy"]
    return energy.block().values.sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", default="water192", help="ethanol or waterN")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--layerwise", default="", metavar="PRESET", help="with layer-wise ECSE"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        row = measure(SHAPES[args.worker], args.system, args.dtype, args.layerwise)
        print(json.dumps(row))
        return
    print(
        f"{'shape':18} {'rows':>6} {'width':>5} {'measured/KiB':>12} "
        f"{'estimated/KiB':>13} {'ratio':>6}   (per token)"
    )
    for name in args.shapes:
        command = [sys.executable, __file__, "--worker", name, "--system"]
        command += [args.system, "--dtype", args.dtype, "--layerwise", args.layerwise]
        result = subprocess.run(
            command, capture_output=True, text=True, env=os.environ, check=True
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            f"{name:18} {row['rows']:6d} {row['width']:5d} "
            f"{row['measured'] / 1024:12.2f} {row['estimated'] / 1024:13.2f} "
            f"{row['measured'] / row['estimated']:6.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
