"""Wall time of training epochs, ours vs metatrain's ``pet`` with matched hypers,
in one process and interleaved, on an energy + forces dataset.

    python benchmarks/train_epoch.py --data ../shared/data/rmd17/ethanol_train_01.xyz
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


def train_seconds(name, model_hypers, info, dataset, batch_size, epochs):
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
    start = time.perf_counter()
    trainer.train(model, torch.float32, [torch.device("cpu")], [dataset], [], "/tmp")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--n-structures", type=int, default=0, help="0: all")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.WARNING)

    dataset, info = load(args.data, args.n_structures)
    hypers = matched_hypers()
    times = {OURS: [], PEER: []}
    for _ in range(args.repeats):
        for name in (OURS, PEER):
            times[name].append(
                train_seconds(
                    name, hypers[name], info, dataset, args.batch_size, args.epochs
                )
            )
    ours, peer = statistics.median(times[OURS]), statistics.median(times[PEER])
    print(f"train/epoch: ours={ours:.2f}s peer={peer:.2f}s ratio={ours / peer:.3f}")


if __name__ == "__main__":
    main()
