"""metatrain's ``mtt`` under ``torchrun``:

    torchrun --nproc-per-node 2 -m metatrain_pet.torchrun train options.yaml

metatrain decides which process writes the output folder, the log, the indices and
the final checkpoint and model from SLURM's variables only, so under ``torchrun``
every process would believe it is the main one and write them all. This entry point
states torchrun's rank and number of processes in those variables, then runs ``mtt``
unchanged; the trainer of ``experimental.pet_ecse`` joins the processes through
torchrun's own rendezvous (``MASTER_ADDR``/``MASTER_PORT``). Started outside of
``torchrun``, it is ``mtt``.
"""

import os
import sys

from .training.distributed import launched_by_torchrun


def describe_torchrun_as_slurm() -> None:
    """Set ``SLURM_JOB_ID``, ``SLURM_PROCID`` and ``SLURM_NTASKS`` from torchrun's
    run id, ``RANK`` and ``WORLD_SIZE`` (nothing when not under ``torchrun``)."""
    if not launched_by_torchrun():
        return
    os.environ["SLURM_JOB_ID"] = "torchrun-" + os.environ["TORCHELASTIC_RUN_ID"]
    os.environ["SLURM_PROCID"] = os.environ["RANK"]
    os.environ["SLURM_NTASKS"] = os.environ["WORLD_SIZE"]


def main() -> None:
    describe_torchrun_as_slurm()
    from metatrain.__main__ import main as mtt

    sys.argv[0] = "mtt"
    sys.exit(mtt())


if __name__ == "__main__":
    main()
