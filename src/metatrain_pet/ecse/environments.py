"""Atomic environments cut out of their structures, for ECSE's ``per_atom`` mode:
each environment (its centre at the origin, its neighbours within the wrapped
model's cutoff, non-periodic) is seen in that environment's own frames.

Pairs inside every environment are found once, by brute force; rotating an
environment into a frame then only rotates vectors. Vectors come from the
positions, so forces and stress flow through them.
"""

from typing import List

import torch
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import NeighborListOptions, System

from ..geometry.segments import rows_of_segments, segment_offsets
from .frames import ordered_neighbor_pairs

_PAIR_NAMES = [
    "first_atom",
    "second_atom",
    "cell_shift_a",
    "cell_shift_b",
    "cell_shift_c",
]


class CutOutEnvironments:
    """Environment c holds its centre (local atom 0, at the origin) followed by the
    neighbours of the centre closer than ``radius``; for every neighbour list of
    the wrapped model, the pairs of its atoms closer than that list's cutoff.

    :param center_types: atomic type of every centre
    :param edge_centers: environment of every edge (from the ECSE neighbour list)
    :param edge_types: atomic type of every edge's neighbour
    :param edge_vectors: r_ij of every edge
    """

    def __init__(
        self,
        center_types: torch.Tensor,
        edge_centers: torch.Tensor,
        edge_types: torch.Tensor,
        edge_vectors: torch.Tensor,
        radius: float,
        options: List[NeighborListOptions],
    ):
        n_centers = center_types.shape[0]
        inside = torch.linalg.norm(edge_vectors, dim=-1) < radius
        owners = torch.cat(
            [torch.arange(n_centers, device=center_types.device), edge_centers[inside]]
        )
        order = torch.argsort(owners, stable=True)
        self.owners = owners[order]
        self.types = torch.cat([center_types, edge_types[inside]])[order]
        origin = torch.zeros(
            (n_centers, 3), dtype=edge_vectors.dtype, device=edge_vectors.device
        )
        self.positions = torch.cat([origin, edge_vectors[inside]])[order]
        self.atom_offsets = segment_offsets(self.owners, n_centers)
        self.options = options
        self.pair_offsets: List[torch.Tensor] = []
        self.pair_vectors: List[torch.Tensor] = []
        self.pair_samples: List[torch.Tensor] = []
        for neighbor_options in options:
            self._find_pairs(neighbor_options, n_centers)

    def _find_pairs(self, options: NeighborListOptions, n_centers: int) -> None:
        """Pairs of atoms of every environment closer than the list's cutoff (one
        direction only for a half list), numbered locally."""
        first, second = ordered_neighbor_pairs(self.owners, n_centers)
        local = torch.arange(self.owners.shape[0], device=self.owners.device)
        local = local - self.atom_offsets[self.owners]
        vectors = self.positions[second] - self.positions[first]
        kept = torch.linalg.norm(vectors, dim=-1) < options.cutoff
        if not options.full_list:
            kept = kept & (local[first] < local[second])
        first, second = first[kept], second[kept]
        self.pair_offsets.append(segment_offsets(self.owners[first], n_centers))
        self.pair_vectors.append(vectors[kept])
        zeros = torch.zeros_like(first)
        samples = [local[first], local[second], zeros, zeros, zeros]
        self.pair_samples.append(torch.stack(samples, 1).to(torch.int32))

    def rotated(self, pools: torch.Tensor, rotations: torch.Tensor) -> List[System]:
        """One non-periodic system per frame: the environment ``pools[f]`` seen in
        the frame ``rotations[f]``."""
        frame, row = rows_of_segments(pools, self.atom_offsets)
        positions = torch.einsum("nij,nj->ni", rotations[frame], self.positions[row])
        atom_starts: List[int] = segment_offsets(frame, pools.shape[0]).tolist()
        lists: List[List[TensorBlock]] = []
        for index in range(len(self.options)):
            lists.append(self._rotated_pairs(index, pools, rotations))
        systems: List[System] = []
        cell = torch.zeros((3, 3), dtype=positions.dtype, device=positions.device)
        pbc = torch.zeros(3, dtype=torch.bool, device=positions.device)
        for f in range(pools.shape[0]):
            start, stop = atom_starts[f], atom_starts[f + 1]
            system = System(
                types=self.types[row[start:stop]],
                positions=positions[start:stop],
                cell=cell,
                pbc=pbc,
            )
            for index, neighbor_options in enumerate(self.options):
                system.add_neighbor_list(neighbor_options, lists[index][f])
            systems.append(system)
        return systems

    def _rotated_pairs(
        self, index: int, pools: torch.Tensor, rotations: torch.Tensor
    ) -> List[TensorBlock]:
        """The neighbour list ``index`` of every frame's environment, rotated."""
        frame, row = rows_of_segments(pools, self.pair_offsets[index])
        vectors = torch.einsum(
            "nij,nj->ni", rotations[frame], self.pair_vectors[index][row]
        )
        starts: List[int] = segment_offsets(frame, pools.shape[0]).tolist()
        device = vectors.device
        components = [Labels(["xyz"], torch.arange(3, device=device).reshape(-1, 1))]
        properties = Labels(
            ["distance"], torch.zeros((1, 1), dtype=torch.int32, device=device)
        )
        names = ["first_atom", "second_atom", "cell_shift_a", "cell_shift_b"]
        names.append("cell_shift_c")
        blocks: List[TensorBlock] = []
        for f in range(pools.shape[0]):
            start, stop = starts[f], starts[f + 1]
            blocks.append(
                TensorBlock(
                    values=vectors[start:stop].unsqueeze(-1),
                    samples=Labels(names, self.pair_samples[index][row[start:stop]]),
                    components=components,
                    properties=properties,
                )
            )
        return blocks
