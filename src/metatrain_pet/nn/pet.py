"""The Point Edge Transformer: the stack of message-passing blocks of Fig. 2a and
their per-block prediction heads."""

from typing import Dict, List, Optional, Tuple

import torch

from .block import MessagePassingBlock, ReadoutHead
from .receptive_field import AtomSubset, take_rows
from .transformer import TransformerOptions


class TargetReadout(torch.nn.Module):
    """Atomic head H_c and bond head H_n of one block for one target (App. A).

    The atomic contribution is ``H_c(x_i)``; the bond contributions
    ``H_n(x_ji) f_c(r_ij)`` are summed over the neighbours (Eq. 7) or averaged with
    the cutoff weights (Eq. 6). The aggregation happens on the last-layer features,
    before the final linear map of H_n (which has no bias), so that the prediction
    is exactly linear in the last-layer features.
    """

    def __init__(self, d_pet: int, d_head: int, num_outputs: int, average: bool):
        super().__init__()
        self.average = average
        self.central_head = ReadoutHead(d_pet, d_head, num_outputs, bias=True)
        self.bond_head = ReadoutHead(d_pet, d_head, num_outputs, bias=False)

    def last_layer_features(
        self,
        central_tokens: torch.Tensor,
        edge_tokens: torch.Tensor,
        edge_cutoffs: torch.Tensor,
        centers: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        central = self.central_head(central_tokens)
        weighted = self.bond_head(edge_tokens) * edge_cutoffs.unsqueeze(1)
        bonds = torch.zeros_like(central).index_add(0, centers, weighted)
        if self.average:
            total = torch.zeros_like(central[:, 0]).index_add(0, centers, edge_cutoffs)
            safe_total = torch.where(total > 0.0, total, torch.ones_like(total))
            bonds = bonds / safe_total.unsqueeze(1)
        return central, bonds

    def predict(self, central: torch.Tensor, bonds: torch.Tensor) -> torch.Tensor:
        return self.central_head.last_layer(central) + self.bond_head.last_layer(bonds)


class PETBackbone(torch.nn.Module):
    """``num_gnn_layers`` message-passing blocks. The output tokens of the edges of
    block k become, through the reversed edges, the messages of block k + 1,
    updated residually; every block predicts, and the predictions are summed
    (App. A). Two departures from the paper are available: ``carry_central`` adds
    the output central token of block k to the species embedding that starts block
    k + 1 (a residual atom state, as in metatrain's ``pet``), and
    ``last_block_readout`` keeps the heads of the last block only.

    :param num_species: number of atomic species
    :param num_geometric_features: 3 (r_ij), 4 (r_ij, |r_ij|) or 1 (|r_ij|)
    """

    def __init__(
        self,
        num_species: int,
        num_geometric_features: int,
        d_pet: int,
        num_heads: int,
        d_feedforward: int,
        num_attention_layers: int,
        num_gnn_layers: int,
        transformer: TransformerOptions,
        d_head: int,
        average_bonds: bool,
        species_as_first_message: bool,
        carry_central: bool = False,
        last_block_readout: bool = False,
    ):
        super().__init__()
        self.carry_central = carry_central
        self.d_pet = d_pet
        self.d_head = d_head
        self.average_bonds = average_bonds
        self.species_as_first_message = species_as_first_message
        self.blocks = torch.nn.ModuleList(
            [
                MessagePassingBlock(
                    num_species=num_species,
                    num_geometric_features=num_geometric_features,
                    d_pet=d_pet,
                    num_heads=num_heads,
                    d_feedforward=d_feedforward,
                    num_attention_layers=num_attention_layers,
                    transformer=transformer,
                    has_input_messages=k > 0,
                    embeds_neighbor_species=(k == 0) or not species_as_first_message,
                )
                for k in range(num_gnn_layers)
            ]
        )
        num_readouts = 1 if last_block_readout else num_gnn_layers
        self.first_readout_block = num_gnn_layers - num_readouts
        self.readouts = torch.nn.ModuleList(
            [torch.nn.ModuleDict() for _ in range(num_readouts)]
        )

    def add_target(self, name: str, num_outputs: int) -> None:
        for readouts in self.readouts:
            readouts[name] = TargetReadout(
                self.d_pet, self.d_head, num_outputs, self.average_bonds
            )

    def remove_target(self, name: str) -> None:
        for readouts in self.readouts:
            del readouts[name]

    def forward(
        self,
        geometry: torch.Tensor,
        center_species: torch.Tensor,
        neighbor_species: torch.Tensor,
        centers: torch.Tensor,
        slots: torch.Tensor,
        reverse: torch.Tensor,
        edge_cutoffs: torch.Tensor,
        token_weights: torch.Tensor,
        targets: List[str],
        last_layer_targets: List[str],
        compute_features: bool,
        needed_atoms: List[torch.Tensor],
    ) -> Tuple[
        Dict[str, torch.Tensor], Dict[str, torch.Tensor], Optional[torch.Tensor]
    ]:
        """
        :param geometry: geometric input of every edge
        :param center_species: species index of every atom
        :param neighbor_species: species index of every edge's neighbour
        :param centers: central atom of every edge, sorted
        :param slots: slot of every edge in its environment
        :param reverse: index of the reversed edge of every edge
        :param edge_cutoffs: f_c(r_ij) of every edge
        :param token_weights: padded cutoff weights, ``(n_atoms, 1 + max_neighbors)``
        :param targets: targets to predict
        :param last_layer_targets: targets whose last-layer features are wanted
        :param compute_features: whether to return the per-atom features
        :param needed_atoms: per block, the atoms it must process (from
            :func:`~metatrain_pet.nn.receptive_field.atoms_needed_per_block`); empty
            for all atoms. The outputs are then only meaningful for the atoms of the
            last block (zeros elsewhere).
        :return: per-atom predictions ``(n_atoms, n_outputs)`` per target, per-atom
            last-layer features per target, and the per-atom features (central token
            and cutoff-weighted sum of the edge tokens of the last block)
        """
        n_atoms = center_species.shape[0]
        subsets: List[AtomSubset] = []
        for k in range(len(self.blocks)):
            atoms: Optional[torch.Tensor] = None
            if len(needed_atoms) > 0:
                atoms = needed_atoms[k]
            subsets.append(AtomSubset(atoms, centers, n_atoms))

        central_tokens: List[torch.Tensor] = []
        edge_tokens: List[torch.Tensor] = []
        messages: Optional[torch.Tensor] = None
        carried: Optional[torch.Tensor] = None
        for k, block in enumerate(self.blocks):
            subset = subsets[k]
            if self.carry_central and k > 0:
                carried = take_rows(
                    central_tokens[k - 1], subsets[k - 1].local_atoms(subset.atoms)
                )
            central, edges = block(
                take_rows(geometry, subset.edges),
                messages,
                take_rows(center_species, subset.atoms),
                take_rows(neighbor_species, subset.edges),
                subset.centers,
                take_rows(slots, subset.edges),
                take_rows(token_weights, subset.atoms),
                carried,
            )
            central_tokens.append(central)
            edge_tokens.append(edges)
            if k + 1 < len(subsets):
                next_edges = subsets[k + 1].edges
                reversed_rows = subset.local_edges(take_rows(reverse, next_edges))
                incoming = take_rows(edges, reversed_rows)
                if messages is None:
                    if self.species_as_first_message:
                        messages = (
                            block.neighbor_embedding(
                                take_rows(neighbor_species, next_edges)
                            )
                            + incoming
                        )
                    else:
                        messages = incoming
                else:
                    messages = (
                        take_rows(messages, subset.local_edges(next_edges)) + incoming
                    )

        output_atoms = subsets[-1]
        output_cutoffs = take_rows(edge_cutoffs, output_atoms.edges)
        predictions: Dict[str, torch.Tensor] = {}
        last_layer_parts: Dict[str, List[torch.Tensor]] = {}
        for index, readouts in enumerate(self.readouts):
            k = index + self.first_readout_block
            for name, readout in readouts.items():
                wanted = name in targets
                wanted_last_layer = name in last_layer_targets
                if wanted or wanted_last_layer:
                    central, bonds = readout.last_layer_features(
                        take_rows(
                            central_tokens[k],
                            subsets[k].local_atoms(output_atoms.atoms),
                        ),
                        take_rows(
                            edge_tokens[k], subsets[k].local_edges(output_atoms.edges)
                        ),
                        output_cutoffs,
                        output_atoms.centers,
                    )
                    if wanted:
                        contribution = readout.predict(central, bonds)
                        if name in predictions:
                            predictions[name] = predictions[name] + contribution
                        else:
                            predictions[name] = contribution
                    if wanted_last_layer:
                        if name not in last_layer_parts:
                            last_layer_parts[name] = []
                        last_layer_parts[name].append(central)
                        last_layer_parts[name].append(bonds)

        for name in list(predictions.keys()):
            predictions[name] = output_atoms.scatter_atoms(predictions[name])
        last_layer_features: Dict[str, torch.Tensor] = {}
        for name, parts in last_layer_parts.items():
            last_layer_features[name] = output_atoms.scatter_atoms(
                torch.cat(parts, dim=1)
            )

        features: Optional[torch.Tensor] = None
        if compute_features:
            last_central = central_tokens[-1]
            weighted = edge_tokens[-1] * output_cutoffs.unsqueeze(1)
            summed = torch.zeros_like(last_central).index_add(
                0, output_atoms.centers, weighted
            )
            features = output_atoms.scatter_atoms(
                torch.cat([last_central, summed], dim=1)
            )
        return predictions, last_layer_features, features
