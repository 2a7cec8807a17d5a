"""Neighbour bookkeeping: flat edge lists, padded environments and reversed edges.

PET processes every atomic environment (the central atom and its neighbours) as one
sequence of tokens. Edges arrive as a flat list ``(center, neighbor, cell shift)``;
this module sorts them by centre, gives each edge a slot in its centre's padded
sequence, and finds for each edge i -> j the reversed edge j -> i (with the opposite
cell shift), through which messages travel between blocks.
"""

from typing import Dict

import torch


def sort_edges_by_center(centers: torch.Tensor) -> torch.Tensor:
    """Permutation that groups the edges by central atom (stable)."""
    return torch.sort(centers, stable=True)[1]


def environment_slots(centers: torch.Tensor, n_atoms: int) -> Dict[str, torch.Tensor]:
    """Slot of every edge inside its centre's padded sequence.

    :param centers: central atom of every edge, sorted in increasing order
    :param n_atoms: number of atoms in the batch
    :return: ``slots`` (position of each edge among its centre's neighbours, from 0)
        and ``num_neighbors`` (per atom)
    """
    num_neighbors = torch.bincount(centers, minlength=n_atoms)
    first_edge = torch.cumsum(num_neighbors, dim=0) - num_neighbors
    slots = torch.arange(centers.shape[0], device=centers.device) - first_edge[centers]
    return {"slots": slots, "num_neighbors": num_neighbors}


def reversed_edges(
    centers: torch.Tensor, neighbors: torch.Tensor, cell_shifts: torch.Tensor
) -> torch.Tensor:
    """Index of the reversed edge ``j -> i, -S`` for every edge ``i -> j, S``.

    :param centers: central atom of every edge
    :param neighbors: neighbour atom of every edge
    :param cell_shifts: integer cell shift of every edge, shape ``(n_edges, 3)``
    :return: for every edge, the index of its reverse in the same list
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


def pad_environments(
    edge_values: torch.Tensor,
    centers: torch.Tensor,
    slots: torch.Tensor,
    n_atoms: int,
    max_neighbors: int,
) -> torch.Tensor:
    """Scatter per-edge values into a ``(n_atoms, max_neighbors, ...)`` tensor, with
    zeros in the padding."""
    shape = [n_atoms, max_neighbors] + list(edge_values.shape[1:])
    padded = torch.zeros(shape, dtype=edge_values.dtype, device=edge_values.device)
    return padded.index_put((centers, slots), edge_values)
