"""Speed-up of data-parallel training: the wall time of a training epoch with one
process and with ``--processes`` processes started by ``torchrun`` (one thread
each), on the same data and the same global batch (``--batch-size`` structures,
split between the processes), for the default model.

    python benchmarks/distributed.py --processes 2 --epochs 4

Prints ``distributed/epoch_s: one=… many=… speedup=…``. The time of an epoch is
read from the timestamps of the log lines of the epochs after the first (which
includes start-up costs).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "rmd17"

OPTIONS = """
seed: 0
architecture:
  name: experimental.pet_ecse
  training:
    num_epochs: {epochs}
    batch_size: {batch_size}
    checkpoint_interval: 1000
training_set:
  systems:
    read_from: {train}
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
      forces:
        key: forces
validation_set: 0.1
test_set: 0.0
"""

EPOCH_LINE = re.compile(r"^\[([0-9-]+ [0-9:]+)\]\[INFO\] - Epoch:")


def _epoch_seconds(log: Path) -> float:
    """Mean wall time between consecutive epoch lines, the first excluded."""
    stamps = [
        datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
        for match in map(EPOCH_LINE.match, log.read_text().splitlines())
        if match is not None
    ]
    if len(stamps) < 3:
        raise RuntimeError(f"fewer than 3 epochs logged in {log}")
    return (stamps[-1] - stamps[0]).total_seconds() / (len(stamps) - 1)


def _train(processes: int, args, work: Path) -> float:
    folder = work / f"processes{processes}"
    folder.mkdir()
    options = OPTIONS.format(
        epochs=args.epochs,
        batch_size=args.batch_size // processes,
        train=args.train,
    )
    (folder / "options.yaml").write_text(options)
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    mtt = ["-m", "metatrain_pet.torchrun", "train", "options.yaml"]
    command = [sys.executable, *mtt]
    if processes > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run",
            "--nproc-per-node", str(processes), "--master-port", str(args.port), *mtt,
        ]  # fmt: skip
    subprocess.run(
        command, cwd=folder, env=environment, check=True, capture_output=True
    )
    return _epoch_seconds(next(folder.glob("outputs/*/*/train.log")))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16, help="global batch")
    parser.add_argument("--train", default=str(DATA / "ethanol_train_01.xyz"))
    parser.add_argument("--port", type=int, default=29517)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        one = _train(1, args, Path(work))
        many = _train(args.processes, args, Path(work))
    print(
        f"distributed/epoch_s: one={one:.1f} many={many:.1f} "
        f"speedup={one / many:.2f} ({args.processes} processes, 1 thread each, "
        f"global batch {args.batch_size})"
    )


if __name__ == "__main__":
    main()
