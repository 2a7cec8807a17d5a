"""PET on metatomic systems: turns ``System`` objects into plain tensors, runs the
pure-torch backbone, and wraps the per-atom predictions into ``TensorMap``.

This module has the forward signature of a metatomic model, so that the ECSE wrapper
(which knows nothing of PET) can symmetrize it. Composition baselines and scales are
not applied here but in :class:`metatrain_pet.pet.model.PET`.
"""

from typing import Dict, List, Optional

import metatensor.torch as mts
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from ..geometry.switching import cutoff_fc
from ..nn.edges import environment_slots, reversed_edges, sort_edges_by_center
from ..nn.environment_rotation import (
    random_rotation_matrices,
    rotate_edge_vectors,
    rotate_to_laboratory_frame,
)
from ..nn.pet import PETBackbone
from ..nn.receptive_field import atoms_needed_per_block
from ..nn.transformer import TransformerOptions


class TargetLayout(torch.nn.Module):
    """Metadata of one target: keys, and per block the components, properties and
    the number of values per atom."""

    components: List[List[Labels]]
    properties: List[Labels]
    shapes: List[List[int]]
    sizes: List[int]

    def __init__(self, layout: TensorMap):
        super().__init__()
        self.keys = layout.keys
        self.components = []
        self.properties = []
        self.shapes = []
        self.sizes = []
        for block in layout.blocks():
            shape = [len(c) for c in block.components] + [len(block.properties)]
            size = 1
            for dim in shape:
                size *= dim
            self.components.append(block.components)
            self.properties.append(block.properties)
            self.shapes.append(shape)
            self.sizes.append(size)

    def num_values(self) -> int:
        return sum(self.sizes)

    def to_tensor_map(self, values: torch.Tensor, samples: Labels) -> TensorMap:
        """Split per-atom values ``(n_atoms, num_values)`` into the blocks."""
        device = values.device
        blocks: List[TensorBlock] = []
        start = 0
        for components, properties, shape, size in zip(
            self.components, self.properties, self.shapes, self.sizes
        ):
            block_values = values[:, start : start + size].reshape([-1] + shape)
            blocks.append(
                TensorBlock(
                    values=block_values,
                    samples=samples,
                    components=[c.to(device) for c in components],
                    properties=properties.to(device),
                )
            )
            start += size
        return TensorMap(self.keys.to(device), blocks)


class PETNetwork(torch.nn.Module):
    """The neural part of PET with metatomic inputs and outputs.

    :param hypers: model hyper-parameters (see :class:`ModelHypers`)
    :param atomic_types: atomic numbers the model knows
    """

    rotate_environments: bool
    """In training mode, rotate every atomic environment by its own random rotation
    (App. F.10, see :mod:`metatrain_pet.nn.environment_rotation`); set by the
    trainer for ``augmentation: environment``."""
    rotation_inversion: bool
    """Combine the per-environment rotations with random inversions."""

    def __init__(self, hypers: Dict, atomic_types: List[int]):
        super().__init__()
        self.rotate_environments = False
        self.rotation_inversion = False
        self.atomic_types = sorted(atomic_types)
        self.cutoff = float(hypers["cutoff"])
        self.cutoff_width = float(hypers["cutoff_width"])
        if not 0.0 < self.cutoff_width <= self.cutoff:
            raise ValueError(
                f"cutoff_width must be in (0, cutoff], got {self.cutoff_width} "
                f"with cutoff {self.cutoff}"
            )
        self.use_only_lengths = bool(hypers["use_only_lengths"])
        self.encode_length = bool(hypers["encode_length"])
        if self.use_only_lengths:
            num_geometric_features = 1
        else:
            num_geometric_features = 4 if self.encode_length else 3

        species_to_index = torch.full((max(self.atomic_types) + 1,), -1)
        for index, atomic_type in enumerate(self.atomic_types):
            species_to_index[atomic_type] = index
        self.register_buffer("species_to_index", species_to_index, persistent=False)

        self.backbone = PETBackbone(
            num_species=len(self.atomic_types),
            num_geometric_features=num_geometric_features,
            d_pet=int(hypers["d_pet"]),
            num_heads=int(hypers["num_heads"]),
            d_feedforward=int(hypers["d_feedforward"]),
            num_attention_layers=int(hypers["num_attention_layers"]),
            num_gnn_layers=int(hypers["num_gnn_layers"]),
            transformer=TransformerOptions(
                pre_norm=hypers["transformer_type"] == "PreLN",
                normalization=hypers["normalization"],
                activation=hypers["activation"],
                temperature=float(hypers["attention_temperature"]),
            ),
            d_head=int(hypers["d_head"]),
            average_bonds=hypers["bond_aggregation"] == "average",
            species_as_first_message=bool(hypers["species_as_first_message"]),
            carry_central=bool(hypers["carry_central_token"]),
            last_block_readout=hypers["readout"] == "last_block",
        )
        self.layouts = torch.nn.ModuleDict()
        self.neighbor_list_options = NeighborListOptions(
            cutoff=self.cutoff, full_list=True, strict=True
        )

    def add_target(self, name: str, layout: TensorMap) -> None:
        target_layout = TargetLayout(layout)
        self.layouts[name] = target_layout
        self.backbone.add_target(name, target_layout.num_values())

    def remove_target(self, name: str) -> None:
        del self.layouts[name]
        self.backbone.remove_target(name)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_list_options]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        """Per-atom (or summed per-structure) predictions of the requested targets,
        plus the ``feature`` and ``mtt::aux::<target>_last_layer_features`` outputs.
        """
        device = systems[0].positions.device
        positions_list: List[torch.Tensor] = []
        types_list: List[torch.Tensor] = []
        cells_list: List[torch.Tensor] = []
        pairs_list: List[torch.Tensor] = []
        system_index_list: List[torch.Tensor] = []
        atom_index_list: List[torch.Tensor] = []
        offset = 0
        for system_index, system in enumerate(systems):
            n = len(system)
            neighbors = system.get_neighbor_list(self.neighbor_list_options)
            pairs = neighbors.samples.values
            shift = torch.tensor([offset, offset, 0, 0, 0], device=device)
            pairs_list.append(pairs + shift)
            positions_list.append(system.positions)
            types_list.append(system.types)
            cells_list.append(system.cell)
            system_index_list.append(
                torch.full((n,), system_index, dtype=torch.int32, device=device)
            )
            atom_index_list.append(torch.arange(n, dtype=torch.int32, device=device))
            offset += n

        positions = torch.cat(positions_list)
        types = torch.cat(types_list)
        cells = torch.stack(cells_list)
        pairs = torch.cat(pairs_list)
        structure_of_atom = torch.cat(system_index_list).to(torch.long)
        samples = Labels(
            ["system", "atom"],
            torch.stack(
                [torch.cat(system_index_list), torch.cat(atom_index_list)], dim=1
            ),
            assume_unique=True,
        )

        self._check_inputs(positions, types)
        center_species = self.species_to_index[types]

        order = sort_edges_by_center(pairs[:, 0])
        pairs = pairs[order]
        centers = pairs[:, 0].to(torch.long)
        neighbors = pairs[:, 1].to(torch.long)
        cell_shifts = pairs[:, 2:].to(torch.long)
        edge_vectors = (
            positions[neighbors]
            - positions[centers]
            + torch.einsum(
                "ea,eab->eb",
                cell_shifts.to(positions.dtype),
                cells[structure_of_atom[centers]],
            )
        )

        n_atoms = positions.shape[0]
        environment_rotations: Optional[torch.Tensor] = None
        if self.training and self.rotate_environments:
            environment_rotations = random_rotation_matrices(
                n_atoms, self.rotation_inversion, positions.dtype, device
            )
            edge_vectors = rotate_edge_vectors(
                edge_vectors, centers, environment_rotations
            )
        environments = environment_slots(centers, n_atoms)
        slots = environments["slots"]
        num_neighbors = environments["num_neighbors"]
        max_neighbors = int(num_neighbors.max().item()) if n_atoms > 0 else 0
        reverse = reversed_edges(centers, neighbors, cell_shifts)

        distances = torch.linalg.vector_norm(edge_vectors, dim=1)
        edge_cutoffs = cutoff_fc(
            distances,
            torch.tensor(self.cutoff, dtype=distances.dtype, device=device),
            torch.tensor(self.cutoff_width, dtype=distances.dtype, device=device),
        )
        token_weights = torch.zeros(
            (n_atoms, max_neighbors + 1), dtype=positions.dtype, device=device
        )
        token_weights[:, 0] = 1.0
        token_weights = token_weights.index_put((centers, slots + 1), edge_cutoffs)

        if self.use_only_lengths:
            geometry = distances.unsqueeze(1)
        elif self.encode_length:
            geometry = torch.cat([edge_vectors, distances.unsqueeze(1)], dim=1)
        else:
            geometry = edge_vectors

        needed_atoms: List[torch.Tensor] = []
        if selected_atoms is not None:
            selected = _selected_mask(selected_atoms, systems, n_atoms, device)
            if not bool(selected.all()):
                needed_atoms = atoms_needed_per_block(
                    selected, centers, neighbors, len(self.backbone.blocks)
                )

        targets: List[str] = []
        last_layer_targets: List[str] = []
        for name in self.layouts.keys():
            if name in outputs:
                targets.append(name)
            if last_layer_features_name(name) in outputs:
                last_layer_targets.append(name)

        predictions, last_layer_features, features = self.backbone(
            geometry,
            center_species,
            self.species_to_index[types[neighbors]],
            centers,
            slots,
            reverse,
            edge_cutoffs,
            token_weights,
            targets,
            last_layer_targets,
            "feature" in outputs,
            needed_atoms,
        )

        if environment_rotations is not None:
            for name, layout in self.layouts.items():
                if name in predictions:
                    predictions[name] = rotate_to_laboratory_frame(
                        predictions[name],
                        environment_rotations,
                        layout.components,
                        layout.shapes,
                        layout.sizes,
                    )

        per_atom: Dict[str, TensorMap] = {}
        for name, layout in self.layouts.items():
            if name in predictions:
                per_atom[name] = layout.to_tensor_map(predictions[name], samples)
        for name, values in last_layer_features.items():
            per_atom[last_layer_features_name(name)] = _features_tensor_map(
                values, samples
            )
        if features is not None:
            per_atom["feature"] = _features_tensor_map(features, samples)

        results: Dict[str, TensorMap] = {}
        for name, tensor_map in per_atom.items():
            if selected_atoms is not None:
                tensor_map = mts.slice(tensor_map, "samples", selected_atoms)
            if outputs[name].sample_kind == "system":
                tensor_map = _sum_over_atoms(tensor_map, len(systems))
            results[name] = tensor_map
        return results

    def _check_inputs(self, positions: torch.Tensor, types: torch.Tensor) -> None:
        if not bool(torch.all(torch.isfinite(positions))):
            raise ValueError("the positions contain NaN or infinite values")
        known = types < self.species_to_index.shape[0]
        known_types = torch.where(known, types, torch.zeros_like(types))
        known = known & (types >= 0) & (self.species_to_index[known_types] >= 0)
        if not bool(torch.all(known)):
            unknown: List[int] = torch.unique(types[~known]).tolist()
            raise ValueError(
                f"unknown atomic types {unknown}: this model only knows the atomic "
                f"types {self.atomic_types}"
            )


def last_layer_features_name(target: str) -> str:
    """Name of the output holding the last-layer features of ``target``."""
    return "mtt::aux::" + target.replace("mtt::", "") + "_last_layer_features"


def _selected_mask(
    selected_atoms: Labels, systems: List[System], n_atoms: int, device: torch.device
) -> torch.Tensor:
    """Boolean mask over the atoms of the batch of metatomic's ``selected_atoms``."""
    sizes = torch.tensor([len(system) for system in systems], device=device)
    offsets = torch.cumsum(sizes, 0) - sizes
    values = selected_atoms.values.to(device=device, dtype=torch.long)
    selected = torch.zeros(n_atoms, dtype=torch.bool, device=device)
    selected[offsets[values[:, 0]] + values[:, 1]] = True
    return selected


def _features_tensor_map(values: torch.Tensor, samples: Labels) -> TensorMap:
    properties = Labels(
        ["feature"], torch.arange(values.shape[1], device=values.device).unsqueeze(1)
    )
    block = TensorBlock(values, samples, [], properties)
    single = Labels(["_"], torch.zeros((1, 1), dtype=torch.int32, device=values.device))
    return TensorMap(single, [block])


def _sum_over_atoms(tensor_map: TensorMap, n_systems: int) -> TensorMap:
    """Sum per-atom values into per-structure ones (structures without any selected
    atom get zeros)."""
    blocks: List[TensorBlock] = []
    for block in tensor_map.blocks():
        values = block.values
        summed = torch.zeros(
            [n_systems] + list(values.shape[1:]),
            dtype=values.dtype,
            device=values.device,
        )
        summed = summed.index_add(
            0, block.samples.column("system").to(torch.long), values
        )
        structures = Labels(
            ["system"],
            torch.arange(n_systems, dtype=torch.int32, device=values.device).unsqueeze(
                1
            ),
            assume_unique=True,
        )
        blocks.append(
            TensorBlock(summed, structures, block.components, block.properties)
        )
    return TensorMap(tensor_map.keys, blocks)
