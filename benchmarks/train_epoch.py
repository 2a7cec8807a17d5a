"""Time of training epochs, ours vs metatrain's ``pet`` with matched hypers, in one
process and interleaved, on an energy + forces dataset. Wall and CPU (process) time
are both reported: on a shared machine the CPU time is the steadier of the two.

    python benchmarks/train_epoch.py --data ../shared/data/rmd17/ethanol_train_01.xyz

``--profile`` adds, for one more run of each model, the self CPU time of its matrix
products (``mm``, ``addmm``, ``bmm``) against all its operators' (``torch.profiler``),
and the ratio ours would reach if everything but its matrix products were free.
"""

import argparse
import copy
import logging
import statistics
import time

import torch
from matched_hypers import OURS, PEER, matched_hypers
from metatrain.utils.architectures import get_default_hypers, import_architecture
from metatrain.utils.data import DatasetInfo, get_atomic_types, get_dataset


def load(path: str, n_structures: int):
    dataset, targets, _ = get_dataset(
        {
            "systems": {"read_from": path, "reader": "ase", "length_unit": "angstrom"},
            "targets": {
                "energy": {
                    "quantity": "energy",
                    "read_from": path,
                    "reader": "ase",
                    "key": "energy",
                    "unit": "eV",
                    "type": "scalar",
                    "sample_kind": "system",
                    "num_subtargets": 1,
                    "forces": {"read_from": path, "reader": "ase", "key": "forces"},
                    "stress": False,
                    "virial": False,
                }
            },
        }
    )
    if n_structures > 0:
        dataset = torch.utils.data.Subset(dataset, range(n_structures))
    info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=get_atomic_types(dataset),
        targets=targets,
    )
    return dataset, info


def train_model(name, model_hypers, info, dataset, batch_size, epochs, device=None):
    """Train a fresh model of architecture ``name`` with its own trainer for
    ``epochs`` epochs (energy + forces MSE loss, no validation set); returns it."""
    device = torch.device("cpu") if device is None else device
    architecture = import_architecture(name)
    model = architecture.__model__(model_hypers, info)
    hypers = copy.deepcopy(get_default_hypers(name)["training"])
    hypers.update(num_epochs=epochs, batch_size=batch_size, num_workers=0)
    hypers["loss"] = {
        "energy": {
            "type": "mse",
            "weight": 1.0,
            "reduction": "mean",
            "gradients": {
                "positions": {"type": "mse", "weight": 1.0, "reduction": "mean"}
            },
        }
    }
    trainer = architecture.__trainer__(hypers)
    trainer.train(model, torch.float32, [device], [dataset], [], "/tmp")
    return model


def train_times(name, model_hypers, info, dataset, batch_size, epochs, device=None):
    """Wall and CPU (process) time of :func:`train_model`, model construction
    included."""
    wall, cpu = time.perf_counter(), time.process_time()
    train_model(name, model_hypers, info, dataset, batch_size, epochs, device)
    return time.perf_counter() - wall, time.process_time() - cpu


def train_seconds(name, model_hypers, info, dataset, batch_size, epochs, device=None):
    """Wall time of :func:`train_model` (model construction included)."""
    return train_times(name, model_hypers, info, dataset, batch_size, epochs, device)[0]


MATRIX_PRODUCTS = ("aten::mm", "aten::addmm", "aten::bmm")


def matrix_product_share(name, model_hypers, info, dataset, batch_size, epochs):
    """(self CPU seconds of the matrix products, of all operators) of one
    :func:`train_model` run, from ``torch.profiler``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
        train_model(name, model_hypers, info, dataset, batch_size, epochs)
    events = p.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in MATRIX_PRODUCTS)
    total = sum(e.self_cpu_time_total for e in events)
    return products * 1e-6, total * 1e-6


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--n-structures", type=int, default=0, help="0: all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="matrix products")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)

    dataset, info = load(args.data, args.n_structures)
    hypers = matched_hypers()
    warmup = torch.utils.data.Subset(dataset, range(min(args.batch_size, len(dataset))))
    for name in (OURS, PEER):
        # one-time costs (imports, kernel initialisation) stay out of the timings
        train_model(name, hypers[name], info, warmup, args.batch_size, 1)
    times = {OURS: [], PEER: []}
    for _ in range(args.repeats):
        for name in (OURS, PEER):
            times[name].append(
                train_times(
                    name, hypers[name], info, dataset, args.batch_size, args.epochs
                )
            )
    print(f"raw (wall, cpu) seconds: {times}")
    for index, kind in enumerate(("wall", "cpu")):
        ours = statistics.median(t[index] for t in times[OURS])
        peer = statistics.median(t[index] for t in times[PEER])
        print(
            f"train/epoch ({kind} time): ours={ours:.2f}s peer={peer:.2f}s "
            f"ratio={ours / peer:.3f}"
        )
    if args.profile:
        shares = {
            name: matrix_product_share(
                name, hypers[name], info, dataset, args.batch_size, args.epochs
            )
            for name in (OURS, PEER)
        }
        for name, (products, total) in shares.items():
            print(f"matrix products ({name}): {products:.3f} of {total:.3f} s")
        bound = shares[OURS][0] / shares[PEER][1]
        print(f"ratio with everything but ours' matrix products free: {bound:.3f}")


if __name__ == "__main__":
    main()
