"""Data-parallel training: one process per device, each with its share of every
batch, gradients averaged by torch's ``DistributedDataParallel`` (DDP).

Processes are started by SLURM (``srun mtt train options.yaml``, as for metatrain's
``pet``) or by ``torchrun`` (``torchrun --nproc-per-node N -m metatrain_pet.torchrun
train options.yaml``, see :mod:`metatrain_pet.torchrun`). ``batch_size`` is per
process: a step sees ``N × batch_size`` structures, and the parameters after a step
are those of one process trained on that global batch (the loss being a mean over
structures, the average of the processes' gradients is the gradient of the global
mean when every process has the same number of structures and atoms). CPU processes
talk through ``gloo``, GPUs through ``nccl``.
"""

import os
from typing import Dict, List, NamedTuple, Optional

import torch
from metatrain.utils.distributed.distributed_data_parallel import (
    DistributedDataParallel,
)
from metatrain.utils.distributed.slurm import (
    DistributedEnvironment,
    resolve_distributed,
)
from torch.utils.data import DistributedSampler, Subset


class Processes(NamedTuple):
    """Where this process stands among the training processes."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Whether this process writes checkpoints."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether ``torchrun`` (torch elastic) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ


def requested(distributed: Optional[bool]) -> bool:
    """The ``distributed`` hyper resolved: when unset, on exactly when more than
    one process was started (by ``torchrun`` or by SLURM)."""
    if launched_by_torchrun():
        many = int(os.environ["WORLD_SIZE"]) > 1
        return many if distributed is None else distributed
    return resolve_distributed(distributed)


def start(distributed: Optional[bool], port: int, device: torch.device) -> Processes:
    """Join the other processes (``init_process_group``) when training is
    distributed; on GPUs, each process takes the device of its local rank."""
    if not requested(distributed):
        return Processes(0, 1, device)
    if not launched_by_torchrun():
        DistributedEnvironment(port)  # SLURM's variables -> torch's
    backend = "gloo"
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        backend = "nccl"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Processes(
        torch.distributed.get_rank(), torch.distributed.get_world_size(), device
    )


def stop(processes: Processes) -> None:
    """Leave the process group (the main process then saves and exports alone)."""
    if processes.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def train_samplers(datasets: List, processes: Processes) -> List:
    """Every process a different, equally long shuffled share of every training
    set (``set_epoch`` reshuffles); ``None`` (the loader shuffles) on one process."""
    if not processes.distributed:
        return [None] * len(datasets)
    return [
        DistributedSampler(
            dataset,
            num_replicas=processes.world_size,
            rank=processes.rank,
            shuffle=True,
            drop_last=True,
        )
        for dataset in datasets
    ]


def validation_share(datasets: List, processes: Processes) -> List:
    """Every ``world_size``-th structure of every validation set, from this
    process's rank: the shares cover each set exactly once (no padding), so the
    summed errors of all processes are those of the whole set."""
    if not processes.distributed:
        return datasets
    return [
        Subset(dataset, range(processes.rank, len(dataset), processes.world_size))
        for dataset in datasets
    ]


def wrap(model: torch.nn.Module, processes: Processes) -> torch.nn.Module:
    """``model`` behind DDP when distributed (which averages the gradients in the
    backward pass), ``model`` itself otherwise."""
    if not processes.distributed:
        return model
    device_ids = [processes.device] if processes.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def mean(values: Dict[str, float], processes: Processes) -> Dict[str, float]:
    """The mean of every value over the processes (in the same order on all)."""
    if not processes.distributed or len(values) == 0:
        return values
    names = sorted(values)
    tensor = torch.tensor([values[name] for name in names], dtype=torch.float64)
    tensor = tensor.to(processes.device)
    torch.distributed.all_reduce(tensor)
    tensor = tensor / processes.world_size
    return {name: float(value) for name, value in zip(names, tensor.tolist())}
