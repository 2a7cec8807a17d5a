"""A list of metatomic systems as flat tensors: every atom once, every edge of one
neighbour list once (sorted by central atom), with its vector r_ij."""

from typing import List, NamedTuple

import torch
from metatensor.torch import Labels
from metatomic.torch import NeighborListOptions, System

from ..geometry.edges import edge_vectors, sort_by_center
from ..geometry.segments import offsets_of


class SystemBatch(NamedTuple):
    """Atoms and edges of a list of systems, numbered across the whole list."""

    positions: torch.Tensor
    """``(n_atoms, 3)``"""
    types: torch.Tensor
    """``(n_atoms,)`` atomic numbers"""
    cells: torch.Tensor
    """``(n_systems, 3, 3)``"""
    structure_of_atom: torch.Tensor
    """``(n_atoms,)`` system of every atom"""
    atom_offsets: torch.Tensor
    """``(n_systems + 1,)``: system s holds the atoms ``offsets[s]:offsets[s+1]``"""
    centers: torch.Tensor
    """``(n_edges,)`` central atom of every edge, sorted"""
    neighbors: torch.Tensor
    """``(n_edges,)`` neighbour atom of every edge"""
    cell_shifts: torch.Tensor
    """``(n_edges, 3)`` integer cell shift of every edge"""
    vectors: torch.Tensor
    """``(n_edges, 3)`` r_j - r_i + S·cell, differentiable in positions and cells"""


def flatten_systems(systems: List[System], options: NeighborListOptions) -> SystemBatch:
    """Concatenate ``systems`` and their neighbour lists for ``options``."""
    device = systems[0].positions.device
    pairs_list: List[torch.Tensor] = []
    sizes: List[int] = []
    offset = 0
    for system in systems:
        pairs = system.get_neighbor_list(options).samples.values.to(torch.long)
        shift = torch.tensor([offset, offset, 0, 0, 0], device=device)
        pairs_list.append(pairs + shift)
        sizes.append(len(system))
        offset += len(system)
    pairs = torch.cat(pairs_list)
    pairs = pairs[sort_by_center(pairs[:, 0])]
    sizes_t = torch.tensor(sizes, device=device)
    structure_of_atom = torch.repeat_interleave(
        torch.arange(len(systems), device=device), sizes_t
    )
    positions = torch.cat([system.positions for system in systems])
    cells = torch.stack([system.cell for system in systems])
    centers = pairs[:, 0]
    neighbors = pairs[:, 1]
    cell_shifts = pairs[:, 2:]
    return SystemBatch(
        positions=positions,
        types=torch.cat([system.types for system in systems]),
        cells=cells,
        structure_of_atom=structure_of_atom,
        atom_offsets=offsets_of(sizes_t),
        centers=centers,
        neighbors=neighbors,
        cell_shifts=cell_shifts,
        vectors=edge_vectors(
            positions, cells, structure_of_atom, centers, neighbors, cell_shifts
        ),
    )


def longest_environment(system: System, options: NeighborListOptions) -> int:
    """Tokens of the longest atomic environment of ``system`` in the neighbour
    list of ``options``, central token included (1 without neighbours)."""
    pairs = system.get_neighbor_list(options).samples
    if len(pairs) == 0:
        return 1
    centers = pairs.column("first_atom").to(torch.long)
    return 1 + int(torch.bincount(centers).max())


def atom_samples(batch: SystemBatch, atoms: torch.Tensor) -> Labels:
    """``(system, atom)`` sample labels of some atoms of the batch (flat indices)."""
    structures = batch.structure_of_atom[atoms]
    local = atoms - batch.atom_offsets[structures]
    values = torch.stack([structures, local], dim=1).to(torch.int32)
    return Labels(["system", "atom"], values, assume_unique=True)


def selected_atom_indices(selected_atoms: Labels, batch: SystemBatch) -> torch.Tensor:
    """Flat indices, sorted, of metatomic's ``selected_atoms`` ``(system, atom)``."""
    values = selected_atoms.values.to(device=batch.types.device, dtype=torch.long)
    atoms = batch.atom_offsets[values[:, 0]] + values[:, 1]
    return torch.sort(atoms)[0]
