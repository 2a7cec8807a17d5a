"""Rebuild the capabilities of an exported model for a wrapper around it."""

from typing import Dict, Optional

from metatomic.torch import AtomisticModel, ModelCapabilities, ModelOutput


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
