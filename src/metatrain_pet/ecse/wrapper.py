"""``ECSEModel``: exact rotational symmetrization of any metatomic model (Sec. 5 and
App. F), and :func:`symmetrize` for exported models.

The protocol itself is :class:`~.symmetrizer.Symmetrizer`; this module evaluates
the wrapped model (and the auxiliary one) between its two steps.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelOutput,
    NeighborListOptions,
    System,
)

from ..files import AtomisticModel as AtomicallySaved
from ..systems.capabilities import (
    copied_neighbor_lists,
    declared_capabilities,
    inner_module,
)
from .hypers import resolve_ecse_hypers
from .symmetrizer import NUM_FRAMES_OUTPUT, Symmetrizer

__all__ = ["NUM_FRAMES_OUTPUT", "ECSEModel", "symmetrize"]


class ECSEModel(torch.nn.Module):
    """Equivariant Coordinate System Ensemble around a metatomic model.

    ``model`` is any module with the metatomic signature ``forward(systems, outputs,
    selected_atoms)`` and a ``requested_neighbor_lists()`` method (an
    ``AtomisticModel`` is unwrapped to its module). The parameters are the fields of
    :class:`~metatrain_pet.ecse.hypers.ECSEHypers`, given as a ``hypers`` dict and/or
    as keywords (keywords win); ``preset="tight"`` starts from the tight settings.

    Outputs with no components are averaged as invariants, ``xyz`` components as
    Cartesian vectors, ``xyz_1``/``xyz_2`` as rank-2 Cartesian tensors. In addition,
    :data:`NUM_FRAMES_OUTPUT` gives the number of frames used per structure.

    Structures (``global``) or environments (``per_atom``) with no neighbour within
    R_out (isolated atoms) are evaluated in the 24 rotations of the cube: the input of
    an isolated atom is the same in every frame, and this average makes its scalar,
    vector and rank-2 outputs exact. With ``fallback="aux"`` the auxiliary model
    gives them instead (Eq. 19 with no frames).
    """

    aux_options: List[NeighborListOptions]

    def __init__(
        self,
        model: torch.nn.Module,
        hypers: Optional[Dict] = None,
        aux_model: Optional[torch.nn.Module] = None,
        preset: str = "loose",
        **params,
    ):
        super().__init__()
        config = resolve_ecse_hypers(hypers, preset, **params)
        if config["mode"] == "layerwise":
            raise ValueError(
                "ECSE mode 'layerwise' symmetrizes the message-passing blocks of "
                "PET (experimental.pet_ecse) and needs its checkpoint: run "
                "`metatrain-pet ecse MODEL.ckpt --mode layerwise -o OUT.pt`; any "
                "exported model can use mode 'global' or 'per_atom'"
            )
        if aux_model is not None:
            if config["fallback"] == "none":
                config["fallback"] = "aux"
            if config["fallback"] != "aux":
                raise ValueError(
                    f"aux_model was given, but fallback is '{config['fallback']}'; "
                    "set fallback='aux' to use it"
                )
        elif config["fallback"] == "aux":
            raise ValueError("fallback='aux' needs an auxiliary model: pass aux_model=")

        self.model = inner_module(model)
        self.aux_model = None if aux_model is None else inner_module(aux_model)
        self.symmetrizer = Symmetrizer(config, copied_neighbor_lists(model))
        self.aux_options = []
        if aux_model is not None:
            self.aux_options = copied_neighbor_lists(aux_model)

    def interaction_range(self) -> float:
        """Interaction range of the symmetrized model (see
        :meth:`~.symmetrizer.Symmetrizer.interaction_range`)."""
        return self.symmetrizer.interaction_range()

    @torch.jit.export
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """ECSE's own full list (cutoff R_out + T(β) + Δ_Rc, or the wrapped model's
        cutoff in ``per_atom`` mode if larger) and the wrapped models' lists."""
        symmetrizer = self.symmetrizer
        return [symmetrizer.ecse_options] + symmetrizer.inner_options + self.aux_options

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        plan = self.symmetrizer.plan(systems, outputs, selected_atoms)
        evaluated: Dict[str, TensorMap] = {}
        if plan.evaluate:
            evaluated = self.model(plan.systems, plan.requests, plan.selected_atoms)
        aux: Dict[str, TensorMap] = {}
        aux_model = self.aux_model
        if aux_model is not None and len(plan.requests) > 0:
            aux = aux_model(systems, plan.requests, selected_atoms)
        return self.symmetrizer.average(plan, evaluated, aux, outputs)


def symmetrize(
    atomistic_model: AtomisticModel,
    hypers: Optional[Dict] = None,
    aux_model: Optional[AtomisticModel] = None,
    preset: str = "loose",
    **params,
) -> AtomisticModel:
    """Wrap an exported model with ECSE and return a new exported model.

    Metadata, units, atomic types, devices and outputs are kept; the output
    :data:`NUM_FRAMES_OUTPUT` is added; the interaction range becomes that of
    :meth:`ECSEModel.interaction_range`. The parameters are those of
    :class:`ECSEModel`.
    """
    if not isinstance(atomistic_model, AtomisticModel):
        raise TypeError(
            "symmetrize expects an AtomisticModel, e.g. from load_atomistic_model"
        )
    capabilities = atomistic_model.capabilities()
    if NUM_FRAMES_OUTPUT in capabilities.outputs:
        raise ValueError(
            "this model is already ECSE-symmetrized (it declares "
            f"{NUM_FRAMES_OUTPUT}): wrapping it again gives the same predictions "
            "at the cost of one more ensemble of frames per frame"
        )
    if aux_model is not None:
        _check_aux_compatible(capabilities, aux_model.capabilities())

    wrapper = ECSEModel(
        atomistic_model, hypers, aux_model=aux_model, preset=preset, **params
    )
    wrapper.symmetrizer.warn_if_truncated(capabilities.interaction_range)
    frames = ModelOutput(
        unit="",
        sample_kind="system",
        description="number of ECSE frames the wrapped model was evaluated in",
    )
    declared = declared_capabilities(atomistic_model, {NUM_FRAMES_OUTPUT: frames})
    new_capabilities = ModelCapabilities(
        outputs=declared.outputs,
        atomic_types=declared.atomic_types,
        interaction_range=wrapper.interaction_range(),
        length_unit=declared.length_unit,
        supported_devices=declared.supported_devices,
        dtype=declared.dtype,
    )
    return AtomicallySaved(
        wrapper.eval(), atomistic_model.metadata(), capabilities=new_capabilities
    )


def _check_aux_compatible(main: ModelCapabilities, aux: ModelCapabilities) -> None:
    if aux.length_unit != main.length_unit:
        raise ValueError(
            f"the auxiliary model uses length unit '{aux.length_unit}', the model "
            f"'{main.length_unit}'"
        )
    if aux.dtype != main.dtype:
        raise ValueError(
            f"the auxiliary model uses dtype {aux.dtype}, the model {main.dtype}"
        )
    missing = sorted(set(main.atomic_types) - set(aux.atomic_types))
    if missing:
        raise ValueError(f"the auxiliary model does not support atomic types {missing}")
