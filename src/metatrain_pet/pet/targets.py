"""Targets of PET at the metatensor boundary: how the flat per-atom values of a
target are split into the blocks of its ``TensorMap``, and the per-atom tensors
PET returns besides the targets."""

from typing import List

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap

from ..geometry.rotations import cartesian_rank, rotate_back
from ..geometry.segments import segment_sum


class TargetLayout(torch.nn.Module):
    """Metadata of one target: keys, and per block the components, properties and
    the shape and number of values of one atom's block."""

    components: List[List[Labels]]
    component_names: List[List[str]]
    properties: List[Labels]
    shapes: List[List[int]]
    sizes: List[int]

    def __init__(self, name: str, layout: TensorMap):
        super().__init__()
        self.name = name
        self.keys = layout.keys
        self.components = []
        self.component_names = []
        self.properties = []
        self.shapes = []
        self.sizes = []
        for block in layout.blocks():
            shape = [len(c) for c in block.components] + [len(block.properties)]
            self.components.append(block.components)
            self.component_names.append([c.names[0] for c in block.components])
            self.properties.append(block.properties)
            self.shapes.append(shape)
            self.sizes.append(int(torch.tensor(shape).prod()))

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

    def rotate_back(
        self, values: torch.Tensor, rotations: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom values ``(n_atoms, num_values)`` computed in the frames
        ``rotations`` ``(n_atoms, 3, 3)``, brought back to the laboratory frame
        block by block (App. F.10 augmentation)."""
        pieces: List[torch.Tensor] = []
        start = 0
        for names, shape, size in zip(self.component_names, self.shapes, self.sizes):
            rank = cartesian_rank(names, self.name, "PET's per-environment frames")
            piece = values[:, start : start + size].reshape([-1] + shape)
            pieces.append(rotate_back(piece, rotations, rank).reshape(-1, size))
            start += size
        return torch.cat(pieces, dim=1)


def last_layer_features_name(target: str) -> str:
    """Name of the output holding the last-layer features of ``target``."""
    return "mtt::aux::" + target.replace("mtt::", "") + "_last_layer_features"


def features_tensor_map(values: torch.Tensor, samples: Labels) -> TensorMap:
    """Per-atom features ``(n_atoms, n_features)`` as a single-block map."""
    properties = Labels(
        ["feature"], torch.arange(values.shape[1], device=values.device).unsqueeze(1)
    )
    block = TensorBlock(values, samples, [], properties)
    single = Labels(["_"], torch.zeros((1, 1), dtype=torch.int32, device=values.device))
    return TensorMap(single, [block])


def sum_over_atoms(tensor_map: TensorMap, n_systems: int) -> TensorMap:
    """Per-atom values summed per structure (structures without any of the atoms
    get zeros)."""
    device = tensor_map.block(0).values.device
    structures = Labels(
        ["system"],
        torch.arange(n_systems, dtype=torch.int32, device=device).unsqueeze(1),
        assume_unique=True,
    )
    blocks: List[TensorBlock] = []
    for block in tensor_map.blocks():
        system_of_sample = block.samples.column("system").to(torch.long)
        summed = segment_sum(block.values, system_of_sample, n_systems)
        blocks.append(
            TensorBlock(summed, structures, block.components, block.properties)
        )
    return TensorMap(tensor_map.keys, blocks)
