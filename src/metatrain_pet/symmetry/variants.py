"""One exported model exposing the raw energy and a symmetrized variant of it.

Langer, Pozdnyakov and Ceriotti, "Probing the effects of broken symmetries in machine
learning" (2024), observe that the non-equivariant part of the energy (raw minus
rotationally averaged) varies slowly along a trajectory, so the expensive average can
be evaluated every few steps with a multiple time-step (MTS) integrator while the cheap
raw model drives the inner steps. This module packs both into a single file using
metatomic's output variants: ``energy`` is the raw model and ``energy/<variant>``
(``energy/symmetrized`` by default) the symmetrized one. Simulation engines select
the variant by name (``energy_variant`` in i-PI's metatomic driver, ``variants`` in
the ASE calculator).
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import AtomisticModel, ModelOutput, System

from ..systems.capabilities import declared_capabilities


class OutputVariantModel(torch.nn.Module):
    """Dispatch requests for ``<output>/<variant>`` to the symmetrized module.

    :param raw: module answering every request except the variant
    :param symmetrized: module whose ``<output>`` answers ``<output>/<variant>``
    :param output: name of the symmetrized output, e.g. ``energy``
    :param variant: variant name
    """

    def __init__(
        self,
        raw: torch.nn.Module,
        symmetrized: torch.nn.Module,
        output: str,
        variant: str,
    ):
        super().__init__()
        self._raw = raw
        self._symmetrized = symmetrized
        self._output = output
        self._variant_output = output + "/" + variant

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        raw_requests: Dict[str, ModelOutput] = {}
        symmetrized_requests: Dict[str, ModelOutput] = {}
        for name, request in outputs.items():
            if name == self._variant_output:
                symmetrized_requests[self._output] = request
            else:
                raw_requests[name] = request

        results: Dict[str, TensorMap] = {}
        if len(raw_requests) != 0:
            results = self._raw(systems, raw_requests, selected_atoms)
        if len(symmetrized_requests) != 0:
            symmetrized = self._symmetrized(
                systems, symmetrized_requests, selected_atoms
            )
            results[self._variant_output] = symmetrized[self._output]
        return results


def validate_variant_name(variant: str) -> str:
    """Check that ``variant`` can follow ``<output>/`` in a metatomic output name."""
    if len(variant) == 0 or not all(
        character.isalnum() or character in "_-" for character in variant
    ):
        raise ValueError(
            f"invalid variant name {variant!r}: use letters, digits, '_' and '-' only"
        )
    return variant


def with_symmetrized_variant(
    raw: AtomisticModel,
    symmetrized: AtomisticModel,
    variant: str = "symmetrized",
    output: str = "energy",
) -> AtomisticModel:
    """Combine ``raw`` and ``symmetrized`` into one model with an output variant.

    The result declares every output of ``raw`` unchanged, plus
    ``<output>/<variant>`` computed by ``symmetrized``. When ``symmetrized`` wraps
    the module of ``raw`` (as :func:`~metatrain_pet.symmetry.grid.grid_average` and
    :func:`~metatrain_pet.symmetry.random_rotation.random_rotation_average` do), the
    weights are stored once.

    :param raw: the cheap model
    :param symmetrized: a symmetrized version of ``raw``
    :param variant: name of the variant
    :param output: output of ``symmetrized`` exposed as a variant
    """
    validate_variant_name(variant)
    raw_outputs = raw.capabilities().outputs
    symmetrized_outputs = symmetrized.capabilities().outputs
    if output not in raw_outputs or output not in symmetrized_outputs:
        raise ValueError(
            f"both models must declare the '{output}' output to build "
            f"'{output}/{variant}'"
        )
    variant_output = output + "/" + variant
    if variant_output in raw_outputs:
        raise ValueError(f"the raw model already declares '{variant_output}'")
    if raw.capabilities().length_unit != symmetrized.capabilities().length_unit:
        raise ValueError("the raw and symmetrized models use different length units")

    declared = symmetrized_outputs[output]
    outputs = {
        output: _described(raw_outputs[output], "raw (not symmetrized) model."),
        variant_output: _described(
            declared, "symmetrized model, " + declared.description
        ),
    }
    module = OutputVariantModel(raw.module, symmetrized.module, output, variant)
    return AtomisticModel(
        module.eval(), raw.metadata(), declared_capabilities(raw, outputs)
    )


def _described(output: ModelOutput, description: str) -> ModelOutput:
    """Copy of ``output`` with a new description."""
    return ModelOutput(
        unit=output.unit,
        sample_kind=output.sample_kind,
        explicit_gradients=output.explicit_gradients,
        description=description,
    )
