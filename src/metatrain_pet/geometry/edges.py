"""Edges i -> j (with an integer cell shift S) and their per-centre bookkeeping:
edge vectors, sorting by centre, the slot of every edge in its centre's sequence,
and the reversed edge j -> i, -S through which PET's messages travel."""

from typing import Tuple

import torch

from .segments import rank_in_segment


def edge_vectors(
    positions: torch.Tensor,
    cells: torch.Tensor,
    structure_of_atom: torch.Tensor,
    centers: torch.Tensor,
    neighbors: torch.Tensor,
    cell_shifts: torch.Tensor,
) -> torch.Tensor:
    """r_ij = r_j - r_i + S·cell for every edge, a differentiable function of the
    positions ``(n_atoms, 3)`` and of the cells ``(n_structures, 3, 3)`` (rows are
    the cell vectors), so that forces and stress flow through it.

    :param structure_of_atom: structure of every atom, indexing ``cells``
    :param cell_shifts: integer cell shift of every edge, ``(n_edges, 3)``
    """
    shifts = cell_shifts.to(positions.dtype).unsqueeze(1)
    translations = torch.bmm(shifts, cells[structure_of_atom[centers]]).squeeze(1)
    return positions[neighbors] - positions[centers] + translations


def sort_by_center(centers: torch.Tensor) -> torch.Tensor:
    """Permutation (stable) that groups the edges by central atom."""
    return torch.sort(centers, stable=True)[1]


def environment_slots(
    centers: torch.Tensor, n_atoms: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Slot of every edge in its centre's padded sequence (edges sorted by centre),
    and the number of neighbours of every atom."""
    num_neighbors = torch.bincount(centers, minlength=n_atoms)
    return rank_in_segment(centers, n_atoms), num_neighbors


def reversed_edges(
    centers: torch.Tensor, neighbors: torch.Tensor, cell_shifts: torch.Tensor
) -> torch.Tensor:
    """Index of the reversed edge ``j -> i, -S`` of every edge ``i -> j, S``.

    :raises ValueError: if some edge has no reverse, i.e. the neighbour list is not
        a full (symmetric) list
    """
    n_edges = centers.shape[0]
    if n_edges == 0:
        return torch.zeros(0, dtype=torch.long, device=centers.device)
    n_atoms = int(torch.maximum(centers.max(), neighbors.max()).item()) + 1
    max_shift = int(cell_shifts.abs().max().item())
    keys = _edge_key(centers, neighbors, cell_shifts, n_atoms, max_shift)
    sorted_keys, order = torch.sort(keys)
    reverse_keys = _edge_key(neighbors, centers, -cell_shifts, n_atoms, max_shift)
    position = torch.searchsorted(sorted_keys, reverse_keys).clamp(max=n_edges - 1)
    if not bool(torch.all(sorted_keys[position] == reverse_keys)):
        raise ValueError(
            "the neighbor list is not symmetric: PET needs a full neighbor list in "
            "which every pair i -> j comes with j -> i"
        )
    return order[position]


def _edge_key(
    centers: torch.Tensor,
    neighbors: torch.Tensor,
    cell_shifts: torch.Tensor,
    n_atoms: int,
    max_shift: int,
) -> torch.Tensor:
    """A unique integer for every ``(center, neighbor, cell shift)`` triple."""
    base = 2 * max_shift + 1
    key = centers * n_atoms + neighbors
    for axis in range(3):
        key = key * base + (cell_shifts[:, axis] + max_shift)
    return key
