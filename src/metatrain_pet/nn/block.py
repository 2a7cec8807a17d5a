"""One message-passing block of PET: the encoder of Eq. 5 and the transformer."""

from typing import Optional, Tuple

import torch

from .edges import pad_environments
from .transformer import Transformer, TransformerOptions


class MessagePassingBlock(torch.nn.Module):
    """Turns the geometry, the species and the input messages of every atomic
    environment into tokens, runs the transformer over each environment, and
    returns the output tokens of the central atoms and of the edges (Fig. 2b).

    The token of neighbour j of atom i is (Eq. 5)
    ``t_j = M[concat(x̃_ij, E_n(s_j), σ(L(r_ij)))]``; the central token is
    ``E_c(s_i)``. In the first block there is no input message and ``M`` maps
    2 d -> d; later blocks map 3 d -> d. With ``species_as_first_message``, the
    neighbour-species embedding is the first block's input message and is not
    concatenated, so every ``M`` maps 2 d -> d (App. A).

    :param num_species: number of atomic species
    :param num_geometric_features: size of the geometric input of ``L`` (3 for
        r_ij, 4 for r_ij and |r_ij|, 1 for |r_ij| alone)
    :param has_input_messages: whether this block receives messages
    :param embeds_neighbor_species: whether ``E_n(s_j)`` is concatenated
    """

    def __init__(
        self,
        num_species: int,
        num_geometric_features: int,
        d_pet: int,
        num_heads: int,
        d_feedforward: int,
        num_attention_layers: int,
        transformer: TransformerOptions,
        has_input_messages: bool,
        embeds_neighbor_species: bool,
    ):
        super().__init__()
        self.has_input_messages = has_input_messages
        self.embeds_neighbor_species = embeds_neighbor_species
        self.geometry_embedding = torch.nn.Sequential(
            torch.nn.Linear(num_geometric_features, d_pet), torch.nn.SiLU()
        )
        self.center_embedding = torch.nn.Embedding(num_species, d_pet)
        self.neighbor_embedding = (
            torch.nn.Embedding(num_species, d_pet)
            if embeds_neighbor_species
            else torch.nn.Identity()
        )
        num_inputs = 1 + int(has_input_messages) + int(embeds_neighbor_species)
        self.compress = torch.nn.Sequential(
            torch.nn.Linear(num_inputs * d_pet, d_pet),
            torch.nn.SiLU(),
            torch.nn.Linear(d_pet, d_pet),
        )
        self.transformer = Transformer(
            d_pet, num_heads, d_feedforward, num_attention_layers, transformer
        )

    def forward(
        self,
        geometry: torch.Tensor,
        messages: Optional[torch.Tensor],
        center_species: torch.Tensor,
        neighbor_species: torch.Tensor,
        centers: torch.Tensor,
        slots: torch.Tensor,
        token_weights: torch.Tensor,
        carried: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        :param geometry: geometric features of every edge, ``(n_edges, n_geom)``
        :param messages: input message x̃_ij of every edge, ``(n_edges, d_pet)``
        :param center_species: species index of every atom, ``(n_atoms,)``
        :param neighbor_species: species index of every edge's neighbour
        :param centers: central atom of every edge (sorted)
        :param slots: slot of every edge in its environment
        :param token_weights: cutoff weights of the padded sequences,
            ``(n_atoms, 1 + max_neighbors)``, 1 for the central token
        :param carried: output central token of the previous block, added to
            ``E_c(s_i)`` when the model carries the central state across blocks
        :return: output tokens of the central atoms ``(n_atoms, d_pet)`` and of the
            edges ``(n_edges, d_pet)``
        """
        inputs = [self.geometry_embedding(geometry)]
        if self.embeds_neighbor_species:
            inputs.insert(0, self.neighbor_embedding(neighbor_species))
        if messages is not None:
            inputs.insert(0, messages)
        edge_tokens = self.compress(torch.cat(inputs, dim=1))

        n_atoms = center_species.shape[0]
        max_neighbors = token_weights.shape[1] - 1
        padded = pad_environments(edge_tokens, centers, slots, n_atoms, max_neighbors)
        central = self.center_embedding(center_species)
        if carried is not None:
            central = central + carried
        central = central.unsqueeze(1)
        sequences = self.transformer(torch.cat([central, padded], dim=1), token_weights)
        return sequences[:, 0], sequences[centers, slots + 1]


class ReadoutHead(torch.nn.Module):
    """A prediction head: a two-layer SiLU network giving the last-layer features,
    then a linear map to the target's values (H_c or H_n of App. A)."""

    def __init__(self, d_pet: int, d_head: int, num_outputs: int, bias: bool):
        super().__init__()
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(d_pet, d_head),
            torch.nn.SiLU(),
            torch.nn.Linear(d_head, d_head),
            torch.nn.SiLU(),
        )
        self.last_layer = torch.nn.Linear(d_head, num_outputs, bias=bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hidden(tokens)
