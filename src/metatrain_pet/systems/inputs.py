"""Extra inputs that metatomic systems carry beside positions and types
(``System.get_data``): per-atom scalars such as collinear magnetic moments, and
per-system scalars such as the total charge. Read into flat tensors for the model;
attached to the systems of training batches from the dataset's ``extra_data``."""

from typing import Callable, Dict, List, Tuple

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import System

SYSTEM_INPUTS = ["charge", "spin_multiplicity"]
"""The per-system inputs of system conditioning, named as metatomic names them."""


def atomic_input_values(systems: List[System], names: List[str]) -> torch.Tensor:
    """``(n_atoms, len(names))``: the per-atom input ``names[k]`` of every atom of
    ``systems`` (concatenated) in column k, for at least one name. A missing
    input, or one that is not one scalar per atom, is a ``ValueError`` naming
    it."""
    columns: List[torch.Tensor] = []
    for name in names:
        values: List[torch.Tensor] = []
        for index, system in enumerate(systems):
            block = _input_block(system, name, index)
            if block.values.numel() != len(system):
                raise ValueError(
                    f"input '{name}' of system {index} must be one scalar per "
                    f"atom ({len(system)} atoms), got {block.values.numel()} values"
                )
            values.append(block.values.reshape(-1))
        columns.append(torch.cat(values))
    return torch.stack(columns, dim=1)


def system_input_values(systems: List[System], name: str) -> torch.Tensor:
    """``(n_systems,)``: the per-system input ``name`` of every system, checked to
    be one integer each (charges and spin multiplicities)."""
    values: List[torch.Tensor] = []
    for index, system in enumerate(systems):
        value = _input_block(system, name, index).values.reshape(-1)
        if value.shape[0] != 1 or not bool(torch.all(value == torch.round(value))):
            raise ValueError(
                f"input '{name}' of system {index} must be one integer per system"
            )
        values.append(value)
    return torch.cat(values).to(torch.long)


def _input_block(system: System, name: str, index: int) -> TensorBlock:
    if name not in system.known_data():
        raise ValueError(
            f"this model needs the input '{name}', which system {index} does not "
            "carry: give it in the dataset's `extra_data`, or from the engine"
        )
    return system.get_data(name).block()


Batch = Tuple[List[System], Dict[str, TensorMap], Dict[str, TensorMap]]


def data_name(name: str) -> str:
    """The ``extra_data`` entry of a dataset that holds the input ``name``: the
    name without its namespace (``initial_magmoms`` for ``ase::initial_magmoms``),
    since dataset entries must be valid label names."""
    return name.split("::")[-1]


def attach_extra_data(names: List[str]) -> Callable[..., Batch]:
    """A ``CollateFn`` callable that moves the ``extra_data`` entries of the inputs
    ``names`` (see :func:`data_name`) of a batch onto its systems
    (``System.add_data``), one per-system or per-atom ``TensorMap`` each, where the
    model reads them as an engine would give them."""

    def attach(
        systems: List[System],
        targets: Dict[str, TensorMap],
        extra: Dict[str, TensorMap],
    ) -> Batch:
        for name in names:
            if data_name(name) not in extra:
                raise ValueError(
                    f"this model needs the input '{name}': declare "
                    f"'{data_name(name)}' in the `extra_data` section of the "
                    "training and validation sets"
                )
            block = extra[data_name(name)].block()
            per_atom = "atom" in block.samples.names
            start = 0
            for system in systems:
                count = len(system) if per_atom else 1
                values = block.values[start : start + count].reshape(count, -1)
                start += count
                if name not in system.known_data():  # datasets reuse systems
                    system.add_data(name, _data_map(values, per_atom, name))
            if start != block.values.shape[0]:
                raise ValueError(
                    f"extra data '{name}' has {block.values.shape[0]} rows for a "
                    f"batch that needs {start}"
                )
        return systems, targets, extra

    return attach


def _data_map(values: torch.Tensor, per_atom: bool, name: str) -> TensorMap:
    """One system's input as metatomic engines give it: samples ``system`` (and
    ``atom``), one property."""
    count = values.shape[0]
    device = values.device
    if per_atom:
        samples = Labels(
            ["system", "atom"],
            torch.stack(
                [
                    torch.zeros(count, dtype=torch.int32, device=device),
                    torch.arange(count, dtype=torch.int32, device=device),
                ],
                dim=1,
            ),
        )
    else:
        samples = Labels(
            ["system"], torch.zeros((1, 1), dtype=torch.int32, device=device)
        )
    properties = Labels.range(name.split("::")[-1], values.shape[1])
    block = TensorBlock(values, samples, [], properties.to(device))
    return TensorMap(Labels.single().to(device), [block])
