"""Systems seen in rotated frames, and outputs brought back to the laboratory
frame: the one way ECSE, the random-rotation average and the augmentations rotate
metatomic data (the maths is :mod:`metatrain_pet.geometry.rotations`)."""

from typing import List, Tuple

import torch
from metatensor.torch import TensorBlock
from metatomic.torch import NeighborListOptions, System

from ..geometry.edges import edge_vectors
from ..geometry.rotations import cartesian_rank, rotate_back


def neighbor_vectors(
    system: System, options: NeighborListOptions
) -> Tuple[TensorBlock, torch.Tensor]:
    """The neighbour list of ``system`` for ``options`` and its vectors r_ij,
    recomputed from positions, cell and cell shifts, so that gradients reach the
    positions and the cell whether or not the list was registered for autograd."""
    neighbors = system.get_neighbor_list(options)
    pairs = neighbors.samples.values.to(torch.long)
    n_atoms = system.positions.shape[0]
    vectors = edge_vectors(
        system.positions,
        system.cell.unsqueeze(0),
        torch.zeros(n_atoms, dtype=torch.long, device=pairs.device),
        pairs[:, 0],
        pairs[:, 1],
        pairs[:, 2:5],
    )
    return neighbors, vectors


def rotated_copies(
    system: System, rotations: torch.Tensor, options: List[NeighborListOptions]
) -> List[System]:
    """One copy of ``system`` per rotation ``R`` of ``rotations`` ``(F, 3, 3)``:
    positions, cell and the vectors of the neighbour lists ``options`` become
    ``R r`` (the pairs are kept, nothing is searched again). Custom data is copied
    unchanged."""
    positions = torch.einsum("fij,nj->fni", rotations, system.positions)
    cells = torch.einsum("fij,nj->fni", rotations, system.cell)
    lists: List[TensorBlock] = []
    vectors: List[torch.Tensor] = []
    for neighbor_options in options:
        neighbors, list_vectors = neighbor_vectors(system, neighbor_options)
        lists.append(neighbors)
        vectors.append(torch.einsum("fij,nj->fni", rotations, list_vectors))

    copies: List[System] = []
    for frame in range(rotations.shape[0]):
        copy = System(
            types=system.types,
            positions=positions[frame],
            cell=cells[frame],
            pbc=system.pbc,
        )
        for index, neighbor_options in enumerate(options):
            neighbors = lists[index]
            copy.add_neighbor_list(
                neighbor_options,
                TensorBlock(
                    values=vectors[index][frame].unsqueeze(-1),
                    samples=neighbors.samples,
                    components=neighbors.components,
                    properties=neighbors.properties,
                ),
            )
        for name in system.known_data():
            copy.add_data(name, system.get_data(name))
        copies.append(copy)
    return copies


def rotate_block_back(
    block: TensorBlock, rotations: torch.Tensor, output: str, who: str
) -> TensorBlock:
    """``block`` with every sample brought back from the frame ``rotations[k]``
    ``(n_samples, 3, 3)`` it was computed in: invariants unchanged, ``xyz``
    vectors and ``xyz_1, xyz_2`` tensors rotated back. Explicit gradients and other
    components raise a ``ValueError`` naming ``who`` and ``output``."""
    if len(block.gradients_list()) != 0:
        raise ValueError(
            who
            + " does not support the explicit gradients of output '"
            + output
            + "'; request them through autograd instead"
        )
    names: List[str] = []
    for component in block.components:
        names.append(component.names[0])
    rank = cartesian_rank(names, output, who)
    return TensorBlock(
        values=rotate_back(block.values, rotations, rank),
        samples=block.samples,
        components=block.components,
        properties=block.properties,
    )
