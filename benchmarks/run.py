"""Side-by-side benchmarks of our PET (``experimental.pet_ecse``) and metatrain's
``pet`` with matched hyper-parameters (see ``matched_hypers.py``).

    python benchmarks/run.py [--quick] [--device cpu|cuda] [--out DIR]

Every comparison prints one line ``name: ours=VALUE peer=VALUE ratio=R`` with
``R = ours / peer`` (lower is better for times, memory and errors). Sections:

- ``inference/<system>``: wall time of one energy + forces step of the exported,
  eval-mode model (median of repeats, warm-up excluded); ``.../cpu`` the process
  CPU time of the same steps; ``.../torchscript`` the TorchScript-compiled model;
  ``memory/<system>`` the peak resident memory added by one step (ru_maxrss delta,
  measured in a fresh subprocess per model and system), ``memory_per_atom/<system>``
  the same per atom. Systems: ethanol, water boxes (``--sizes``) and water films
  with vacuum (``slab<N>``, ``--slab-sizes``), whose neighbour counts vary. The
  peer is not run on boxes above ``--peer-max-atoms`` (ratio NaN).
- ``scaling/<system>``: the same on the water boxes with a small model
  (``--scaling-sizes``); ``threads<N>/inference/<system>``: ethanol and the boxes
  up to 1536 atoms again with every further thread count of ``--threads``.
- ``train/<dataset>``: wall time of one training epoch with each architecture's own
  trainer, same batch size and loss (energy + forces).
- ``ecse/<system>``: cost of ECSE around our raw model (``peer`` is the raw model),
  mean number of frames, and comparison with metatomic's ``SymmetrizedModel``
  (grid orders 3, 5, 7): cost and spread of the energy over random rotations.
- ``accuracy/<dataset>/<budget>s``: test force and energy MAE, epochs and
  rotational spread after training each architecture with its own defaults for the
  same CPU time, on rMD17 ethanol and water64 (``accuracy.py``); ``.../matched``
  against metatrain's ``pet`` at our sizes.

The run writes ``results.csv``, ``results.md`` and PNG plots into ``--out``.
"""

import argparse
import csv
import datetime
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import inference  # noqa: E402
from matched_hypers import OURS, PEER  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEST_DATA = REPO / "tests" / "data"

ROWS = []


def report(name, ours, peer, unit, fmt="{:.4g}"):
    ratio = ours / peer if peer not in (0, None) and not math.isnan(peer) else math.nan
    ROWS.append(
        {"name": name, "ours": ours, "peer": peer, "ratio": ratio, "unit": unit}
    )
    print(
        f"{name}: ours={fmt.format(ours)}{unit} peer={fmt.format(peer)}{unit} "
        f"ratio={ratio:.3f}",
        flush=True,
    )


# --------------------------------------------------------------------- inference
def run_inference(args, device, prefix="inference", sizes=None, hypers=None):
    """Energy + forces time (and, for the main section, memory) of both models on
    ethanol and water boxes; ``inference`` also times the films, TorchScript and
    memory, ``scaling`` (small model) the boxes alone, ``threads<N>/inference``
    ethanol and the boxes up to 1536 atoms with N threads. The peer is left out
    above ``--peer-max-atoms`` in the main section (its full graph would not fit
    in memory). Returns the time per atom of every box, per model (CPU time on
    a CPU, wall time on a GPU)."""
    sizes = args.sizes if sizes is None else sizes
    hypers = args.model_sizes if hypers is None else hypers
    main = prefix == "inference"
    if prefix.startswith("threads"):
        sizes = [n for n in sizes if n <= 1536]
    atoms_by_name = inference.structures(sizes, args.slab_sizes if main else [])
    if prefix == "scaling":
        del atoms_by_name["ethanol"]
    runtime = {"max_tokens": args.max_tokens, "lean_forces_above": args.lean_above}
    models = inference.build_models(torch.float32, **runtime, **hypers)
    scripted = {}
    if args.script and main:
        scripted = inference.build_models(
            torch.float32, script=True, **runtime, **hypers
        )
    per_atom = {OURS: {}, PEER: {}}
    for label, atoms in atoms_by_name.items():
        n_atoms = len(atoms)
        big = n_atoms > 2000
        repeats = 1 if n_atoms > 4000 else (2 if big else args.repeats)
        if n_atoms < 100:  # milliseconds per step: many repeats against the noise
            repeats = max(repeats, 7 * args.repeats)
        warmup = 1 if n_atoms > 1000 else 2
        names = [OURS] if main and n_atoms > args.peer_max_atoms else [OURS, PEER]
        variants = [("", models)]
        if scripted and n_atoms <= 200 and not (args.quick and n_atoms > 100):
            variants.append(("/torchscript", scripted))
        for suffix, family in variants:
            family = {k: family[k].to(device) for k in names}
            systems = {
                k: inference.prepare(m, atoms).to(device=device)
                for k, m in family.items()
            }
            wall, cpu = _interleaved(family, systems, repeats, warmup, device)
            wall, cpu = _medians(wall), _medians(cpu)
            report(
                f"{prefix}/{label}{suffix}", wall[OURS] * 1e3, wall[PEER] * 1e3, "ms"
            )
            if suffix == "" and label.startswith("water"):
                # CPU time on a CPU (the machine may be shared), wall time on GPU
                times = cpu if device.type == "cpu" else wall
                for name in names:
                    per_atom[name][n_atoms] = times[name] / n_atoms
            report(
                f"{prefix}/{label}{suffix}/cpu", cpu[OURS] * 1e3, cpu[PEER] * 1e3, "ms"
            )
            del systems
        if args.memory and main and not (args.quick and label != "water192"):
            values = {
                name: _memory_subprocess(name, label, device, hypers, runtime)
                if name in names
                else math.nan
                for name in (OURS, PEER)
            }
            report(f"memory/{label}", values[OURS], values[PEER], "MiB", "{:.1f}")
            kib = {name: value * 1024 / len(atoms) for name, value in values.items()}
            report(f"memory_per_atom/{label}", kib[OURS], kib[PEER], "KiB", "{:.0f}")
    return per_atom


def _medians(times):
    """Median of every model's times; NaN for a model left out."""
    return {
        name: float(np.median(times[name])) if name in times else math.nan
        for name in (OURS, PEER)
    }


def _interleaved(models, systems, repeats, warmup, device, step=inference.step):
    for _ in range(warmup):
        for name, model in models.items():
            step(model, systems[name])
    wall = {name: [] for name in models}
    cpu = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            _sync(device)
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step(model, systems[name])
            _sync(device)
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _memory_subprocess(name, label, device, hypers, runtime):
    """Peak memory of one step, in MiB, in a fresh process per model and system
    (model and system already built, after one warm-up step that pays one-time
    allocations): on CPU the peak resident set size during the step (VmHWM, reset
    just before it through /proc/self/clear_refs) minus the resident set size before
    it; on CUDA the peak allocated memory of
    torch's caching allocator during the step minus the allocated memory before."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--memory-worker",
        name,
        label,
        "--device",
        device.type,
        "--threads",
        str(torch.get_num_threads()),
        "--hypers-json",
        json.dumps(hypers),
        "--max-tokens",
        str(runtime["max_tokens"]),
    ]
    if runtime["lean_forces_above"] is not None:
        command += ["--lean-forces-above", str(runtime["lean_forces_above"])]
    # glibc keeps freed heap chunks resident (and raises its mmap threshold as it
    # goes), which hides reused memory from RSS; a fixed threshold puts every
    # allocation above 64 KiB in its own mapping, returned to the system when freed,
    # so that the RSS follows the live tensors
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=REPO, env=env
    ).stdout
    return float(output.strip().splitlines()[-1])


def memory_worker(name, label, device, hypers, runtime):
    atoms = inference.structure(label)
    models = inference.build_models(torch.float32, **runtime, **hypers)
    model = models[name].to(device)
    system = inference.prepare(model, atoms).to(device=device)
    print(inference.step_memory_mib(model, system, device))


# ---------------------------------------------------------------------- training
def run_training(args, device):
    import train_epoch

    datasets = {}
    if args.quick:
        datasets["ethanol40"] = (TEST_DATA / "ethanol_40.xyz", 0, 8)
        datasets["water64_2"] = (TEST_DATA / "water64_2.xyz", 0, 2)
    else:
        datasets["rmd17_ethanol_train01"] = (
            SHARED_DATA / "rmd17" / "ethanol_train_01.xyz",
            args.train_structures_ethanol,
            16,
        )
        datasets["water64_train"] = (
            SHARED_DATA / "water" / "water64_train.xyz",
            args.train_structures_water,
            2,
        )
    # the first optimizer built in a process imports torch._dynamo (seconds): do
    # it before timing, so that it is charged to neither architecture
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    epoch_times = {}
    for label, (path, n_structures, batch_size) in datasets.items():
        dataset, info = train_epoch.load(str(path), n_structures)
        hypers = inference.matched_hypers(**args.model_sizes)
        times = {OURS: [], PEER: []}
        for repeat in range(args.train_repeats):
            order = (OURS, PEER) if repeat % 2 == 0 else (PEER, OURS)
            for name in order:
                times[name].append(
                    train_epoch.train_seconds(
                        name,
                        hypers[name],
                        info,
                        dataset,
                        batch_size,
                        1,
                        device=device,
                    )
                )
        ours, peer = np.median(times[OURS]), np.median(times[PEER])
        report(f"train/{label}", ours, peer, "s", "{:.2f}")
        epoch_times[label] = {OURS: ours, PEER: peer}
    return epoch_times


# -------------------------------------------------------------------------- ECSE
def run_ecse(args, device):
    try:
        from metatrain_pet.ecse import symmetrize
    except Exception as error:  # noqa: BLE001
        print(f"ecse: skipped (metatrain_pet.ecse not importable: {error})")
        return None
    from metatrain_pet.symmetry.diagnostics import (
        random_orthogonal_matrices,
        symmetry_errors,
    )
    from metatrain_pet.symmetry.grid import grid_average, grid_evaluation_count

    dtype = torch.float64
    raw = inference.build_models(dtype, **args.ecse_sizes)[OURS]
    rotations = random_orthogonal_matrices(args.rotations, seed=0, inversion=False)
    systems = inference.structures([192])
    summary = {}
    for label in args.ecse_systems:
        atoms = systems[label]
        ecse = symmetrize(raw, **inference.ecse_settings(atoms))
        system = inference.prepare(raw, atoms, dtype)
        ecse_system = inference.prepare(ecse, atoms, dtype)
        repeats = args.repeats if label == "ethanol" else 1
        # on a periodic box, ECSE and the grids are timed and compared on energies
        # alone: with forces, the graphs of the ~600 environment evaluations of ECSE
        # (or of hundreds of rotated boxes for a grid) need more than 24 GB
        energy_only = bool(atoms.pbc.any())
        step = inference.energy_step if energy_only else inference.step
        name = f"ecse/{label}/energy_only" if energy_only else f"ecse/{label}"
        wall, cpu = _interleaved(
            {"ecse": ecse, "raw": raw},
            {"ecse": ecse_system, "raw": system},
            repeats,
            1,
            torch.device("cpu"),
            step,
        )
        ecse_time, raw_time = np.median(wall["ecse"]), np.median(wall["raw"])
        report(name, ecse_time * 1e3, raw_time * 1e3, "ms")
        frames = _ecse_frames(ecse, ecse_system)
        report(f"ecse/{label}/frames", frames, 1.0, "")
        n_rot = len(rotations) if label == "ethanol" else 2
        ecse_error = symmetry_errors(
            ecse, atoms, rotations[:n_rot], batch_size=1, forces=not energy_only
        ).energy
        raw_error = symmetry_errors(
            raw, atoms, rotations[:n_rot], batch_size=1, forces=not energy_only
        ).energy
        report(
            f"ecse/{label}/energy_spread_vs_raw", ecse_error, raw_error, "eV", "{:.3g}"
        )
        summary[label] = {"ecse": ecse_time, "raw": raw_time, "frames": frames}
        for order in args.grid_orders:
            if (
                label != "ethanol"
                and grid_evaluation_count(order) > args.max_grid_evals
            ):
                print(
                    f"ecse/{label}/grid{order}: skipped "
                    f"({grid_evaluation_count(order)} evaluations per structure)"
                )
                continue
            grid = grid_average(raw, order, batch_size=args.grid_batch)
            grid_system = inference.prepare(grid, atoms, dtype)
            start = time.perf_counter()
            step(grid, grid_system)
            grid_time = time.perf_counter() - start
            report(
                f"{name}/vs_grid{order}/time",
                ecse_time * 1e3,
                grid_time * 1e3,
                "ms",
            )
            grid_error = symmetry_errors(
                grid,
                atoms,
                rotations[: min(n_rot, 4)],
                batch_size=1,
                forces=not energy_only,
            ).energy
            report(
                f"ecse/{label}/vs_grid{order}/energy_spread",
                ecse_error,
                grid_error,
                "eV",
                "{:.3g}",
            )
            summary[label][f"grid{order}"] = grid_time
    return summary


def _ecse_frames(model, system):
    from metatomic.torch import ModelEvaluationOptions, ModelOutput

    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={
            "energy": ModelOutput(quantity="energy", unit="eV", sample_kind="system"),
            "mtt::aux::ecse_num_frames": ModelOutput(sample_kind="system"),
        },
    )
    with torch.no_grad():
        results = model([system], options, check_consistency=False)
    return float(results["mtt::aux::ecse_num_frames"].block().values.float().mean())


# ---------------------------------------------------------------------- accuracy
def run_accuracy(args, out):
    import accuracy

    quick = args.quick
    datasets = accuracy.QUICK_DATASETS if quick else accuracy.FULL_DATASETS
    if args.accuracy_datasets:
        datasets = {name: datasets[name] for name in args.accuracy_datasets}
    table = accuracy.run(
        TEST_DATA if quick else SHARED_DATA,
        datasets,
        args.budget_s,
        args.model_sizes,
        out / "accuracy",
        args.accuracy_jobs,
        args.accuracy_models,
    )
    others = (("peer", ""), ("peer_matched", "/matched"), ("so3krates", "/so3krates"))
    for (dataset, budget), results in table.items():
        prefix = f"accuracy/{dataset}/{budget:g}s"
        ours = results.get("ours")
        if ours is None:  # only peers were trained: no ratio to report
            continue
        for peer_label, suffix in others:
            if peer_label not in results:
                continue
            peer = results[peer_label]
            for key, unit, scale in (
                ("forces_mae", "meV/A", 1e3),
                ("energy_mae", "meV/atom", 1e3),
                ("epochs", "", 1),
                ("rotational_spread_mev", "meV", 1),
            ):
                report(
                    f"{prefix}{suffix}/{key.replace('_mev', '')}",
                    ours[key] * scale,
                    peer[key] * scale,
                    unit,
                )
    accuracy.plot(table, out)
    return table


# ---------------------------------------------------------------------- outputs
def write_outputs(out, per_atom, scaling, meta):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, ["name", "ours", "peer", "ratio", "unit"])
        writer.writeheader()
        writer.writerows(ROWS)
    lines = [
        f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['threads']} "
        f"thread(s); device {meta['device']}; {meta['date']}; command "
        f"`{meta['command']}`",
        "",
        "| name | ours | peer | ratio (ours/peer) |",
        "|---|---|---|---|",
    ]
    for row in ROWS:
        lines.append(
            f"| {row['name']} | {row['ours']:.4g} {row['unit']} | "
            f"{row['peer']:.4g} {row['unit']} | {row['ratio']:.3f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [("", per_atom, "-"), (" (small model)", scaling, "--")]
    if any(data and len(data[OURS]) > 0 for _, data, _ in curves):
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for suffix, data, style in curves:
            if not data:
                continue
            for name, label in ((OURS, "ours"), (PEER, "metatrain pet")):
                sizes = sorted(data[name])
                axis.plot(
                    sizes,
                    [data[name][n] * 1e3 for n in sizes],
                    "o" + style,
                    label=label + suffix,
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("atoms")
        clock = "CPU" if meta["device"] == "cpu" else "wall"
        axis.set_ylabel(f"{clock} ms per atom (energy + forces)")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / "inference_per_atom.png", dpi=120)
        plt.close(figure)

    timed = [r for r in ROWS if r["unit"] in ("ms", "s") and not math.isnan(r["ratio"])]
    if timed:
        figure, axis = plt.subplots(figsize=(6, 0.3 * len(timed) + 1))
        axis.barh([r["name"] for r in timed], [r["ratio"] for r in timed])
        axis.axvline(1.0, color="k", lw=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("ours / peer (time)")
        axis.invert_yaxis()
        figure.tight_layout()
        figure.savefig(out / "ratios.png", dpi=120)
        plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CI smoke run")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="benchmark-results")
    parser.add_argument(
        "--threads",
        nargs="+",
        type=int,
        default=[1],
        help="threads of every section; each further count repeats the inference "
        "of ethanol and the boxes up to 1536 atoms (lines threads<N>/...)",
    )
    parser.add_argument(
        "--peer-max-atoms",
        type=int,
        default=6000,
        help="largest box on which the main inference section runs the peer "
        "(its full graph needs ~2 MB per atom with the default model)",
    )
    parser.add_argument(
        "--sections",
        nargs="*",
        default=["inference", "scaling", "train", "ecse", "accuracy"],
    )
    parser.add_argument(
        "--sizes",
        nargs="*",
        type=int,
        default=None,
        help="water box sizes (192 1536 5184 12288); default: all but 12288, "
        "192 with --quick",
    )
    parser.add_argument(
        "--slab-sizes",
        nargs="*",
        type=int,
        default=None,
        help="water films with vacuum (neighbour counts vary) of these numbers of "
        "atoms; default 1536, 192 with --quick",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=0,
        help="tokens per chunk of environments of ours (0: its default; "
        "1000000000: one padded tensor, as before chunking)",
    )
    parser.add_argument(
        "--lean-forces-above",
        dest="lean_above",
        type=int,
        default=None,
        help="tokens above which ours uses lean forces (metatrain_pet.runtime; "
        "0: always, -1: never, nor through the last block: the full graph; "
        "default: the model's)",
    )
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-script", dest="script", action="store_false")
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--train-repeats", type=int, default=1)
    parser.add_argument("--train-structures-ethanol", type=int, default=200)
    parser.add_argument("--train-structures-water", type=int, default=4)
    parser.add_argument(
        "--budget-s",
        type=float,
        nargs="*",
        default=None,
        help="CPU seconds of training per model in the accuracy section "
        "(default 1800 5400; 5 with --quick)",
    )
    parser.add_argument(
        "--accuracy-jobs", type=int, default=2, help="models trained at once"
    )
    parser.add_argument(
        "--accuracy-datasets",
        nargs="*",
        default=None,
        help="rmd17_ethanol and/or water64 (default both; with --quick, the tiny "
        "ethanol40 and water64_2)",
    )
    parser.add_argument(
        "--accuracy-models",
        nargs="*",
        default=["ours", "peer", "peer_matched"],
        help="ours, peer (its defaults), peer_matched (our sizes) and/or so3krates "
        "(own virtualenv, see so3krates.py; molecules only)",
    )
    parser.add_argument("--rotations", type=int, default=None)
    parser.add_argument("--grid-orders", nargs="*", type=int, default=None)
    parser.add_argument("--grid-batch", type=int, default=8)
    parser.add_argument(
        "--max-grid-evals",
        type=int,
        default=None,
        help="skip grids with more evaluations per structure on the water box",
    )
    parser.add_argument(
        "--scaling-sizes",
        nargs="*",
        type=int,
        default=None,
        help="water box sizes of the scaling section (small model)",
    )
    parser.add_argument(
        "--no-ecse-water",
        action="store_true",
        help="leave out ECSE on the 192-atom water box (per-atom mode, tight preset)",
    )
    parser.add_argument("--memory-worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--hypers-json", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads[0])
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    device = torch.device(args.device)
    if args.memory_worker:
        runtime = {"max_tokens": args.max_tokens, "lean_forces_above": args.lean_above}
        memory_worker(
            *args.memory_worker, device, json.loads(args.hypers_json), runtime
        )
        return

    quick = args.quick
    # a small model, matched on both sides: for --quick, for the scaling section
    # (up to 12288 atoms) and for ECSE (hundreds of evaluations per structure)
    small = {"d_pet": 32, "d_readout": 32, "d_feedforward": 64}
    args.model_sizes = small if quick else {}
    args.ecse_sizes = small
    args.ecse_systems = ["ethanol"]
    if not (quick or args.no_ecse_water):
        args.ecse_systems.append("water192")
    if args.scaling_sizes is None:
        args.scaling_sizes = [] if quick else [192, 1536, 5184]
    if args.sizes is None:
        args.sizes = [192] if quick else [192, 1536]
    if args.slab_sizes is None:
        args.slab_sizes = [192] if quick else [1536]
    if args.repeats is None:
        args.repeats = 3 if quick else 5
    if args.budget_s is None:
        args.budget_s = [5.0] if quick else [1800.0, 5400.0]
    if args.rotations is None:
        args.rotations = 2 if quick else 8
    if args.grid_orders is None:
        args.grid_orders = [3] if quick else [3, 5, 7]
    if args.max_grid_evals is None:
        args.max_grid_evals = 0 if quick else 416

    meta = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared)",
        "torch": torch.__version__,
        "threads": args.threads[0],
        "device": args.device,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"
        ),
        "command": " ".join(["python", "benchmarks/run.py"] + sys.argv[1:]),
    }
    meta["hypers"] = {"main": args.model_sizes, "scaling_and_ecse": small}
    start = time.perf_counter()
    per_atom = None
    out = Path(args.out)
    if "inference" in args.sections:
        per_atom = run_inference(args, device)
        write_outputs(out, per_atom, None, meta)  # partial results, rewritten below
        for threads in args.threads[1:]:
            torch.set_num_threads(threads)
            run_inference(args, device, f"threads{threads}/inference")
            torch.set_num_threads(args.threads[0])
            write_outputs(out, per_atom, None, meta)
    if "scaling" in args.sections and args.scaling_sizes:
        scaling = run_inference(args, device, "scaling", args.scaling_sizes, small)
    else:
        scaling = None
    write_outputs(out, per_atom, scaling, meta)
    if "train" in args.sections:
        run_training(args, device)
        write_outputs(out, per_atom, scaling, meta)
    if "ecse" in args.sections and device.type == "cpu":
        run_ecse(args, device)
        write_outputs(out, per_atom, scaling, meta)
    if "accuracy" in args.sections:
        run_accuracy(args, out)
    meta["total_seconds"] = time.perf_counter() - start
    write_outputs(out, per_atom, scaling, meta)
    print(
        f"wrote {args.out}/results.csv, results.md and plots "
        f"({meta['total_seconds']:.0f} s)"
    )


if __name__ == "__main__":
    main()
