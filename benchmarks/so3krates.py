"""Train the So3krates equivariant potential (PyPI ``so3krates-torch``) on rMD17
ethanol for a fixed budget of CPU time with So3krates' own trainer, then report its
test accuracy and inference time (from the repository root):

    python benchmarks/so3krates.py --train ../shared/data/rmd17/ethanol_train_01.xyz \\
        --n-train 200 --test ../shared/data/rmd17/ethanol_test_01.xyz --n-test 100 \\
        --budget-s 1800 --threads 1 --out so3krates.json

so3krates-torch stays out of the main environment: on first use this script creates
``benchmarks/.so3krates-venv`` (torch 2.13.0 first, then
``so3krates-torch[vis]==0.2.1``, both under the repository's ``constraints.txt``; the
``vis`` extra brings pandas, which the package's trainer imports) and re-executes
itself there.

Training runs the package's own pipeline, ``so3krates_torch.cli.run_train.
run_training`` (what ``torchkrates-train --config`` runs), on the first ``--n-train``
structures, with the first ``--n-test`` test structures as its validation set (as in
``learning_curve.py``; the CPU time of these evaluations counts in the budget). The
trainer has no time limit, so it runs epoch by epoch with unbounded ``num_epochs``
and early stopping off: a hook on its metrics logger, which it calls after each
epoch's validation, stops it at the first epoch that ends past ``--budget-s`` CPU
seconds (``time.process_time``, counted from the data loading on), and the package
then saves its final model as usual. Its log goes to a temporary folder; stdout gets
one summary line.

The JSON gives the test energy MAE (eV per structure) and force MAE (eV/A, over
components), computed here from the final model's predictions; the epochs done and
CPU seconds spent; the per-epoch validation (= test) MAEs logged by the trainer; the
parameters the energy depends on (``parameters``) and all those built
(``parameters_total``: the package always builds SO3LR, whose partial-charge and
Hirshfeld heads plain So3krates leaves unused); the median wall time (ms) of one
energy + forces call on one ethanol molecule after warm-up, its neighbour list built
once outside the timed region and the batch cloned per call as the package's ASE
calculator does; and the hyper-parameters. These are the package's ``ARCHITECTURE``
and ``TRAINING`` defaults, except the cutoff (5 A), SO3LR's ZBL, electrostatic and
dispersion terms (off: plain So3krates), early stopping (off), and what the package
leaves without default (``degrees``, ``lr``, ``batch_size``), taken with
``default_dtype`` and ``lr_scheduler_gamma`` (whose code default, 0.85, contradicts
the 0.9993 of its README) from its MD17 ethanol example
``examples/training/train_settings_example.yaml``.
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "benchmarks" / ".so3krates-venv"
VENV_PYTHON = VENV / "bin" / "python"
READY = VENV / "so3krates-installed"
PACKAGES = (["torch==2.13.0"], ["so3krates-torch[vis]==0.2.1"])

CONFIG = {
    "GENERAL": {"name_exp": "so3krates", "default_dtype": "float32"},
    "ARCHITECTURE": {
        "degrees": [1, 2, 3, 4],
        "r_max": 5.0,
        "zbl_repulsion_bool": False,
        "electrostatic_energy_bool": False,
        "dispersion_energy_bool": False,
    },
    "TRAINING": {
        "lr": 1e-3,
        "lr_scheduler_gamma": 0.9993,
        "num_epochs": 10**9,
        "patience": 10**9,
    },
    "MISC": {"device": "cpu", "no_checkpoint": True, "log_level": "WARNING"},
}


def fail(message: str):
    sys.exit(f"so3krates.py: {message}")


def run_or_fail(command: list, what: str):
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        fail(f"cannot {what}: {lines[-1] if lines else done.returncode}")


def ensure_venv():
    """Create the virtualenv and install so3krates-torch into it, unless done."""
    if READY.exists():
        return
    run_or_fail([sys.executable, "-m", "venv", str(VENV)], f"create {VENV}")
    constraints = str(REPO / "constraints.txt")
    for packages in PACKAGES:
        command = [str(VENV_PYTHON), "-m", "pip", "install", "-q", "-c", constraints]
        run_or_fail(command + packages, f"install {' '.join(packages)} into {VENV}")
    READY.touch()


def write_subset(source: Path, count: int, path: Path) -> list:
    """Write the first ``count`` structures of ``source`` to ``path`` with their
    energy and forces under the package's default keys; return them."""
    import ase
    import ase.io

    frames = ase.io.read(source, f":{count}")
    if len(frames) < count:
        fail(f"{source} holds {len(frames)} structures, fewer than {count}")
    subset = []
    for atoms in frames:
        copy = ase.Atoms(atoms.numbers, atoms.positions)
        copy.info["REF_energy"] = atoms.get_potential_energy()
        copy.new_array("REF_forces", atoms.get_forces())
        subset.append(copy)
    ase.io.write(path, subset, format="extxyz")
    return subset


class BudgetExceeded(Exception):
    """Raised from the trainer's metrics logger when the CPU budget is spent."""


def install_budget(budget_s: float, start: float, curve: list):
    """Stop ``run_training``'s train loop at the first epoch ending past the
    budget, recording the validation (= test) MAEs of every epoch in ``curve``."""
    from so3krates_torch.cli import run_train
    from so3krates_torch.tools.utils import MetricsLogger

    log, train = MetricsLogger.log, run_train.train

    def budget_log(self, record):
        log(self, record)
        if record.get("mode") != "eval" or record.get("epoch") is None:
            return
        spent = time.process_time() - start
        curve.append(
            {
                "epoch": record["epoch"] + 1,
                "cpu_s": spent,
                "energy_mae": float(record["mae_e"]),
                "forces_mae": float(record["mae_f"]),
            }
        )
        if spent > budget_s:
            raise BudgetExceeded

    def budget_train(**kwargs):
        try:
            train(**kwargs)
        except BudgetExceeded:
            pass

    MetricsLogger.log = budget_log
    run_train.train = budget_train


def build_config(train_path: Path, test_path: Path, batch_size: int) -> dict:
    """The package's validated training config, every default filled in."""
    from so3krates_torch.config import TrainConfig

    raw = json.loads(json.dumps(CONFIG))
    raw["TRAINING"].update(
        path_to_train_data=str(train_path),
        path_to_val_data=str(test_path),
        batch_size=batch_size,
        valid_batch_size=batch_size,
    )
    return TrainConfig.model_validate(raw).model_dump()


def predict(model, frames: list, r_max: float):
    """Energies (per structure) and forces predicted for ``frames``."""
    import torch
    from so3krates_torch.tools.utils import create_dataloader_from_list

    energies, forces = [], []
    for batch in create_dataloader_from_list(frames, 10, r_max, None):
        output = model(batch.to_dict(), training=False, compute_force=True)
        energies.append(output["energy"].detach())
        forces.append(output["forces"].detach())
    return torch.cat(energies).numpy(), torch.cat(forces).numpy()


def mean_absolute_errors(model, frames: list, r_max: float) -> dict:
    """Energy MAE (eV per structure) and force MAE (eV/A, over components)."""
    import numpy as np

    energies, forces = predict(model, frames, r_max)
    reference_e = np.array([atoms.info["REF_energy"] for atoms in frames])
    reference_f = np.concatenate([atoms.arrays["REF_forces"] for atoms in frames])
    return {
        "energy_mae_ev": float(np.abs(energies - reference_e).mean()),
        "forces_mae_ev_per_a": float(np.abs(forces - reference_f).mean()),
    }


def one_structure_batch(atoms, r_max: float):
    from so3krates_torch.tools.utils import create_dataloader_from_list

    return next(iter(create_dataloader_from_list([atoms], 1, r_max, None)))


def inference_ms(model, batch, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time (ms) of one energy + forces call, the batch (with its
    neighbour list) cloned per call as the package's ASE calculator does."""
    times = []
    for index in range(warmup + repeats):
        start = time.perf_counter()
        model(batch.clone().to_dict(), training=False, compute_force=True)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def count_parameters(model, batch) -> dict:
    """All parameters, and those the energy depends on (SO3LR always builds its
    partial-charge and Hirshfeld heads, unused by plain So3krates)."""
    model.zero_grad(set_to_none=True)
    output = model(batch.clone().to_dict(), training=True, compute_force=False)
    output["energy"].sum().backward()
    parameters = list(model.parameters())
    return {
        "parameters": sum(p.numel() for p in parameters if p.grad is not None),
        "parameters_total": sum(p.numel() for p in parameters),
    }


def train(args, work: Path) -> tuple:
    """Run the package's training pipeline in ``work``; return the final model,
    the test frames, the config, the per-epoch curve and the CPU seconds."""
    import torch
    from so3krates_torch.cli.run_train import run_training

    start = time.process_time()
    write_subset(args.train, args.n_train, work / "train.xyz")
    test = write_subset(args.test, args.n_test, work / "test.xyz")
    config = build_config(work / "train.xyz", work / "test.xyz", args.batch_size)
    curve: list = []
    install_budget(args.budget_s, start, curve)
    with contextlib.chdir(work):
        try:
            run_training(config)
        except Exception as error:  # one line instead of the trainer's traceback
            fail(f"So3krates training failed on CPU: {type(error).__name__}: {error}")
        model = torch.load("so3krates.model", weights_only=False)
    return model, test, config, curve, time.process_time() - start


def hypers(config: dict) -> dict:
    """The config's sections without its file and folder names."""
    return {
        section: {
            key: value
            for key, value in config[section].items()
            if not key.endswith(("_dir", "_data"))
        }
        for section in ("GENERAL", "ARCHITECTURE", "TRAINING")
    }


def worker(args):
    import torch

    torch.set_num_threads(args.threads)
    start_wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        model, test, config, curve, cpu_s = train(args, Path(work))
    wall_s = time.perf_counter() - start_wall
    r_max = config["ARCHITECTURE"]["r_max"]
    batch = one_structure_batch(test[0], r_max)
    result = {
        "model": "So3krates (so3krates-torch 0.2.1)",
        "torch": torch.__version__,
        "threads": args.threads,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "budget_s": args.budget_s,
        "epochs": len(curve),
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        **mean_absolute_errors(model, test, r_max),
        "inference_ms": inference_ms(model, batch),
        **count_parameters(model, batch),
        "hypers": hypers(config),
        "curve": curve,
    }
    write_json(result, args.out)
    print(
        f"so3krates: epochs={result['epochs']} cpu_s={cpu_s:.0f} "
        f"energy_mae={result['energy_mae_ev']:.4g} eV "
        f"forces_mae={result['forces_mae_ev_per_a']:.4g} eV/A "
        f"inference={result['inference_ms']:.3g} ms "
        f"parameters={result['parameters']}"
    )


def write_json(result: dict, out: Path):
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=1800.0)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for name in ("train", "test", "out"):
        setattr(args, name, getattr(args, name).resolve())
    return args


def main():
    args = parse_args()
    if Path(sys.prefix).resolve() != VENV.resolve():
        ensure_venv()
        script = str(Path(__file__).resolve())
        os.execv(VENV_PYTHON, [str(VENV_PYTHON), script, *sys.argv[1:]])
    worker(args)


if __name__ == "__main__":
    main()
