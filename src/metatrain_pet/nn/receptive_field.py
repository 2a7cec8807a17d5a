"""Which atoms each message-passing block must process when only some atoms'
predictions are wanted (metatomic's ``selected_atoms``).

Every block predicts from its own output tokens (the per-block heads of App. A,
summed), and the input messages of block k + 1 for the edges of atom i are the
block-k output tokens of the reversed edges, i.e. of the environments of i's
neighbours. Going backwards from the last block, the atoms a block needs are
therefore the selected atoms plus every neighbour of an atom the next block needs.
An atom outside these sets cannot change a selected atom's prediction, so skipping
it changes nothing but the cost: this is what makes a cut-out environment (the
``per_atom`` mode of ECSE, or the ghost atoms of a domain-decomposed engine) cost
about one environment rather than one per atom it contains.
"""

from typing import List, Optional, Tuple

import torch

from .environments import Environments
from .layerwise import FrameRows, frame_rows


def atoms_needed_per_block(
    selected: torch.Tensor,
    centers: torch.Tensor,
    neighbors: torch.Tensor,
    num_blocks: int,
) -> List[torch.Tensor]:
    """Indices (sorted) of the atoms whose environments each block must process.

    :param selected: boolean mask of the atoms whose predictions are wanted
    :param centers: central atom of every edge
    :param neighbors: neighbour atom of every edge
    :param num_blocks: number of message-passing blocks
    :return: one tensor of atom indices per block, first block first
    """
    needed = selected.clone()
    per_block: List[torch.Tensor] = [torch.nonzero(needed).flatten()]
    for _ in range(num_blocks - 1):
        needed = needed.index_fill(0, centers[needed[neighbors]], True)
        per_block.insert(0, torch.nonzero(needed).flatten())
    return per_block


def take_rows(values: torch.Tensor, rows: Optional[torch.Tensor]) -> torch.Tensor:
    """``values[rows]``, or ``values`` itself when ``rows`` is None (all rows)."""
    if rows is None:
        return values
    return values[rows]


class AtomSubset:
    """Some atoms and their edges, numbered compactly (edges stay sorted by
    centre). ``atoms=None`` stands for all atoms, with no renumbering at all.

    :param atoms: sorted indices of the atoms, or None for all of them
    :param centers: central atom of every edge (sorted)
    :param n_atoms: number of atoms in the batch
    """

    def __init__(
        self, atoms: Optional[torch.Tensor], centers: torch.Tensor, n_atoms: int
    ):
        edges: Optional[torch.Tensor] = None
        member: Optional[torch.Tensor] = None
        atom_position: Optional[torch.Tensor] = None
        edge_position: Optional[torch.Tensor] = None
        subset_centers = centers
        self.n_atoms = n_atoms
        if atoms is not None:
            self.n_atoms = atoms.shape[0]
            device = centers.device
            is_member = torch.zeros(n_atoms, dtype=torch.bool, device=device)
            is_member[atoms] = True
            positions = torch.cumsum(is_member.to(torch.long), 0) - 1
            member_edges = torch.nonzero(is_member[centers]).flatten()
            edge_rows = torch.full_like(centers, -1)
            edge_rows[member_edges] = torch.arange(member_edges.shape[0], device=device)
            subset_centers = positions[centers[member_edges]]
            edges = member_edges
            member = is_member
            atom_position = positions
            edge_position = edge_rows
        self.atoms = atoms
        self.member = member
        self.edges = edges
        self.centers = subset_centers
        self.atom_position = atom_position
        self.edge_position = edge_position

    def local_atoms(self, atoms: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Rows, in this subset's numbering, of some of its atoms (None: all
        atoms, which must then be this subset's too)."""
        position = self.atom_position
        if position is None or atoms is None:
            return atoms
        return position[atoms]

    def local_edges(self, edges: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """Rows, in this subset's numbering, of some of its edges (None: all)."""
        position = self.edge_position
        if position is None or edges is None:
            return edges
        return position[edges]

    def take_atoms(self, values: torch.Tensor) -> torch.Tensor:
        """Rows of per-atom ``values`` (over all atoms) for this subset's atoms."""
        return take_rows(values, self.atoms)

    def take_edges(self, values: torch.Tensor) -> torch.Tensor:
        """Rows of per-edge ``values`` (over all edges) for this subset's edges."""
        return take_rows(values, self.edges)

    def frame_rows(
        self,
        frames: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        environments: Environments,
    ) -> FrameRows:
        """The (atom, frame) rows of this subset's atoms, from the frames
        ``(atoms, rotations, weights)`` of all atoms (sorted by atom), over the
        subset's ``environments`` (see :meth:`restrict`)."""
        atoms, rotations, weights = frames
        member = self.member
        position = self.atom_position
        if member is not None and position is not None:
            kept = member[atoms]
            atoms, rotations, weights = (
                position[atoms[kept]],
                rotations[kept],
                weights[kept],
            )
        return frame_rows(atoms, rotations, weights, environments.centers, self.n_atoms)

    def restrict(self, environments: Environments) -> Environments:
        """The environments of this subset's atoms, numbered compactly (``reverse``
        keeps the numbering of all edges)."""
        return Environments(
            geometry=self.take_edges(environments.geometry),
            center_species=self.take_atoms(environments.center_species),
            neighbor_species=self.take_edges(environments.neighbor_species),
            center_features=self.take_atoms(environments.center_features),
            neighbor_features=self.take_edges(environments.neighbor_features),
            centers=self.centers,
            slots=self.take_edges(environments.slots),
            reverse=self.take_edges(environments.reverse),
            edge_cutoffs=self.take_edges(environments.edge_cutoffs),
            token_weights=self.take_atoms(environments.token_weights),
            cartesian=environments.cartesian,
        )
