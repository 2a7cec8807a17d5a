"""PET's stack of message-passing blocks (Fig. 2a, App. A): the output tokens of
the edges of block k become, through the reversed edges, the messages of block
k + 1, updated residually."""

from typing import List, NamedTuple, Optional, Tuple

import torch

from ..geometry.segments import segment_sum
from .block import BlockGradients, MessagePassingBlock
from .environments import Environments
from .layerwise import FrameRows, average_rows, rotated_environments
from .receptive_field import AtomSubset, take_rows
from .transformer import TransformerOptions


class InputGradients(NamedTuple):
    """Gradients of a scalar with respect to the inputs of the blocks
    (:meth:`MessagePassing.pullback`)."""

    geometry: torch.Tensor
    """``(n_edges, n_geometric)``; with layer-wise ECSE ``(n_row_edges,
    n_geometric)``, of every edge of every (atom, frame) row"""
    token_weights: torch.Tensor
    """``(n_atoms, n_tokens)``: the token (cutoff) weights"""
    frame_weights: torch.Tensor
    """``(n_rows,)``: the weight of every row with layer-wise ECSE, else empty"""


class Tokens(NamedTuple):
    """Output tokens of every block (frame averages with layer-wise ECSE)."""

    central: List[torch.Tensor]
    """per block, ``(n_atoms, d)`` in the block's subset numbering"""
    edges: List[torch.Tensor]
    """per block, ``(n_edges, d)``"""
    frame_rows: List[FrameRows]
    """per block with layer-wise ECSE, its (atom, frame) rows; else empty"""
    row_central: List[torch.Tensor]
    """per block with layer-wise ECSE, the central token of every row"""
    row_edges: List[torch.Tensor]
    """per block with layer-wise ECSE, the edge tokens of every row"""


class MessagePassing(torch.nn.Module):
    """``num_blocks`` message-passing blocks.

    With ``species_as_first_message`` the first block's messages to block 1 are
    the neighbour-species embedding plus the reversed edge tokens. With
    ``carry_central`` (a departure from the paper, as in metatrain's ``pet``) the
    output central token of block k is added to the species embedding that starts
    block k + 1.
    """

    def __init__(
        self,
        num_species: int,
        num_geometric_features: int,
        d_pet: int,
        num_heads: int,
        d_feedforward: int,
        num_attention_layers: int,
        num_blocks: int,
        transformer: TransformerOptions,
        species_as_first_message: bool,
        carry_central: bool,
        num_input_features: int,
    ):
        super().__init__()
        self.species_as_first_message = species_as_first_message
        self.carry_central = carry_central
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
                    num_input_features=num_input_features,
                )
                for k in range(num_blocks)
            ]
        )

    def forward(
        self,
        environments: Environments,
        subsets: List[AtomSubset],
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        num_blocks: int = -1,
    ) -> Tokens:
        """Output tokens of every block, each in the numbering of that block's
        subset (``subsets[k]``: the atoms block k must process). With ``frames``
        ``(atoms, rotations, weights)`` of all atoms, every block is symmetrized
        layer by layer (:mod:`.layerwise`). ``num_blocks`` >= 0 evaluates the
        first ``num_blocks`` blocks only."""
        species_messages = self._species_messages(environments)
        central_tokens: List[torch.Tensor] = []
        edge_tokens: List[torch.Tensor] = []
        frame_rows: List[FrameRows] = []
        row_central: List[torch.Tensor] = []
        row_edges: List[torch.Tensor] = []
        messages: Optional[torch.Tensor] = None
        for k, block in enumerate(self.blocks):
            # TorchScript unrolls this loop: no break
            if num_blocks < 0 or k < num_blocks:
                local = subsets[k].restrict(environments)
                carried: Optional[torch.Tensor] = None
                if self.carry_central and k > 0:
                    previous = subsets[k - 1].local_atoms(subsets[k].atoms)
                    carried = take_rows(central_tokens[k - 1], previous)
                if frames is None:
                    central, edges = block(local, messages, carried)
                else:
                    rows = subsets[k].frame_rows(frames, local)
                    row_messages = None if messages is None else messages[rows.edges]
                    row_carried = None if carried is None else carried[rows.atoms]
                    block_rows_central, block_rows_edges = block(
                        rotated_environments(local, rows), row_messages, row_carried
                    )
                    central, edges = average_rows(
                        block_rows_central, block_rows_edges, rows, local
                    )
                    frame_rows.append(rows)
                    row_central.append(block_rows_central)
                    row_edges.append(block_rows_edges)
                central_tokens.append(central)
                edge_tokens.append(edges)
                if k + 1 < len(subsets) and k + 1 != num_blocks:
                    messages = self._next_messages(
                        environments, subsets, k, edges, messages, species_messages
                    )
        return Tokens(central_tokens, edge_tokens, frame_rows, row_central, row_edges)

    def pullback(
        self,
        environments: Environments,
        subsets: List[AtomSubset],
        tokens: Tokens,
        upstream: List[List[torch.Tensor]],
        messages: List[Optional[torch.Tensor]],
        last: Optional[BlockGradients],
    ) -> InputGradients:
        """Backpropagation through the blocks, last to first, one block (and one
        chunk of it) at a time (:meth:`MessagePassingBlock.pullback`): from the
        gradients of a scalar with respect to every block's output ``tokens``
        (all atoms), its gradients with respect to the inputs of the blocks.

        :param upstream: per block, the gradients with respect to its central
            and edge tokens (its row tokens with layer-wise ECSE)
        :param messages: the input messages of every block
        :param last: the gradients with respect to the last block's inputs, when
            the caller has pulled back through it (``tokens`` and ``upstream``
            then hold the other blocks only)
        """
        layerwise = len(tokens.frame_rows) > 0
        grad_central = [grads[0] for grads in upstream]
        grad_edges = [grads[1] for grads in upstream]
        if layerwise:  # the rows' gradients are upstream[k]
            grad_central = [torch.zeros_like(t) for t in tokens.central]
            grad_edges = [torch.zeros_like(t) for t in tokens.edges]
        totals = _zero_input_gradients(environments, tokens, last)
        later: Optional[torch.Tensor] = None
        for k in range(len(self.blocks) - 1, -1, -1):
            carried = tokens.central[k - 1] if self.carry_central and k > 0 else None
            inputs = [messages[k], carried]
            if last is not None and k + 1 == len(self.blocks):
                block_grads = last
            elif layerwise:
                outputs = [grad_central[k], grad_edges[k]] + upstream[k]
                block_grads, frame_weights = self._rows_pullback(
                    k, environments, tokens, inputs, outputs
                )
                totals.frame_weights.add_(frame_weights)
            else:
                outputs = [grad_central[k], grad_edges[k]]
                block_grads = self._block_pullback(k, environments, inputs, outputs)
            totals.geometry.add_(block_grads.geometry)
            totals.token_weights.add_(block_grads.token_weights)
            grad_messages, grad_carried = block_grads.messages, block_grads.carried
            if grad_carried is not None:
                grad_central[k - 1] = grad_central[k - 1] + grad_carried
            if grad_messages is not None:
                if later is not None:
                    grad_messages = grad_messages + later
                grad_edges[k - 1] = grad_edges[k - 1].index_add(
                    0, environments.reverse, grad_messages
                )
                later = grad_messages if messages[k - 1] is not None else None
        return totals

    def rebuilt_messages(
        self, environments: Environments, subsets: List[AtomSubset], tokens: Tokens
    ) -> List[Optional[torch.Tensor]]:
        """The input messages of every block (None for the first), rebuilt
        without autograd from the output ``tokens`` of every block but the
        last."""
        with torch.no_grad():
            return self.messages_of(environments, subsets, tokens)

    def messages_of(
        self, environments: Environments, subsets: List[AtomSubset], tokens: Tokens
    ) -> List[Optional[torch.Tensor]]:
        """The input messages of every block (None for the first), from the
        output ``tokens`` of every block but the last."""
        species_messages = self._species_messages(environments)
        messages: List[Optional[torch.Tensor]] = [None]
        for k in range(len(self.blocks) - 1):
            messages.append(
                self._next_messages(
                    environments,
                    subsets,
                    k,
                    tokens.edges[k],
                    messages[k],
                    species_messages,
                )
            )
        return messages

    def _rows_pullback(
        self,
        k: int,
        environments: Environments,
        tokens: Tokens,
        inputs: List[Optional[torch.Tensor]],
        grads: List[torch.Tensor],
    ) -> Tuple[BlockGradients, torch.Tensor]:
        """Layer-wise ECSE: the pullback of block k through its frame average.
        The block's outputs are ``sum_r w_r t_r`` over the (atom, frame) rows, so
        the rows receive ``w_r`` times the gradients of the averages plus those of
        their own readout, and the weights ``g · t_r``. Returns the gradients
        with respect to the geometric input of every row edge, the token weights,
        messages and carried tokens of the atoms and edges, and the gradient
        with respect to every row's weight.

        :param inputs: the block's messages and carried tokens
        :param grads: gradients with respect to the averaged central and edge
            tokens, then to the rows' central and edge tokens
        """
        rows = tokens.frame_rows[k]
        messages, carried = inputs[0], inputs[1]
        row_central, row_edges = tokens.row_central[k], tokens.row_edges[k]
        of_atoms, of_edges = grads[0][rows.atoms], grads[1][rows.edges]
        frame_weights = (of_atoms * row_central).sum(dim=1) + segment_sum(
            (of_edges * row_edges).sum(dim=1), rows.edge_rows, rows.atoms.shape[0]
        )
        edge_weights = rows.weights[rows.edge_rows].unsqueeze(1)
        row_grads = self._block_pullback(
            k,
            rotated_environments(environments, rows),
            [
                None if messages is None else messages[rows.edges],
                None if carried is None else carried[rows.atoms],
            ],
            [
                grads[2] + rows.weights.unsqueeze(1) * of_atoms,
                grads[3] + edge_weights * of_edges,
            ],
        )
        block_grads = summed_over_rows(row_grads, rows, environments, inputs)
        return block_grads, frame_weights

    def _block_pullback(
        self,
        k: int,
        environments: Environments,
        inputs: List[Optional[torch.Tensor]],
        outputs: List[torch.Tensor],
    ) -> BlockGradients:
        """:meth:`MessagePassingBlock.pullback` of block k, given its messages and
        carried tokens (``inputs``) and the gradients with respect to its central
        and edge tokens (``outputs``); TorchScript indexes a ``ModuleList`` only
        while iterating over it."""
        for index, block in enumerate(self.blocks):
            if index == k:
                return block.pullback(
                    environments, inputs[0], inputs[1], outputs[0], outputs[1]
                )
        raise IndexError(f"there is no block {k}")

    def _species_messages(self, environments: Environments) -> Optional[torch.Tensor]:
        """E_n(s_j) of every edge when it is the first block's message."""
        if not self.species_as_first_message or len(self.blocks) < 2:
            return None
        return self.blocks[0].neighbor_embedding(environments.neighbor_species)

    def _next_messages(
        self,
        environments: Environments,
        subsets: List[AtomSubset],
        k: int,
        edges: torch.Tensor,
        messages: Optional[torch.Tensor],
        species_messages: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Messages of block k + 1: the previous message (or the species
        embedding) of every edge plus the block-k output token of its reverse."""
        subset = subsets[k]
        next_edges = subsets[k + 1].edges
        reversed_rows = subset.local_edges(take_rows(environments.reverse, next_edges))
        incoming = take_rows(edges, reversed_rows)
        if messages is not None:
            return take_rows(messages, subset.local_edges(next_edges)) + incoming
        if species_messages is not None:
            return take_rows(species_messages, next_edges) + incoming
        return incoming


def summed_over_rows(
    row_grads: BlockGradients,
    rows: FrameRows,
    environments: Environments,
    inputs: List[Optional[torch.Tensor]],
) -> BlockGradients:
    """Layer-wise ECSE: gradients with respect to the inputs of a block's (atom,
    frame) rows brought to its atoms and edges, summed over the rows that copy
    them: token weights, and messages and carried tokens (``inputs``: those of
    the atoms and edges, or None); the geometric input stays per row edge."""
    messages, carried = inputs[0], inputs[1]
    grad_messages = row_grads.messages
    if grad_messages is not None and messages is not None:
        grad_messages = torch.zeros_like(messages).index_add(
            0, rows.edges, grad_messages
        )
    grad_carried = row_grads.carried
    if grad_carried is not None and carried is not None:
        grad_carried = torch.zeros_like(carried).index_add(0, rows.atoms, grad_carried)
    grad_weights = torch.zeros_like(environments.token_weights).index_add(
        0, rows.atoms, row_grads.token_weights
    )
    return BlockGradients(row_grads.geometry, grad_weights, grad_messages, grad_carried)


def _zero_input_gradients(
    environments: Environments, tokens: Tokens, last: Optional[BlockGradients]
) -> InputGradients:
    """Zero gradients with respect to the inputs of the blocks, in the shapes of
    :class:`InputGradients` (per row edge and per row with layer-wise ECSE; the
    geometric input in the shape of ``last``'s when given)."""
    geometry = environments.geometry
    n_edges, n_rows = geometry.shape[0], 0
    if len(tokens.frame_rows) > 0:
        rows = tokens.frame_rows[0]
        n_edges, n_rows = rows.edges.shape[0], rows.weights.shape[0]
    zeros = geometry.new_zeros((n_edges, geometry.shape[1]))
    if last is not None:
        zeros = torch.zeros_like(last.geometry)
    return InputGradients(
        zeros,
        torch.zeros_like(environments.token_weights),
        geometry.new_zeros((n_rows,)),
    )
