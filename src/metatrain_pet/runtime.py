"""Run-time settings of a built, exported or TorchScript-compiled PET: they change
the cost of an evaluation, not its result, and are not saved in checkpoints."""

import operator
from typing import Optional

import torch

from .pet.network import LEAN_LAST_BLOCK_ABOVE


def set_max_tokens(model: torch.nn.Module, max_tokens: int) -> int:
    """Set the tokens per chunk of environments (:mod:`metatrain_pet.nn.chunks`) of
    every block of ``model`` (0: the device's default); returns the number of
    blocks set."""
    max_tokens = _count("max_tokens", max_tokens, smallest=0)
    return _set_on_modules(model, "MessagePassingBlock", "max_tokens", max_tokens)


def set_lean_forces(
    model: torch.nn.Module, above_tokens: int, last_block_above: Optional[int] = None
) -> int:
    """Use lean forces in every PET network of ``model`` for batches whose
    evaluation would otherwise keep the graph of more than ``above_tokens`` tokens
    (0: always, -1: never; by default above ``LEAN_FORCES_ABOVE`` of
    :mod:`metatrain_pet.pet.network`): the graph of every block, or of every block
    but the last where lean forces through the last block apply, and lean forces
    through the last block only for batches of more than ``last_block_above``
    tokens that are not lean (0: always, -1: never; None: the default,
    ``LEAN_LAST_BLOCK_ABOVE``, or never when ``above_tokens`` is -1, so that
    ``set_lean_forces(model, -1)`` keeps the full graph at every size); tokens
    count in float32 tokens of the default model: a token counts as its estimated
    graph memory (``PETNetwork.graph_tokens``; a float64 token twice, a token of a
    wider model more). Returns the number of networks set.

    With lean forces, an energy evaluated for its forces or stress keeps no graph
    of the message-passing blocks: they are evaluated again, chunk by chunk, to
    propagate the gradients (``PETNetwork._lean_energies``). Memory falls from the
    graph of every block to that of one chunk, for one more forward pass of every
    block but the last (on CPU, one thread: ×1.1-1.2 the full graph's time below
    ~3000 water atoms, less above). Through the last block only
    (``PETNetwork._lean_last_block_energies``), the graph of the other blocks is
    kept and no pass is added: about 0.6 of the graph's memory for its time (less
    from ~1500 water atoms on), and ×0.88-1.01 the time of lean forces from ~3500
    to ~5200 water atoms; by default the default model switches from it to lean
    forces at ~6300 water atoms (~5.6 GB of graph kept). In both, first derivatives
    (forces, stress) are exact; second derivatives (Hessians by double backward)
    are not available through them. Training never uses them."""
    above_tokens = _count("above_tokens", above_tokens, smallest=-1)
    if last_block_above is None:
        last_block_above = -1 if above_tokens == -1 else LEAN_LAST_BLOCK_ABOVE
    last_block_above = _count("last_block_above", last_block_above, smallest=-1)
    _set_on_modules(
        model, "PETNetwork", "lean_last_block_above", last_block_above, existing=True
    )
    return _set_on_modules(model, "PETNetwork", "lean_forces_above", above_tokens)


def _count(name: str, value, smallest: int) -> int:
    """``value`` as an int (a numpy integer too), or a clear error unless it is
    an integer from ``smallest`` to the largest int64 (what the attribute of a
    TorchScript module holds)."""
    try:
        integer = operator.index(value)
    except TypeError:
        integer = None
    if isinstance(value, bool) or integer is None or not smallest <= integer < 2**63:
        raise ValueError(
            f"{name} must be an integer from {smallest} to 2^63 - 1, got {value!r}"
        )
    return integer


def _set_on_modules(
    model: torch.nn.Module, class_name: str, name: str, value, existing: bool = False
) -> int:
    """Set attribute ``name`` of every submodule of class ``class_name`` (eager or
    TorchScript); returns how many there were. With ``existing``, only where the
    attribute exists (models exported before it was added)."""
    count = 0
    for module in model.modules():
        if getattr(module, "original_name", type(module).__name__) == class_name:
            if existing and not hasattr(module, name):
                continue
            setattr(module, name, value)
            count += 1
    return count
