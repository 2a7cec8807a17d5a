"""One message-passing block of PET (Fig. 2b): the edge encoder of Eq. 5 and the
transformer over every atomic environment."""

from typing import List, NamedTuple, Optional, Tuple

import torch

from .chunks import (
    Chunks,
    chunk_inputs,
    chunk_rows,
    chunk_sequences,
    default_max_tokens,
    gathers_once,
    plan_chunks,
)
from .environments import Environments
from .transformer import Transformer, TransformerOptions


class BlockGradients(NamedTuple):
    """Gradients of a scalar with respect to the inputs of a block
    (:meth:`MessagePassingBlock.pullback`)."""

    geometry: torch.Tensor
    """``(n_edges, n_geometric)``: the geometric input of every edge"""
    token_weights: torch.Tensor
    """``(n_atoms, n_tokens)``: the token (cutoff) weights"""
    messages: Optional[torch.Tensor]
    """``(n_edges, d_pet)``: the input messages, if the block has some"""
    carried: Optional[torch.Tensor]
    """``(n_atoms, d_pet)``: the carried central tokens, if any"""


class ChunkInputs(NamedTuple):
    """Inputs of one chunk of a block, leaves of its autograd graph."""

    geometry: torch.Tensor
    """``(e_c, n_geometric)``: the geometric input of its edges"""
    token_weights: torch.Tensor
    """``(n_c, length)``: its token weights, up to its longest environment"""
    messages: Optional[torch.Tensor]
    """``(e_c, d_pet)``: the input messages of its edges, if the block has some"""
    carried: Optional[torch.Tensor]
    """``(n_c, d_pet)``: the carried central tokens of its atoms, if any"""


class MessagePassingBlock(torch.nn.Module):
    """Turns the geometry, the species and the input messages of every atomic
    environment into tokens (:meth:`encode_edges`, Eq. 5), runs the transformer
    over each environment, and returns the output tokens of the central atoms and
    of the edges.

    The central token is ``E_c(s_i)``, plus ``W f_i`` with extra inputs, whose
    features f_j are concatenated to the geometric input of ``L`` (App. C.3). In
    the first block there is no input
    message and ``M`` maps 2 d -> d; later blocks map 3 d -> d. With
    ``species_as_first_message``, the neighbour-species embedding is the first
    block's input message and is not concatenated, so every ``M`` maps 2 d -> d
    (App. A).

    :param num_geometric_features: size of the geometric input of ``L`` (3 for
        r_ij, 4 for r_ij and |r_ij|, 1 for |r_ij| alone)
    :param has_input_messages: whether this block receives messages
    :param embeds_neighbor_species: whether ``E_n(s_j)`` is concatenated
    :param num_input_features: size of the extra-input features (0: none)
    """

    max_tokens: int
    """Tokens per chunk of environments (:mod:`.chunks`); 0 for the device's
    default. It changes the cost, not the result."""

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
        num_input_features: int,
    ):
        super().__init__()
        self.embeds_neighbor_species = embeds_neighbor_species
        self.has_inputs = num_input_features > 0
        self.max_tokens = 0
        self.geometry_embedding = torch.nn.Sequential(
            torch.nn.Linear(num_geometric_features + num_input_features, d_pet),
            torch.nn.SiLU(),
        )
        self.center_embedding = torch.nn.Embedding(num_species, d_pet)
        self.input_embedding = (
            torch.nn.Linear(num_input_features, d_pet, bias=False)
            if self.has_inputs
            else torch.nn.Identity()
        )
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

    def encode_edges(
        self, environments: Environments, messages: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Eq. 5: ``t_ij = M[concat(x̃_ij, E_n(s_j), σ(L(r_ij, f_j)))]``,
        ``(n_edges, d)``; absent parts (no message in the first block, no ``E_n``
        with ``species_as_first_message``, no f_j without extra inputs) are left
        out of the concatenation."""
        return self._edge_tokens(
            environments.geometry,
            environments.neighbor_species,
            environments.neighbor_features,
            messages,
        )

    def _edge_tokens(
        self,
        geometry: torch.Tensor,
        neighbor_species: torch.Tensor,
        neighbor_features: torch.Tensor,
        messages: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """:meth:`encode_edges` of some edges, given their inputs."""
        if self.has_inputs:
            geometry = torch.cat([geometry, neighbor_features], dim=1)
        inputs = [self.geometry_embedding(geometry)]
        if self.embeds_neighbor_species:
            inputs.insert(0, self.neighbor_embedding(neighbor_species))
        if messages is not None:
            inputs.insert(0, messages)
        return self.compress(torch.cat(inputs, dim=1))

    def _central_tokens(
        self,
        species: torch.Tensor,
        features: torch.Tensor,
        carried: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Input central tokens ``E_c(s_i)`` (+ ``W f_i``, + the carried token)."""
        central = self.center_embedding(species)
        if self.has_inputs:
            central = central + self.input_embedding(features)
        if carried is not None:
            central = central + carried
        return central

    def forward(
        self,
        environments: Environments,
        messages: Optional[torch.Tensor],
        carried: Optional[torch.Tensor],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        :param environments: the environments this block processes
        :param messages: input message x̃_ij of every edge, ``(n_edges, d_pet)``
        :param carried: output central token of the previous block, added to
            ``E_c(s_i)`` when the model carries the central state across blocks
        :return: output tokens of the central atoms ``(n_atoms, d_pet)`` and of
            the edges ``(n_edges, d_pet)``
        """
        edge_tokens = self.encode_edges(environments, messages)
        central = self._central_tokens(
            environments.center_species, environments.center_features, carried
        )
        return self._transform(central, edge_tokens, environments)

    def _max_tokens(self, device: torch.device) -> int:
        if self.max_tokens == 0:
            return default_max_tokens(device)
        return self.max_tokens

    def _transform(
        self,
        central: torch.Tensor,
        edge_tokens: torch.Tensor,
        environments: Environments,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The transformer over every environment, in chunks of similar length
        (:mod:`.chunks`) when they hold more than ``max_tokens`` tokens: output
        tokens of the central atoms and of the edges, in their input order."""
        max_tokens = self._max_tokens(edge_tokens.device)
        weights = environments.token_weights
        centers, slots = environments.centers, environments.slots
        if weights.shape[0] * weights.shape[1] <= max_tokens:
            return self._transform_chunk(central, edge_tokens, weights, centers, slots)
        chunks = plan_chunks(centers, weights.shape[0], max_tokens)
        inputs = [central, weights, edge_tokens, slots]
        once = gathers_once(inputs)
        gathered: List[List[torch.Tensor]] = []
        if once:
            gathered = chunk_inputs(inputs, chunks)
        central_parts: List[torch.Tensor] = []
        edge_parts: List[torch.Tensor] = []
        for c, length in enumerate(chunks.lengths):
            rows_of = gathered[c] if once else chunk_rows(inputs, chunks, c)
            chunk_central, chunk_edges = self._transform_chunk(
                rows_of[0],
                rows_of[2],
                rows_of[1][:, :length],
                chunks.rows[c],
                rows_of[3],
            )
            central_parts.append(chunk_central)
            edge_parts.append(chunk_edges)
        return (
            torch.cat(central_parts)[chunks.atom_rank],
            torch.cat(edge_parts)[chunks.edge_rank],
        )

    def _transform_chunk(
        self,
        central: torch.Tensor,
        edge_tokens: torch.Tensor,
        weights: torch.Tensor,
        rows: torch.Tensor,
        slots: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The transformer over some environments padded to ``weights.shape[1]``
        tokens: output central tokens and edge tokens, in their input order.

        :param rows: row of every edge's centre among these environments
        :param slots: position of every edge among its centre's neighbours
        """
        tokens = chunk_sequences(central, edge_tokens, weights, rows, slots)
        sequences = self.transformer(tokens, weights)
        return sequences[:, 0], sequences[rows, slots + 1]

    def chunk_plan(self, environments: Environments) -> Chunks:
        """The chunks in which :meth:`pullback` evaluates the block again."""
        weights = environments.token_weights
        return plan_chunks(
            environments.centers, weights.shape[0], self._max_tokens(weights.device)
        )

    def pullback(
        self,
        environments: Environments,
        messages: Optional[torch.Tensor],
        carried: Optional[torch.Tensor],
        grad_central: torch.Tensor,
        grad_edges: torch.Tensor,
    ) -> BlockGradients:
        """Vector-Jacobian product of :meth:`forward`: given the gradients of a
        scalar with respect to the output tokens, its gradients with respect to
        the geometric input, the token weights, the messages and the carried
        central tokens. The block is evaluated again chunk by chunk, each chunk's
        graph freed before the next, so that memory holds one chunk's graph."""
        totals = zero_block_gradients(environments, messages, carried)
        chunks = self.chunk_plan(environments)
        for c, atoms in enumerate(chunks.atoms):
            inputs = chunk_inputs_of(environments, messages, carried, chunks, c)
            outputs = self.chunk_outputs(environments, inputs, chunks, c)
            upstream: List[Optional[torch.Tensor]] = [
                grad_central[atoms],
                grad_edges[chunks.edges[c]],
            ]
            leaves = inputs_list(inputs)
            grads = torch.autograd.grad(
                [outputs[0], outputs[1]], leaves, upstream, allow_unused=True
            )
            add_chunk_gradients(totals, grads, inputs, chunks, c)
        return totals

    def chunk_outputs(
        self,
        environments: Environments,
        inputs: ChunkInputs,
        chunks: Chunks,
        c: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Output central and edge tokens of chunk ``c``, recorded by autograd
        from its ``inputs`` (:func:`chunk_inputs_of`)."""
        atoms, edges = chunks.atoms[c], chunks.edges[c]
        edge_tokens = self._edge_tokens(
            inputs.geometry,
            environments.neighbor_species[edges],
            environments.neighbor_features[edges],
            inputs.messages,
        )
        central = self._central_tokens(
            environments.center_species[atoms],
            environments.center_features[atoms],
            inputs.carried,
        )
        return self._transform_chunk(
            central,
            edge_tokens,
            inputs.token_weights,
            chunks.rows[c],
            environments.slots[edges],
        )


def chunk_inputs_of(
    environments: Environments,
    messages: Optional[torch.Tensor],
    carried: Optional[torch.Tensor],
    chunks: Chunks,
    c: int,
) -> ChunkInputs:
    """The inputs of chunk ``c``, cut from the graph that made them and
    requiring gradients."""
    atoms, edges, length = chunks.atoms[c], chunks.edges[c], chunks.lengths[c]
    weights = environments.token_weights.detach()[atoms, :length]
    return ChunkInputs(
        environments.geometry.detach()[edges].requires_grad_(),
        weights.requires_grad_(),
        None if messages is None else messages.detach()[edges].requires_grad_(),
        None if carried is None else carried.detach()[atoms].requires_grad_(),
    )


def inputs_list(inputs: ChunkInputs) -> List[torch.Tensor]:
    """The tensors of ``inputs`` that are given, in their order."""
    leaves = [inputs.geometry, inputs.token_weights]
    messages, carried = inputs.messages, inputs.carried
    if messages is not None:
        leaves.append(messages)
    if carried is not None:
        leaves.append(carried)
    return leaves


def zero_block_gradients(
    environments: Environments,
    messages: Optional[torch.Tensor],
    carried: Optional[torch.Tensor],
) -> BlockGradients:
    """Zero gradients with respect to the inputs of a block."""
    return BlockGradients(
        torch.zeros_like(environments.geometry.detach()),
        torch.zeros_like(environments.token_weights.detach()),
        None if messages is None else torch.zeros_like(messages),
        None if carried is None else torch.zeros_like(carried),
    )


def add_chunk_gradients(
    totals: BlockGradients,
    grads: List[Optional[torch.Tensor]],
    inputs: ChunkInputs,
    chunks: Chunks,
    c: int,
) -> None:
    """Writes the gradients with respect to chunk ``c``'s inputs (in the order of
    :func:`inputs_list`; None where unused) into the block's ``totals``."""
    atoms, edges, length = chunks.atoms[c], chunks.edges[c], chunks.lengths[c]
    leaves = inputs_list(inputs)
    full = [or_zeros(grad, leaf) for grad, leaf in zip(grads, leaves)]
    totals.geometry[edges] = full[0]
    totals.token_weights[atoms, :length] = full[1]
    messages, carried = totals.messages, totals.carried
    if messages is not None:
        messages[edges] = full[2]
    if carried is not None:
        carried[atoms] = full[-1]


def or_zeros(gradient: Optional[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """A gradient from ``torch.autograd.grad(..., allow_unused=True)``, zeros
    where the input was not used."""
    if gradient is None:
        return torch.zeros_like(like)
    return gradient
