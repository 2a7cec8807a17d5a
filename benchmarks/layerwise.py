"""Cost of layer-wise ECSE (App. F.10) against the raw PET, energy + forces.

    python benchmarks/layerwise.py --threads 1 --sizes 192 1536 5184 \\
        [--presets md tight loose] [--sizes-json '{"d_pet": 32, ...}']

For ethanol and water boxes, one line per ECSE preset, in the usual format
(``ours`` the layer-wise model, ``peer`` the raw model it symmetrizes, same
weights, same process, interleaved, median of ``--repeats``)::

    ecse/<system>/layerwise/<preset>: ours=… peer=… ratio=…        (E+F wall time)
    ecse/<system>/layerwise/<preset>/frames_per_atom: ours=… peer=1 …
    ecse/<system>/layerwise/<preset>/memory: ours=… peer=… …   (peak MiB of one step)
    ecse/<system>/layerwise/<preset>/ms_per_atom: ours=… peer=<smallest box> …

The model is small by default (``d_pet = d_readout = 32``, ``d_feedforward = 64``)
so that the 5184-atom box fits in memory with its frames; memory is measured in a
fresh process per model and system.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference  # noqa: E402
from matched_hypers import OURS  # noqa: E402

from metatrain_pet.ecse.hypers import resolve_layerwise_hypers  # noqa: E402
from metatrain_pet.pet.model import PET  # noqa: E402
from metatrain_pet.runtime import set_lean_forces  # noqa: E402

SMALL = {"d_pet": 32, "d_readout": 32, "d_feedforward": 64}
FRAMES = "mtt::aux::ecse_num_frames"


def models(sizes: dict, preset: str, lean_above=None, dtype=torch.float32):
    """The raw PET (exported) and the same weights with layer-wise ECSE, which
    uses lean forces above ``lean_above`` tokens when given (else the
    default)."""
    raw = inference.build_models(dtype, **sizes)[OURS]
    network = raw.module
    hypers = dict(network.hypers)
    hypers["ecse"] = dict(resolve_layerwise_hypers(preset), enable=True)
    layerwise = PET(hypers, network.dataset_info)
    layerwise.load_state_dict(network.state_dict(), strict=False)
    layerwise.additive_models[0].sync_tensor_maps()
    exported = layerwise.to(dtype).export()
    if lean_above is not None:
        set_lean_forces(exported, lean_above)
    return {"layerwise": exported, "raw": raw}


def frames_per_atom(model, system) -> float:
    from metatomic.torch import ModelEvaluationOptions, ModelOutput

    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={FRAMES: ModelOutput(sample_kind="system")}
    )
    with torch.no_grad():
        counts = model([system], options, check_consistency=False)[FRAMES]
    return float(counts.block().values.sum()) / len(system)


def memory_mib(label: str, variant: str, preset: str, args) -> float:
    """Peak memory of one step, in a fresh process (see ``run.py``)."""
    command = [sys.executable, __file__, "--worker", label, variant, preset]
    command += [
        "--sizes-json",
        json.dumps(args.model_sizes),
        "--threads",
        str(torch.get_num_threads()),
    ]
    command += ["--dtype", args.dtype]
    if args.lean_forces_above is not None:
        command += ["--lean-forces-above", str(args.lean_forces_above)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, env=env
    )
    return float(output.stdout.strip().splitlines()[-1])


def worker(label: str, variant: str, preset: str, args) -> None:
    dtype = getattr(torch, args.dtype)
    model = models(args.model_sizes, preset, args.lean_forces_above, dtype)[variant]
    atoms = _structures([label])[label]
    system = inference.prepare(model, atoms, dtype)
    print(inference.step_memory_mib(model, system, torch.device("cpu")))


def _structures(labels):
    sizes = [int(label[5:]) for label in labels if label.startswith("water")]
    return inference.structures(sizes)


def report(name, ours, peer, unit):
    ratio = ours / peer if peer != 0 else float("nan")
    print(f"{name}: ours={ours:.4g}{unit} peer={peer:.4g}{unit} ratio={ratio:.3f}")


def benchmark(args) -> dict:
    labels = ["ethanol"] + [f"water{size}" for size in args.sizes]
    atoms_of = _structures(labels)
    results = {}
    for preset in args.presets:
        dtype = getattr(torch, args.dtype)
        pair = models(args.model_sizes, preset, args.lean_forces_above, dtype)
        smallest = None
        for label in labels:
            atoms = atoms_of[label]
            systems = {
                name: inference.prepare(m, atoms, dtype) for name, m in pair.items()
            }
            repeats = args.repeats if len(atoms) <= 192 else 1
            wall = inference.interleaved_times(pair, systems, repeats, warmup=1)
            times = {name: float(np.median(values)) for name, values in wall.items()}
            name = f"ecse/{label}/layerwise/{preset}"
            report(name, times["layerwise"] * 1e3, times["raw"] * 1e3, "ms")
            frames = frames_per_atom(pair["layerwise"], systems["layerwise"])
            report(f"{name}/frames_per_atom", frames, 1.0, "")
            memory = {}
            if not args.no_memory:
                for variant in pair:
                    memory[variant] = memory_mib(label, variant, preset, args)
                report(f"{name}/memory", memory["layerwise"], memory["raw"], "MiB")
            per_atom = times["layerwise"] * 1e3 / len(atoms)
            if label.startswith("water"):
                smallest = per_atom if smallest is None else smallest
                report(f"{name}/ms_per_atom", per_atom, smallest, "ms")
            results[name] = {
                "times_s": times,
                "frames_per_atom": frames,
                "memory_mib": memory,
            }
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[192, 1536, 5184])
    parser.add_argument("--presets", nargs="+", default=["md", "tight"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes-json", default=json.dumps(SMALL), help="model sizes")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--lean-forces-above",
        type=int,
        default=None,
        help="tokens above which the layer-wise model uses lean forces "
        "(metatrain_pet.runtime; 0: always; default: the model's)",
    )
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--worker", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.model_sizes = json.loads(args.sizes_json)
    if args.worker is not None:
        worker(*args.worker, args)
        return
    results = benchmark(args)
    if args.out is not None:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
