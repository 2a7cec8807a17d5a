"""A tiny local metatomic model for the ECSE tests.

Each atom's energy, vector (``mtt::dipole``) and rank-2 tensor
(``mtt::polarizability``) are sums over its neighbours of a smooth cutoff times a
small tanh network. With ``invariant=False`` the network reads the Cartesian
components of r_ij, so the model is deliberately NOT rotationally equivariant; with
``invariant=True`` it reads |r_ij| only and multiplies by r_ij (and r_ij r_ijᵀ), which
makes it an exactly equivariant model, used as the auxiliary model of Eq. 19.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)

ATOMIC_TYPES = [1, 6, 7, 8]
OUTPUT_SIZES = {"energy": 1, "mtt::dipole": 3, "mtt::polarizability": 9}


class ToyModel(torch.nn.Module):
    def __init__(
        self,
        cutoff: float,
        invariant: bool,
        seed: int = 0,
        width: int = 8,
        energy_offset: float = 0.0,
    ):
        super().__init__()
        self.energy_offset = energy_offset
        generator = torch.Generator().manual_seed(seed)
        n_types = len(ATOMIC_TYPES)
        n_inputs = (1 if invariant else 3) + 2 * n_types
        self.invariant = invariant
        self.cutoff = cutoff
        self.register_buffer(
            "type_index", torch.full((max(ATOMIC_TYPES) + 1,), -1, dtype=torch.long)
        )
        for index, atomic_type in enumerate(ATOMIC_TYPES):
            self.type_index[atomic_type] = index
        self.hidden = torch.nn.Linear(n_inputs, width, dtype=torch.float64)
        self.heads = torch.nn.Linear(width, 1 + 1 + 1, dtype=torch.float64)
        self.vector_head = torch.nn.Linear(width, 3, dtype=torch.float64)
        self.tensor_head = torch.nn.Linear(width, 9, dtype=torch.float64)
        for parameter in self.parameters():
            parameter.data = torch.randn(
                parameter.shape, generator=generator, dtype=torch.float64
            )
        self.options = NeighborListOptions(cutoff=cutoff, full_list=True, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.options]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        dtype = systems[0].positions.dtype
        device = systems[0].positions.device
        all_pairs: List[torch.Tensor] = []
        all_vectors: List[torch.Tensor] = []
        all_types: List[torch.Tensor] = []
        system_index: List[torch.Tensor] = []
        atom_index: List[torch.Tensor] = []
        offset = 0
        for index, system in enumerate(systems):
            neighbors = system.get_neighbor_list(self.options)
            all_pairs.append(neighbors.samples.values[:, :2] + offset)
            all_vectors.append(neighbors.values.squeeze(-1))
            all_types.append(system.types)
            n_atoms = len(system)
            system_index.append(torch.full((n_atoms,), index, device=device))
            atom_index.append(torch.arange(n_atoms, device=device))
            offset += n_atoms
        pairs = torch.cat(all_pairs)
        vectors = torch.cat(all_vectors)
        types = self.type_index[torch.cat(all_types)]

        distances = torch.linalg.norm(vectors, dim=-1)
        x = distances / self.cutoff
        switch = torch.where(x < 1.0, (1.0 - x**2) ** 3, torch.zeros_like(x))
        center_types = torch.nn.functional.one_hot(types[pairs[:, 0]], 4)
        neighbor_types = torch.nn.functional.one_hot(types[pairs[:, 1]], 4)
        if self.invariant:
            geometry = distances.unsqueeze(-1)
        else:
            geometry = vectors
        features = torch.cat(
            [geometry, center_types.to(dtype), neighbor_types.to(dtype)], dim=1
        )
        hidden = torch.tanh(self.hidden(features))
        per_atom_values: Dict[str, torch.Tensor] = {}
        for name in outputs:
            if name == "energy":
                edge_values = self.heads(hidden)[:, :1]
            elif name == "mtt::dipole":
                if self.invariant:
                    edge_values = self.vector_head(hidden)[:, :1] * vectors
                else:
                    edge_values = self.vector_head(hidden)
            elif name == "mtt::polarizability":
                if self.invariant:
                    outer = vectors.unsqueeze(-1) * vectors.unsqueeze(-2)
                    edge_values = self.tensor_head(hidden)[:, :1] * outer.reshape(-1, 9)
                else:
                    edge_values = self.tensor_head(hidden)
            else:
                raise ValueError("unknown output " + name)
            per_atom_values[name] = torch.zeros(
                (offset, edge_values.shape[1]), dtype=dtype, device=device
            ).index_add(0, pairs[:, 0], switch.unsqueeze(-1) * edge_values)
            if name == "energy":
                per_atom_values[name] = per_atom_values[name] + self.energy_offset

        samples = torch.stack([torch.cat(system_index), torch.cat(atom_index)], dim=1)
        keep = torch.ones(samples.shape[0], dtype=torch.bool, device=device)
        if selected_atoms is not None:
            chosen = selected_atoms.values.to(samples.dtype)
            keep = (samples.unsqueeze(1) == chosen.unsqueeze(0)).all(-1).any(-1)
        samples = samples[keep]

        results: Dict[str, TensorMap] = {}
        for name, output in outputs.items():
            values = per_atom_values[name][keep]
            labels = Labels(["system", "atom"], samples.to(torch.int32))
            if output.sample_kind == "system":
                values = torch.zeros(
                    (len(systems), values.shape[1]), dtype=dtype, device=device
                ).index_add(0, samples[:, 0], values)
                labels = Labels(
                    ["system"], torch.arange(len(systems), device=device).reshape(-1, 1)
                )
            components: List[Labels] = []
            if name == "mtt::dipole":
                values = values.reshape(-1, 3, 1)
                components = [Labels(["xyz"], torch.arange(3).reshape(-1, 1))]
            elif name == "mtt::polarizability":
                values = values.reshape(-1, 3, 3, 1)
                components = [
                    Labels(["xyz_1"], torch.arange(3).reshape(-1, 1)),
                    Labels(["xyz_2"], torch.arange(3).reshape(-1, 1)),
                ]
            results[name] = TensorMap(
                Labels(["_"], torch.zeros((1, 1), dtype=torch.int32)),
                [
                    TensorBlock(
                        values=values,
                        samples=labels,
                        components=components,
                        properties=Labels(
                            [name.split("::")[-1]],
                            torch.zeros((1, 1), dtype=torch.int32),
                        ),
                    )
                ],
            )
        return results


def export_toy_model(
    cutoff: float = 4.0,
    invariant: bool = False,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    energy_offset: float = 0.0,
):
    """The toy model as an ``AtomisticModel`` (lengths in Å, energy in eV);
    ``energy_offset`` is added to every atom's energy (a composition baseline)."""
    outputs = {
        "energy": ModelOutput(unit="eV", sample_kind="atom"),
        "mtt::dipole": ModelOutput(unit="", sample_kind="atom"),
        "mtt::polarizability": ModelOutput(unit="", sample_kind="atom"),
    }
    capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=ATOMIC_TYPES,
        interaction_range=cutoff,
        length_unit="angstrom",
        supported_devices=["cpu"],
        dtype="float64" if dtype == torch.float64 else "float32",
    )
    module = ToyModel(cutoff, invariant, seed, energy_offset=energy_offset)
    module = module.to(dtype).eval()
    return AtomisticModel(module, ModelMetadata(), capabilities)
