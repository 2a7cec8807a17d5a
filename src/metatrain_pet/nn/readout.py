"""PET's prediction heads (App. A): every block's central and edge tokens are read
out by an atomic head H_c and a bond head H_n per target, and the blocks'
contributions are summed."""

from typing import Dict, List, NamedTuple, Optional, Tuple

import torch

from ..geometry.segments import segment_sum
from .layerwise import FrameRows
from .receptive_field import AtomSubset, take_rows


class ReadoutHead(torch.nn.Module):
    """A prediction head: a two-layer SiLU network giving the last-layer features,
    then a linear map to the target's values (H_c or H_n of App. A)."""

    def __init__(self, d_pet: int, d_readout: int, num_outputs: int, bias: bool):
        super().__init__()
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(d_pet, d_readout),
            torch.nn.SiLU(),
            torch.nn.Linear(d_readout, d_readout),
            torch.nn.SiLU(),
        )
        self.last_layer = torch.nn.Linear(d_readout, num_outputs, bias=bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden(tokens)


class TargetReadout(torch.nn.Module):
    """Atomic head H_c and bond head H_n of one block for one target.

    The atomic contribution is ``H_c(x_i)``; the bond contributions
    ``H_n(x_ji) f_c(r_ij)`` are summed over the neighbours (Eq. 7) or averaged with
    the cutoff weights (Eq. 6). The aggregation happens on the last-layer features,
    before the final linear map of H_n (which has no bias), so that the prediction
    is exactly linear in the last-layer features.
    """

    def __init__(self, d_pet: int, d_readout: int, num_outputs: int, average: bool):
        super().__init__()
        self.average = average
        self.central_head = ReadoutHead(d_pet, d_readout, num_outputs, bias=True)
        self.bond_head = ReadoutHead(d_pet, d_readout, num_outputs, bias=False)

    def last_layer_features(
        self,
        central_tokens: torch.Tensor,
        edge_tokens: torch.Tensor,
        edge_cutoffs: torch.Tensor,
        centers: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Atomic and aggregated bond last-layer features, ``(n_atoms, d_readout)``
        each (Eq. 6 or 7 applied before the last linear map)."""
        n_atoms = central_tokens.shape[0]
        central = self.central_head(central_tokens)
        weighted = self.bond_head(edge_tokens) * edge_cutoffs.unsqueeze(1)
        bonds = segment_sum(weighted, centers, n_atoms)
        if self.average:
            total = segment_sum(edge_cutoffs, centers, n_atoms)
            safe_total = torch.where(total > 0.0, total, torch.ones_like(total))
            bonds = bonds / safe_total.unsqueeze(1)
        return central, bonds

    def predict(self, central: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
        return self.central_head.last_layer(central) + self.bond_head.last_layer(bonds)


class ReadoutView(NamedTuple):
    """What the heads read: per block, the rows of its central and edge tokens
    (None: all), and the cutoff weight and the read row of every read edge."""

    central_rows: List[Optional[torch.Tensor]]
    edge_rows: List[Optional[torch.Tensor]]
    cutoffs: torch.Tensor
    centers: torch.Tensor


def subset_view(subsets: List[AtomSubset], edge_cutoffs: torch.Tensor) -> ReadoutView:
    """Read the atoms of the last subset (the atoms whose predictions are asked
    for) from every block's tokens."""
    output = subsets[-1]
    central_rows: List[Optional[torch.Tensor]] = []
    edge_rows: List[Optional[torch.Tensor]] = []
    for subset in subsets:
        central_rows.append(subset.local_atoms(output.atoms))
        edge_rows.append(subset.local_edges(output.edges))
    return ReadoutView(
        central_rows=central_rows,
        edge_rows=edge_rows,
        cutoffs=output.take_edges(edge_cutoffs),
        centers=output.centers,
    )


def frame_view(
    subsets: List[AtomSubset], rows: List[FrameRows], edge_cutoffs: torch.Tensor
) -> ReadoutView:
    """Read, from every block's row tokens (layer-wise ECSE), the (atom, frame)
    rows of the atoms whose predictions are asked for. These are all the rows of
    the last block, and the same rows, in the same order, in the earlier ones."""
    output = subsets[-1]
    central_rows: List[Optional[torch.Tensor]] = []
    edge_rows: List[Optional[torch.Tensor]] = []
    for k in range(len(subsets)):
        wanted = subsets[k].local_atoms(output.atoms)
        if k + 1 == len(subsets) or wanted is None:
            central_rows.append(None)
            edge_rows.append(None)
        else:
            is_wanted = torch.zeros(
                subsets[k].n_atoms, dtype=torch.bool, device=wanted.device
            )
            is_wanted[wanted] = True
            row_wanted = is_wanted[rows[k].atoms]
            central_rows.append(torch.nonzero(row_wanted).flatten())
            edge_rows.append(torch.nonzero(row_wanted[rows[k].edge_rows]).flatten())
    last = rows[-1]
    return ReadoutView(
        central_rows=central_rows,
        edge_rows=edge_rows,
        cutoffs=output.take_edges(edge_cutoffs)[last.edges],
        centers=last.edge_rows,
    )


class Readout(torch.nn.Module):
    """The heads of every reading block (all blocks, or the last one only) for
    every target, and the ``feature`` output.

    The rows read are given by a :class:`ReadoutView`: the atoms whose
    predictions are asked for, or with layer-wise ECSE their (atom, frame) rows.
    """

    def __init__(
        self,
        d_pet: int,
        d_readout: int,
        num_blocks: int,
        last_block_only: bool,
        average_bonds: bool,
    ):
        super().__init__()
        self.d_pet = d_pet
        self.d_readout = d_readout
        self.average_bonds = average_bonds
        num_readouts = 1 if last_block_only else num_blocks
        self.first_block = num_blocks - num_readouts
        self.blocks = torch.nn.ModuleList(
            [torch.nn.ModuleDict() for _ in range(num_readouts)]
        )

    def add_target(self, name: str, num_outputs: int) -> None:
        for heads in self.blocks:
            heads[name] = TargetReadout(
                self.d_pet, self.d_readout, num_outputs, self.average_bonds
            )

    def remove_target(self, name: str) -> None:
        for heads in self.blocks:
            del heads[name]

    def last_layer_size(self) -> int:
        """Width of a target's last-layer features: the atomic and the bond
        features of every reading block."""
        return 2 * self.d_readout * len(self.blocks)

    def last_layer_weights(self, name: str) -> List[str]:
        """Names, relative to this module, of the weights of the last linear maps
        of target ``name``, in the order of its last-layer features: a target's
        prediction is these weights (concatenated along their inputs) times the
        features, plus the atomic heads' biases."""
        names: List[str] = []
        for index in range(len(self.blocks)):
            for head in ("central_head", "bond_head"):
                names.append(f"blocks.{index}.{name}.{head}.last_layer.weight")
        return names

    def forward(
        self,
        central_tokens: List[torch.Tensor],
        edge_tokens: List[torch.Tensor],
        view: ReadoutView,
        targets: List[str],
        last_layer_targets: List[str],
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Predictions ``(n_read, n_values)`` of ``targets`` and last-layer
        features of ``last_layer_targets`` (atomic and bond features of every
        reading block, concatenated), for the rows of ``view``. Blocks whose
        tokens are not given (beyond the length of ``central_tokens``) are not
        read."""
        predictions: Dict[str, torch.Tensor] = {}
        last_layer: Dict[str, List[torch.Tensor]] = {}
        given = range(self.first_block, len(central_tokens))
        centrals = [take_rows(central_tokens[k], view.central_rows[k]) for k in given]
        edges = [take_rows(edge_tokens[k], view.edge_rows[k]) for k in given]
        for index, heads in enumerate(self.blocks):
            for name, head in heads.items():
                wanted = index < len(centrals) and name in targets
                wanted_features = index < len(centrals) and name in last_layer_targets
                if wanted or wanted_features:
                    central, bonds = head.last_layer_features(
                        centrals[index], edges[index], view.cutoffs, view.centers
                    )
                    if wanted:
                        contribution = head.predict(central, bonds)
                        if name in predictions:
                            contribution = predictions[name] + contribution
                        predictions[name] = contribution
                    if wanted_features:
                        last_layer[name] = last_layer.get(name, []) + [central, bonds]
        features: Dict[str, torch.Tensor] = {}
        for name, parts in last_layer.items():
            features[name] = torch.cat(parts, dim=1)
        return predictions, features

    def read_last_block(
        self,
        name: str,
        central_tokens: torch.Tensor,
        edge_tokens: torch.Tensor,
        edge_cutoffs: torch.Tensor,
        centers: torch.Tensor,
    ) -> torch.Tensor:
        """The last block's contribution to the predictions of ``name`` for the
        atoms of ``central_tokens``, from their tokens and those of their edges
        (``centers``: the row of every edge's centre)."""
        for target, head in self.blocks[-1].items():
            if target == name:
                central, bonds = head.last_layer_features(
                    central_tokens, edge_tokens, edge_cutoffs, centers
                )
                return head.predict(central, bonds)
        raise ValueError(f"there is no target '{name}'")


def pet_features(
    central_tokens: torch.Tensor,
    edge_tokens: torch.Tensor,
    edge_cutoffs: torch.Tensor,
    centers: torch.Tensor,
) -> torch.Tensor:
    """The ``feature`` output: the last block's central token and the
    cutoff-weighted sum of its edge tokens, ``(n_atoms, 2 d_pet)``."""
    weighted = edge_tokens * edge_cutoffs.unsqueeze(1)
    summed = segment_sum(weighted, centers, central_tokens.shape[0])
    return torch.cat([central_tokens, summed], dim=1)
