"""What a wrapper around an exported model needs from it: its module, its
neighbour lists and its capabilities."""

from typing import Dict, List, Optional

import torch
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelOutput,
    NeighborListOptions,
)


def inner_module(model: torch.nn.Module) -> torch.nn.Module:
    """The module an ``AtomisticModel`` wraps (any other module as it is): a
    wrapper calls it in the model's own units, with the systems it was given."""
    if isinstance(model, AtomisticModel):
        return model.module
    return model


def copied_neighbor_lists(model: torch.nn.Module) -> List[NeighborListOptions]:
    """Copies of the neighbour lists ``model`` needs. An exported model knows them
    at the top level (its scripted module may not expose them any more)."""
    return [
        NeighborListOptions(options.cutoff, options.full_list, options.strict)
        for options in model.requested_neighbor_lists()
    ]


def declared_capabilities(
    model: AtomisticModel, extra_outputs: Optional[Dict[str, ModelOutput]] = None
) -> ModelCapabilities:
    """Capabilities of ``model``, listing only the outputs it declared itself.

    ``model.capabilities().outputs`` also lists the deprecated aliases metatomic adds
    for old output names (``features`` for ``feature``); re-declaring those in a
    wrapper would trigger deprecation warnings, so only the names the model was
    exported with are kept. ``extra_outputs`` are appended.
    """
    capabilities = model.capabilities()
    outputs: Dict[str, ModelOutput] = {}
    for name in model._model_capabilities_outputs_names:
        outputs[name] = capabilities.outputs[name]
    if extra_outputs is not None:
        outputs.update(extra_outputs)
    return ModelCapabilities(
        outputs=outputs,
        atomic_types=capabilities.atomic_types,
        interaction_range=capabilities.interaction_range,
        length_unit=capabilities.length_unit,
        supported_devices=capabilities.supported_devices,
        dtype=capabilities.dtype,
    )
