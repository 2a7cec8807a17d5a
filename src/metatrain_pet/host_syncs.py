"""Host synchronisations of an evaluation: the operators whose result the host must
read before it can go on (a scalar for ``int()`` or ``if``, a list, the size of an
output that depends on the data). On a GPU each one waits until every kernel
queued before it has run, so their number per step, not their cost on CPU, is what
matters; it must not grow with the number of atoms, of chunks of environments or
of lean-forces passes. They are counted on any device, CPU included, which is how
the tests check it without a GPU.

A diagnostic for tests and benchmarks (eager models: the ``tolist`` of a
TorchScript function does not go through the dispatcher and is not seen).
"""

import collections
from typing import Callable, Dict, Tuple, TypeVar

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

Result = TypeVar("Result")

SYNCHRONISING = frozenset(
    {
        "aten::_local_scalar_dense",  # .item(), int(t), float(t), bool(t)
        "aten::is_nonzero",
        "aten::equal",
        "aten::nonzero",
        "aten::argwhere",
        "aten::masked_select",
        "aten::masked_scatter",
        "aten::repeat_interleave",  # output size read from the repeats
        "aten::bincount",  # output size read from the largest value
        "aten::unique_dim",
        "aten::_unique2",
        "aten::unique_consecutive",
    }
)
"""ATen operators that read device data on the host (``repeat_interleave`` only
without ``output_size``, counted always)."""


class _SynchronisingOperators(TorchDispatchMode):
    """Counts :data:`SYNCHRONISING` operators, and indexing by a boolean mask
    (whose output size is the mask's number of true values)."""

    def __init__(self, counts: collections.Counter):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in SYNCHRONISING or (name == "aten::index" and _boolean_mask(args)):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


class _ListConversions(TorchFunctionMode):
    """Counts ``Tensor.tolist``, a copy to the host that the dispatcher never sees
    on CPU."""

    def __init__(self, counts: collections.Counter):
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.tolist:
            self.counts["Tensor.tolist"] += 1
        return func(*args, **(kwargs or {}))


def _boolean_mask(args: Tuple) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(
        isinstance(index, torch.Tensor) and index.dtype == torch.bool
        for index in indices
    )


def count_host_syncs(
    function: Callable[..., Result], *args
) -> Tuple[Result, Dict[str, int]]:
    """The result of ``function(*args)`` and the number of host synchronisations
    it made, by operator."""
    counts: collections.Counter = collections.Counter()
    with _ListConversions(counts), _SynchronisingOperators(counts):
        result = function(*args)
    return result, dict(counts)
