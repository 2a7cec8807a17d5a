"""Train one architecture for a fixed budget of CPU time and record its learning
curve: the test energy and force MAE after every epoch, against the CPU time spent.

    python benchmarks/learning_curve.py --arch experimental.pet_ecse \\
        --train ../shared/data/rmd17/ethanol_train_01.xyz --n-train 200 \\
        --test ../shared/data/rmd17/ethanol_test_01.xyz --n-test 100 \\
        --budget-s 1800 --model '{"transformer_type": "PostLN"}' --out curve.json

Each architecture is trained by its own trainer with its own default training
hyper-parameters, except ``num_epochs`` (chosen from the budget, so that the
learning-rate schedules of both run to completion within it), the batch size and
the overrides given with ``--model`` / ``--training`` (JSON). The test set is the
trainer's validation set, so the MAE after every epoch is the test MAE; the CPU time
of these evaluations is included in the budget of both architectures alike.
Training stops at the first epoch that ends past the budget.
"""

import argparse
import copy
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_epoch import load  # noqa: E402

# metatrain's default loss written out (its ``pet`` trainer wants the full form)
ENERGY_FORCES = {
    "energy": {
        "type": "mse",
        "weight": 1.0,
        "reduction": "mean",
        "gradients": {"positions": {"type": "mse", "weight": 1.0, "reduction": "mean"}},
    }
}


class BudgetExceeded(Exception):
    """Raised from the metric logger when the CPU budget is spent."""


def _capture_metrics(curve: list, start_cpu: float, budget_s: float):
    """Make metatrain's ``MetricLogger.log`` (which both trainers call once per
    epoch with the training and validation metrics) record the validation MAEs
    against CPU time into ``curve``, and stop training once the budget is spent."""
    from metatrain.utils.logging import MetricLogger

    original = getattr(MetricLogger.log, "original", MetricLogger.log)

    def log(self, metrics, epoch=None, rank=0, learning_rate=None):
        original(self, metrics, epoch=epoch, rank=rank, learning_rate=learning_rate)
        validation = metrics[1] if len(metrics) > 1 else {}
        spent = time.process_time() - start_cpu
        point = {"epoch": epoch, "cpu_s": spent, "learning_rate": learning_rate}
        for key, value in validation.items():
            if "MAE" in key:
                point[key] = float(value)
        curve.append(point)
        if spent > budget_s:
            raise BudgetExceeded

    log.original = original
    MetricLogger.log = log


def _force_and_energy_mae(point: dict) -> tuple:
    forces = [v for k, v in point.items() if "gradient" in k or "forces" in k]
    energies = [
        v
        for k, v in point.items()
        if "MAE" in k and "gradient" not in k and "forces" not in k
    ]
    return (energies[0] if energies else math.nan, forces[0] if forces else math.nan)


def rotational_spread(model, test_path: str, n_structures: int) -> float:
    """Mean over the first test structures of the standard deviation (eV) of the
    trained model's energy over 16 random rotations: how far the raw model is
    from rotational invariance (what ECSE's cost and smoothness depend on)."""
    import ase.io

    from metatrain_pet.symmetry.diagnostics import (
        random_orthogonal_matrices,
        symmetry_errors,
    )

    exported = model.export()
    rotations = random_orthogonal_matrices(16, seed=0, inversion=False)
    structures = ase.io.read(test_path, f":{n_structures}")
    spreads = [
        symmetry_errors(exported, atoms, rotations, batch_size=4, forces=False).energy
        for atoms in structures
    ]
    return float(sum(spreads) / len(spreads))


def _setup(args):
    """Data, architecture and hyper-parameters (defaults + overrides)."""
    from metatrain.utils.architectures import get_default_hypers, import_architecture

    train, info = load(args.train, args.n_train)
    test, _ = load(args.test, args.n_test)
    architecture = import_architecture(args.arch)
    defaults = get_default_hypers(args.arch)
    model_hypers = {} if args.init else copy.deepcopy(defaults["model"])
    model_hypers.update(json.loads(args.model))
    train_hypers = copy.deepcopy(defaults["training"])
    train_hypers.update(batch_size=args.batch_size, num_workers=0)
    if args.arch == "pet":
        train_hypers["loss"] = ENERGY_FORCES
    train_hypers.update(json.loads(args.training))
    return architecture, model_hypers, train_hypers, info, train, test


def _initial_model(architecture, model_hypers, info, init: Optional[str]):
    """A new model, or (``--init``, App. F.7 fine-tuning) the weights of a
    checkpoint with the ``--model`` overrides applied to its hypers, e.g. layer-wise
    ECSE switched on for a model trained without it."""
    if init is None:
        return architecture.__model__(model_hypers, info)
    from metatrain.utils.io import model_from_checkpoint

    checkpoint = torch.load(init, weights_only=False, map_location="cpu")
    checkpoint["model_data"]["model_hypers"].update(model_hypers)
    return model_from_checkpoint(checkpoint, context="finetune")


def _train(architecture, model_hypers, train_hypers, info, train, test, init=None):
    model = _initial_model(architecture, model_hypers, info, init)
    trainer = architecture.__trainer__(train_hypers)
    with tempfile.TemporaryDirectory() as checkpoints:
        try:
            trainer.train(
                model,
                torch.float32,
                [torch.device("cpu")],
                [train],
                [test],
                checkpoints,
            )
        except BudgetExceeded:
            pass
    return model, trainer


def _epoch_cpu_seconds(setup, args) -> float:
    """CPU time of one epoch (training and test evaluation), from the second epoch
    of a throwaway model (the first also pays the one-time costs: composition and
    scaler fits, data loaders), so that the scheduled epochs fill the budget."""
    architecture, model_hypers, train_hypers, info, train, test = setup
    calibration: list = []
    _capture_metrics(calibration, time.process_time(), math.inf)
    hypers = dict(train_hypers, num_epochs=2)
    _train(architecture, model_hypers, hypers, info, train, test, args.init)
    return calibration[1]["cpu_s"] - calibration[0]["cpu_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="experimental.pet_ecse")
    parser.add_argument("--train", required=True)
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--test", required=True)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=1800.0)
    parser.add_argument(
        "--epoch-estimate-s",
        type=float,
        default=None,
        help="CPU seconds per epoch (default: measured on one throwaway epoch)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="{}", help="JSON model overrides")
    parser.add_argument("--training", default="{}", help="JSON trainer overrides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spread-structures", type=int, default=10)
    parser.add_argument(
        "--init",
        default=None,
        help="start from this checkpoint's weights (fine-tuning); --model then "
        "overrides its model hypers",
    )
    parser.add_argument("--save", default=None, help="checkpoint of the trained model")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    setup = _setup(args)
    architecture, model_hypers, train_hypers, info, train, test = setup
    epoch_s = args.epoch_estimate_s
    if epoch_s is None:
        epoch_s = _epoch_cpu_seconds(setup, args)
    train_hypers["num_epochs"] = max(1, int(args.budget_s / epoch_s))

    curve: list = []
    torch.manual_seed(args.seed)
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    _capture_metrics(curve, start_cpu, args.budget_s)
    model, trainer = _train(*setup, init=args.init)
    cpu_s, wall_s = time.process_time() - start_cpu, time.perf_counter() - start_wall
    if args.save is not None:
        trainer.save_checkpoint(model, args.save)
    energy, forces = _force_and_energy_mae(curve[-1] if curve else {})
    result = {
        "arch": args.arch,
        "model": json.loads(args.model),
        "training": json.loads(args.training),
        "init": args.init,
        "parameters": sum(p.numel() for p in model.parameters()),
        "budget_s": args.budget_s,
        "num_epochs_scheduled": train_hypers["num_epochs"],
        "epochs": len(curve),
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "energy_mae": energy,
        "forces_mae": forces,
        "best_forces_mae": min(
            (_force_and_energy_mae(p)[1] for p in curve), default=math.nan
        ),
        "rotational_spread_mev": 1e3
        * rotational_spread(model, args.test, args.spread_structures),
        "curve": curve,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as file:
        json.dump(result, file, indent=1)
    os.replace(tmp, args.out)
    print(
        f"{args.arch} {args.model} {args.training}: epochs={len(curve)} "
        f"energy_mae={energy:.4g} forces_mae={forces:.4g}"
    )


if __name__ == "__main__":
    main()
