"""How much the autograd graph of PET's blocks keeps per token for a forces
evaluation: the estimate that decides when lean forces switch on, so that the same
threshold means the same memory for a small, a default and a wide model.

Per token (an edge or central token of an environment of ``width`` tokens), the
backward pass needs the inputs of the linear layers, normalisations and
activations the token went through. Counted in floats:

- per block, the edge encoder and compression (Eq. 5) and the bond heads of the
  readout: 7 d_PET + 2 d_readout;
- per transformer layer: 3.5 d_PET (normalisations, projections, mixed heads),
  d_FF for a SiLU feed-forward network or 2.5 d_FF for SwiGLU, and the attention
  coefficients, one per head and token of the environment (``num_heads * width``).

The coefficients are those of a fit to the bytes autograd saves, measured for
seven shapes of model (default, small, wide, wider feed-forward, 16 heads, 3 x 3
layers, SwiGLU) on the 192-atom water box by ``benchmarks/graph_memory.py``:
measured over estimated 0.89-1.01 there, 1.02-1.14 on ethanol, 0.97-1.37 with
layer-wise ECSE, whose frames keep a graph of their own (docs/benchmarks.md).
"""

import weakref
from typing import Callable, Dict, List, Tuple

import torch

REFERENCE_WIDTH = 62
"""Longest environment (tokens) of liquid water at the default cutoff of 5 Å."""

REFERENCE_FLOATS = 7136
"""Floats per token of the default model at ``REFERENCE_WIDTH``
(:func:`token_floats` of the default hypers), ~28 KiB in float32: the unit in which
lean-forces thresholds count tokens, a float32 token of the default model in
liquid water."""


def token_floats(hypers: Dict) -> Tuple[int, int]:
    """Floats the graph of the blocks keeps per token for a forces evaluation, as
    ``(fixed, per_width)``: ``fixed + per_width * width`` for environments of
    ``width`` tokens."""
    d_pet = int(hypers["d_pet"])
    feedforward = 2.5 if hypers["activation"] == "SwiGLU" else 1.0
    layer = 3.5 * d_pet + feedforward * int(hypers["d_feedforward"])
    layers = int(hypers["num_attention_layers"])
    block = 7 * d_pet + 2 * int(hypers["d_readout"]) + layers * layer
    blocks = int(hypers["num_gnn_layers"])
    return round(blocks * block), blocks * layers * int(hypers["num_heads"])


def saved_bytes(
    forward: Callable[[], torch.Tensor], model: torch.nn.Module
) -> Tuple[torch.Tensor, int]:
    """The output of ``forward()`` and the bytes of the tensors its autograd graph
    keeps for the backward pass, the storage of ``model``'s parameters and buffers
    excepted (each storage counted once, whatever the number of views of it): what
    :func:`token_floats` estimates, measured independently of the allocator. Not
    TorchScript: a diagnostic for tests and benchmarks."""
    weights = [tensor.untyped_storage().data_ptr() for tensor in model.parameters()]
    weights += [tensor.untyped_storage().data_ptr() for tensor in model.buffers()]
    kept: List[weakref.ref] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        kept.append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = forward()
    storages = {}
    for reference in kept:
        tensor = reference()
        if tensor is not None:
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    for pointer in weights:
        storages.pop(pointer, None)
    return output, sum(storages.values())
