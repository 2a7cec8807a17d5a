"""``EnsembleModel``: several trained models as one exported model, as the paper's
PET-ens (Tables 1 and 3: five models averaged), with their spread as an uncertainty.

For members E_1 … E_M, the ensemble gives

    energy             = Ē = (1/M) Σ_m E_m        (forces and stress: -∂Ē, the mean
                                                   of the members' by linearity)
    energy_ensemble    = (E_1, …, E_M)            (one property per member)
    energy_uncertainty = sqrt((1/M) Σ_m (E_m - Ē)²)

under metatomic's standard output names, per structure or per atom as asked. ECSE
can wrap the result: it is an ordinary metatomic model.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelOutput,
    NeighborListOptions,
    System,
)

from ..files import AtomisticModel as AtomicallySaved
from ..systems.capabilities import copied_neighbor_lists, inner_module

ENERGY = "energy"
MEMBERS = "energy_ensemble"
SPREAD = "energy_uncertainty"
# (TorchScript cannot read these global strings: the scripted code spells them out)


class EnsembleModel(torch.nn.Module):
    """The mean, the members and the spread of the energies of ``members`` (the
    modules of exported models, called in their own units)."""

    options: List[NeighborListOptions]

    def __init__(self, members: List[AtomisticModel]):
        super().__init__()
        self.members = torch.nn.ModuleList([inner_module(m) for m in members])
        self.options = []
        for member in members:
            for options in copied_neighbor_lists(member):
                if not _has_list(self.options, options):
                    self.options.append(options)

    @torch.jit.export
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """Every list any member needs, once."""
        return self.options

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        energies: Dict[str, TensorBlock] = {}  # by sample kind: members run once
        for name in ["energy", "energy_ensemble", "energy_uncertainty"]:
            if name in outputs:
                kind = outputs[name].sample_kind
                if kind not in energies:
                    request = ModelOutput(sample_kind=kind)
                    energies[kind] = self._member_energies(
                        systems, request, selected_atoms
                    )
                results[name] = _statistic(name, energies[kind])
        return results

    def _member_energies(
        self,
        systems: List[System],
        request: ModelOutput,
        selected_atoms: Optional[Labels],
    ) -> TensorBlock:
        """The members' energies side by side: ``(samples, M)``, samples and
        components of the first member."""
        values: List[torch.Tensor] = []
        first: Optional[TensorBlock] = None
        for member in self.members:
            energy = member(systems, {"energy": request}, selected_atoms)["energy"]
            if first is None:
                first = energy.block()
            values.append(energy.block().values)
        assert first is not None
        # metatomic's energy_ensemble: one "energy" property per member, its index
        members = Labels(
            "energy",
            torch.arange(
                len(values), dtype=torch.int32, device=first.values.device
            ).view(-1, 1),
        )
        return TensorBlock(torch.cat(values, dim=-1), first.samples, [], members)


def _statistic(name: str, energies: TensorBlock) -> TensorMap:
    """``name``'s map from the members' energies ``(samples, M)``."""
    values = energies.values
    properties = Labels("energy", torch.zeros((1, 1), dtype=torch.int32))
    properties = properties.to(values.device)
    if name == "energy_ensemble":
        values_out = values
        properties = energies.properties
    elif name == "energy":
        values_out = values.mean(dim=-1, keepdim=True)
    else:
        mean = values.mean(dim=-1, keepdim=True)
        values_out = torch.sqrt(((values - mean) ** 2).mean(dim=-1, keepdim=True))
    block = TensorBlock(values_out, energies.samples, [], properties)
    keys = Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=values.device))
    return TensorMap(keys, [block])


def _has_list(lists: List[NeighborListOptions], options: NeighborListOptions) -> bool:
    for known in lists:
        if known.cutoff == options.cutoff and known.full_list == options.full_list:
            return True
    return False


def build_ensemble(members: List[AtomisticModel]) -> AtomisticModel:
    """One exported model from ``members`` (exported models with an ``energy``
    output in the same unit, the same length unit and dtype)."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two models")
    capabilities = [member.capabilities() for member in members]
    first = capabilities[0]
    for index, other in enumerate(capabilities):
        if ENERGY not in other.outputs:
            raise ValueError(f"model {index} has no 'energy' output")
        for field in ("length_unit", "dtype"):
            if getattr(other, field) != getattr(first, field):
                raise ValueError(
                    f"model {index} has {field} '{getattr(other, field)}', model 0 "
                    f"'{getattr(first, field)}': the members must agree"
                )
        if other.outputs[ENERGY].unit != first.outputs[ENERGY].unit:
            raise ValueError(
                f"model {index} gives energies in '{other.outputs[ENERGY].unit}', "
                f"model 0 in '{first.outputs[ENERGY].unit}'"
            )
    atomic_types = sorted(
        set.intersection(*(set(c.atomic_types) for c in capabilities))
    )
    devices = [d for d in first.supported_devices
               if all(d in c.supported_devices for c in capabilities)]  # fmt: skip
    unit = first.outputs[ENERGY].unit
    outputs = {
        ENERGY: ModelOutput(unit=unit, sample_kind="atom",
                            description=f"mean energy of {len(members)} models"),
        MEMBERS: ModelOutput(unit=unit, sample_kind="atom",
                             description="energy of every member"),
        SPREAD: ModelOutput(unit=unit, sample_kind="atom",
                            description="standard deviation of the members' energies"),
    }  # fmt: skip
    ensemble_capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=atomic_types,
        interaction_range=max(c.interaction_range for c in capabilities),
        length_unit=first.length_unit,
        supported_devices=devices,
        dtype=first.dtype,
    )
    return AtomicallySaved(
        EnsembleModel(members).eval(), members[0].metadata(), ensemble_capabilities
    )
