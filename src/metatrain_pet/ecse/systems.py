"""Structures seen in a local frame: the inputs the wrapped model is evaluated on.

``global`` mode rotates whole systems (positions, cell, and the distance vectors of
every neighbour list; the pairs themselves are unchanged, so no list is rebuilt).
``per_atom`` mode cuts each environment out of its system (the centre at the origin
and its neighbours within the wrapped model's cutoff, non-periodic) and rotates it.

All distance vectors are recomputed from positions, cell and cell shifts, so that
gradients with respect to positions and cell (forces and stress) flow through them
whether or not the caller registered the neighbour lists for autograd.
"""

from typing import List, Tuple

import torch
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import NeighborListOptions, System

from .frames import ordered_neighbor_pairs


def neighbor_vectors(
    system: System, options: NeighborListOptions
) -> Tuple[TensorBlock, torch.Tensor]:
    """The neighbour list of ``system`` for ``options`` and its distance vectors,
    r_j - r_i + S·cell, as a differentiable function of positions and cell."""
    neighbors = system.get_neighbor_list(options)
    samples = neighbors.samples.values
    shifts = samples[:, 2:5].to(system.positions.dtype)
    vectors = (
        system.positions[samples[:, 1]]
        - system.positions[samples[:, 0]]
        + shifts @ system.cell
    )
    return neighbors, vectors


def rotate(rotations: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Coordinates of ``vectors`` (N, 3) in each of the frames (F, 3, 3): (F, N, 3)."""
    return torch.einsum("fij,nj->fni", rotations, vectors)


def rotated_systems(
    system: System, rotations: torch.Tensor, options: List[NeighborListOptions]
) -> List[System]:
    """One copy of ``system`` expressed in each frame of ``rotations``, with the
    neighbour lists ``options`` carried over."""
    positions = rotate(rotations, system.positions)
    cells = rotate(rotations, system.cell)
    lists: List[TensorBlock] = []
    rotated_vectors: List[torch.Tensor] = []
    for neighbor_options in options:
        neighbors, vectors = neighbor_vectors(system, neighbor_options)
        lists.append(neighbors)
        rotated_vectors.append(rotate(rotations, vectors))

    copies: List[System] = []
    for frame in range(rotations.shape[0]):
        copy = System(
            types=system.types,
            positions=positions[frame],
            cell=cells[frame],
            pbc=system.pbc,
        )
        for list_index, neighbor_options in enumerate(options):
            neighbors = lists[list_index]
            copy.add_neighbor_list(
                neighbor_options,
                TensorBlock(
                    values=rotated_vectors[list_index][frame].unsqueeze(-1),
                    samples=neighbors.samples,
                    components=neighbors.components,
                    properties=neighbors.properties,
                ),
            )
        for name in system.known_data():
            copy.add_data(name, system.get_data(name))
        copies.append(copy)
    return copies


def _segment_starts(segments: torch.Tensor, n_segments: int) -> List[int]:
    counts = torch.bincount(segments, minlength=n_segments)
    starts: List[int] = (torch.cumsum(counts, 0) - counts).tolist()
    starts.append(int(segments.shape[0]))
    return starts


class Environments:
    """Atomic environments cut out of their systems, ready to be rotated.

    Environment ``c`` holds its centre (local atom 0, at the origin) followed by the
    neighbours of the centre closer than ``radius``. For each neighbour list of the
    wrapped model, the pairs of atoms of the environment closer than that list's
    cutoff are found by brute force once; rotating an environment then only rotates
    vectors.
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
        self.n_environments = n_centers
        self.owners = owners[order]
        self.types = torch.cat([center_types, edge_types[inside]])[order]
        origin = torch.zeros(
            (n_centers, 3), dtype=edge_vectors.dtype, device=edge_vectors.device
        )
        self.positions = torch.cat([origin, edge_vectors[inside]])[order]
        self.atom_starts = _segment_starts(self.owners, n_centers)

        first, second = ordered_neighbor_pairs(self.owners, n_centers)
        local = (
            torch.arange(self.owners.shape[0], device=self.owners.device)
            - (
                torch.tensor(self.atom_starts[:-1], device=self.owners.device)[
                    self.owners
                ]
            )
        )
        pair_vectors = self.positions[second] - self.positions[first]
        distances = torch.linalg.norm(pair_vectors, dim=-1)

        self.options = options
        self.pair_owners: List[torch.Tensor] = []
        self.pair_vectors: List[torch.Tensor] = []
        self.pair_starts: List[List[int]] = []
        self.pair_samples: List[torch.Tensor] = []
        for neighbor_options in options:
            kept = distances < neighbor_options.cutoff
            if not neighbor_options.full_list:
                kept = kept & (local[first] < local[second])
            pair_owners = self.owners[first[kept]]
            self.pair_owners.append(pair_owners)
            self.pair_vectors.append(pair_vectors[kept])
            self.pair_starts.append(_segment_starts(pair_owners, n_centers))
            zeros = torch.zeros_like(pair_owners)
            self.pair_samples.append(
                torch.stack(
                    [local[first[kept]], local[second[kept]], zeros, zeros, zeros], 1
                ).to(torch.int32)
            )

    def rotated(
        self, frame_environments: torch.Tensor, rotations: torch.Tensor
    ) -> List[System]:
        """One non-periodic system per frame: the environment of that frame, in it."""
        dtype = self.positions.dtype
        device = self.positions.device
        atom_rows = rows_of_segments(frame_environments, self.atom_starts)
        positions = torch.einsum(
            "nij,nj->ni", rotations[atom_rows[0]], self.positions[atom_rows[1]]
        )
        pair_rotated: List[torch.Tensor] = []
        for list_index in range(len(self.options)):
            rows = rows_of_segments(frame_environments, self.pair_starts[list_index])
            pair_rotated.append(
                torch.einsum(
                    "nij,nj->ni",
                    rotations[rows[0]],
                    self.pair_vectors[list_index][rows[1]],
                )
            )

        environments: List[int] = frame_environments.tolist()
        cell = torch.zeros((3, 3), dtype=dtype, device=device)
        pbc = torch.zeros(3, dtype=torch.bool, device=device)
        components = [Labels(["xyz"], torch.arange(3, device=device).reshape(-1, 1))]
        properties = Labels(
            ["distance"], torch.zeros((1, 1), dtype=torch.int32, device=device)
        )
        sample_names = [
            "first_atom",
            "second_atom",
            "cell_shift_a",
            "cell_shift_b",
            "cell_shift_c",
        ]
        systems: List[System] = []
        atom_offset = 0
        pair_offsets = [0 for _ in self.options]
        for environment in environments:
            n_atoms = self.atom_starts[environment + 1] - self.atom_starts[environment]
            start = self.atom_starts[environment]
            system = System(
                types=self.types[start : start + n_atoms],
                positions=positions[atom_offset : atom_offset + n_atoms],
                cell=cell,
                pbc=pbc,
            )
            atom_offset += n_atoms
            for list_index, neighbor_options in enumerate(self.options):
                starts = self.pair_starts[list_index]
                pair_start = starts[environment]
                n_pairs = starts[environment + 1] - pair_start
                offset = pair_offsets[list_index]
                system.add_neighbor_list(
                    neighbor_options,
                    TensorBlock(
                        values=pair_rotated[list_index][
                            offset : offset + n_pairs
                        ].unsqueeze(-1),
                        samples=Labels(
                            sample_names,
                            self.pair_samples[list_index][
                                pair_start : pair_start + n_pairs
                            ],
                        ),
                        components=components,
                        properties=properties,
                    ),
                )
                pair_offsets[list_index] = offset + n_pairs
            systems.append(system)
        return systems


def rows_of_segments(
    segment_of_frame: torch.Tensor, starts: List[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """For frames each using one segment of rows (``starts[s]:starts[s+1]``), the
    frame and the row of every entry of the concatenation of their segments."""
    starts_t = torch.tensor(starts, device=segment_of_frame.device)
    begin = starts_t[segment_of_frame]
    lengths = starts_t[segment_of_frame + 1] - begin
    frame = torch.repeat_interleave(
        torch.arange(segment_of_frame.shape[0], device=segment_of_frame.device), lengths
    )
    offsets = torch.cumsum(lengths, 0) - lengths
    rank = torch.arange(frame.shape[0], device=frame.device) - offsets[frame]
    return frame, begin[frame] + rank
