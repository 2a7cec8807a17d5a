"""PET on metatomic systems: systems in, ``TensorMap`` out, the pure-torch network
in between (:mod:`metatrain_pet.nn`).

This module has the forward signature of a metatomic model, so that ECSE (which
knows nothing of PET) can symmetrize it. Composition baselines and scales are not
applied here but in :class:`metatrain_pet.pet.model.PET`.
"""

from typing import Dict, List, NamedTuple, Optional, Tuple

import metatensor.torch as mts
import torch
from metatensor.torch import Labels, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from ..geometry.rotations import random_rotations
from ..geometry.segments import segment_sum
from ..nn.block import (
    BlockGradients,
    add_chunk_gradients,
    chunk_inputs_of,
    inputs_list,
    or_zeros,
    zero_block_gradients,
)
from ..nn.environments import (
    Environments,
    build_environments,
    detached_environments,
    geometric_input,
)
from ..nn.graph_memory import REFERENCE_FLOATS, token_floats
from ..nn.inputs import InputFeatures
from ..nn.layerwise import (
    FrameRows,
    average_over_rows,
    geometry_gradients_in_lab,
    raw_weight_gradients,
    rotated_environments,
    rotation_gradients,
)
from ..nn.message_passing import MessagePassing, Tokens, summed_over_rows
from ..nn.readout import Readout, frame_view, pet_features, subset_view
from ..nn.receptive_field import AtomSubset, atoms_needed_per_block
from ..nn.transformer import TransformerOptions
from ..systems.batch import (
    SystemBatch,
    atom_samples,
    flatten_systems,
    longest_environment,
    selected_atom_indices,
)
from ..systems.inputs import SYSTEM_INPUTS, atomic_input_values, system_input_values
from .long_range import LongRange
from .targets import (
    TargetLayout,
    features_tensor_map,
    last_layer_features_name,
    sum_over_atoms,
)

LEAN_FORCES_ABOVE = 3 << 16
"""Tokens of graph above which a batch is evaluated with lean forces by default,
in the unit of :meth:`PETNetwork.graph_tokens` (float32 tokens of the default
model in liquid water), counting the graph the evaluation would keep otherwise
(see :attr:`PETNetwork.lean_forces_above`): ~5.6 GB in float32. With the full
graph (one block, layer-wise ECSE), about 3200 atoms of liquid water, from where
lean forces cost less time on CPU (first touching the graph's fresh pages costs
more than their extra forward pass); with lean forces through the last block (two
blocks or more, the default), about 6300 atoms for the default model, that mode
costing 0.88 of lean forces' time at 3456 atoms, 0.90-1.01 at 5184, and 0.92 for
the small model at 12288 atoms (``benchmarks/lean_crossover.py``)."""


LEAN_LAST_BLOCK_ABOVE = 1 << 16
"""Tokens above which (unless lean forces apply) a batch keeps the graph of
every block but the last, whose forces are lean, by default, in the unit of
:meth:`PETNetwork.graph_tokens`: about 1000 atoms of liquid water, ~1.9 GB of
graph for the default model in float32. From there on it costs no more time than
the full graph on CPU, for ~0.6 of its memory
(``benchmarks/lean_crossover.py``)."""


class LastBlock(NamedTuple):
    """The last block's part of a lean evaluation
    (:meth:`PETNetwork._lean_last_block`)."""

    energies: torch.Tensor
    """``(n_atoms, 1)``: its contribution to the predictions"""
    gradients: BlockGradients
    """gradients of the total with respect to its inputs"""
    cutoffs: torch.Tensor
    """``(n_edges,)``: gradients with respect to the cutoff weights of the edges,
    through its bond heads"""
    frame_weights: torch.Tensor
    """``(n_rows,)``: with layer-wise ECSE, gradients with respect to the
    normalised weight of every row (its prediction); else empty"""


class PETNetwork(torch.nn.Module):
    """The neural part of PET with metatomic inputs and outputs.

    ``forward`` reads in five steps: flatten the systems, prepare the environments,
    run the message-passing blocks, read the predictions out, wrap them in
    ``TensorMap``.

    :param hypers: model hyper-parameters (see :class:`ModelHypers`)
    :param atomic_types: atomic numbers the model knows
    """

    rotate_environments: bool
    """In training mode, rotate every atomic environment by its own random rotation
    (App. F.10); set by the trainer for ``augmentation: environment``."""
    rotation_inversion: bool
    """Combine the per-environment rotations with random inversions."""
    atomic_inputs: List[str]
    """Names of the per-atom inputs read from the systems (``atomic_inputs``)."""
    lean_forces_above: int
    """Evaluate energies for forces and stress with the memory of one chunk's
    graph (:meth:`_lean_energies`) in batches whose evaluation would otherwise
    keep the graph of more than this many tokens, counted by :meth:`graph_tokens`:
    the graph of every block, or (1 - 1/blocks) of it where lean forces through
    the last block apply (0: always, -1: never); set by
    :func:`metatrain_pet.runtime.set_lean_forces`."""
    lean_last_block_above: int
    """Evaluate energies for forces and stress with lean forces through the last
    block only, keeping the graph of the others
    (:meth:`_lean_last_block_energies`), in batches of more than this many tokens
    (:meth:`graph_tokens`) that are not lean (see ``lean_forces_above``) and
    have no layer-wise ECSE frames (0: always, -1: never); set by
    :func:`metatrain_pet.runtime.set_lean_forces`."""
    graph_floats: int
    """Floats the graph of the blocks keeps per token, whatever the environment
    length (:func:`~metatrain_pet.nn.graph_memory.token_floats`)."""
    graph_floats_per_width: int
    """... and per token of the longest environment (attention coefficients)."""
    graph_unit_bytes: int
    """Bytes of the unit of :meth:`graph_tokens`."""

    def __init__(self, hypers: Dict, atomic_types: List[int]):
        super().__init__()
        self.rotate_environments = False
        self.rotation_inversion = False
        self.lean_forces_above = LEAN_FORCES_ABOVE
        self.lean_last_block_above = LEAN_LAST_BLOCK_ABOVE
        self.graph_floats, self.graph_floats_per_width = token_floats(hypers)
        self.graph_unit_bytes = 4 * REFERENCE_FLOATS
        self.atomic_types = sorted(atomic_types)
        self.cutoff = float(hypers["cutoff"])
        self.cutoff_width = float(hypers["cutoff_width"])
        if not self.cutoff > 0.0:
            raise ValueError(f"cutoff must be > 0 (in Å), got {self.cutoff}")
        if not 0.0 < self.cutoff_width <= self.cutoff:
            raise ValueError(
                f"cutoff_width must be in (0, cutoff], got {self.cutoff_width} "
                f"with cutoff {self.cutoff}"
            )
        self.use_only_lengths = bool(hypers["use_only_lengths"])
        self.encode_length = bool(hypers["encode_length"])
        self.radial_basis = int(hypers["radial_basis"])
        species_to_index = torch.full((max(self.atomic_types) + 1,), -1)
        for index, atomic_type in enumerate(self.atomic_types):
            species_to_index[atomic_type] = index
        self.register_buffer("species_to_index", species_to_index, persistent=False)

        num_blocks = int(hypers["num_gnn_layers"])
        self.atomic_inputs: List[str] = list(hypers["atomic_inputs"])
        self.system_conditioning = bool(hypers["system_conditioning"])
        self.input_features = InputFeatures(
            num_atomic=len(self.atomic_inputs),
            discretize=bool(hypers["discretize_atomic_inputs"]),
            conditioning=self.system_conditioning,
            max_charge=int(hypers["max_charge"]),
            max_multiplicity=int(hypers["max_spin_multiplicity"]),
        )
        self.message_passing = _message_passing(
            hypers,
            len(self.atomic_types),
            self._num_geometric_features(),
            self.input_features.num_features,
        )
        self.heads = Readout(
            d_pet=int(hypers["d_pet"]),
            d_readout=int(hypers["d_readout"]),
            num_blocks=num_blocks,
            last_block_only=hypers["readout"] == "last_block",
            average_bonds=hypers["bond_aggregation"] == "average",
        )
        self.layouts = torch.nn.ModuleDict()
        self.neighbor_list_options = NeighborListOptions(
            cutoff=self.cutoff, full_list=True, strict=True
        )
        self.long_range = LongRange(
            hypers["long_range"], int(hypers["d_pet"]), self.neighbor_list_options
        )

    def _num_geometric_features(self) -> int:
        if self.use_only_lengths:
            return 1 + self.radial_basis
        return (4 if self.encode_length else 3) + self.radial_basis

    def add_target(self, name: str, layout: TensorMap) -> None:
        target_layout = TargetLayout(name, layout)
        self.layouts[name] = target_layout
        self.heads.add_target(name, target_layout.num_values())

    def remove_target(self, name: str) -> None:
        del self.layouts[name]
        self.heads.remove_target(name)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbor_list_options]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
        frame_gradients: Optional[Dict[str, torch.Tensor]] = None,
    ) -> Dict[str, TensorMap]:
        """Per-atom (or summed per-structure) predictions of the requested targets,
        plus the ``feature`` and ``mtt::aux::<target>_last_layer_features`` outputs.

        :param frames: ``(atoms, rotations, weights)``, the ECSE frames of every
            atom of the batch sorted by atom, for layer-wise ECSE (App. F.10)
        :param frame_gradients: for frames computed without autograd (see
            :meth:`lean_frames_target`): the evaluation is lean, and this
            dictionary receives the gradients of the lean target's total with
            respect to the rotations (``"rotations"``) and weights (``"weights"``)
            of the frames, which the caller pulls back to the positions
        """
        batch = flatten_systems(systems, self.neighbor_list_options)
        self._check_inputs(batch)
        rotations = self._environment_rotations(batch, frames)
        features = self._input_features(systems, batch)
        environments = self._environments(batch, rotations, features)
        # the long-range part needs the charges, hence the tokens, of all atoms
        receptive = None if self.long_range.enabled else selected_atoms
        subsets = self._subsets(batch, environments, receptive)
        lean = self._lean_evaluation(
            outputs, environments, subsets, frames, frame_gradients
        )
        if lean is not None:
            tokens, predictions = lean
            last_layer_features: Dict[str, torch.Tensor] = {}
        else:
            tokens = self.long_range(
                systems, self.message_passing(environments, subsets, frames)
            )
            predictions, last_layer_features = self._read_out(
                outputs, environments, subsets, tokens, rotations
            )
        per_atom = self._tensor_maps(
            outputs,
            batch,
            environments,
            subsets[-1],
            tokens,
            predictions,
            last_layer_features,
        )
        if selected_atoms is not None and receptive is None:
            per_atom = _selected_only(per_atom, selected_atoms)
        return _per_sample_kind(per_atom, outputs, len(systems))

    def _lean_evaluation(
        self,
        outputs: Dict[str, ModelOutput],
        environments: Environments,
        subsets: List[AtomSubset],
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        frame_gradients: Optional[Dict[str, torch.Tensor]],
    ) -> Optional[Tuple[Tokens, Dict[str, torch.Tensor]]]:
        """Tokens and predictions of a lean evaluation (:meth:`_lean_energies`),
        or of one lean through the last block only
        (:meth:`_lean_last_block_energies`); None when the evaluation is
        neither and keeps the full graph."""
        tokens = self._batch_graph_tokens(environments, frames)
        last = self._lean_last_block_target(
            outputs, environments, subsets, frames, tokens
        )
        if last is not None:
            # the graph of every block but the last, rounded up
            blocks = len(self.message_passing.blocks)
            tokens = (tokens * (blocks - 1) + blocks - 1) // blocks
        lean = self._lean_target(
            outputs, environments, subsets, tokens, frame_gradients is not None
        )
        if lean is not None:
            return self._lean_energies(
                lean, environments, subsets, frames, frame_gradients
            )
        if last is not None:
            return self._lean_last_block_energies(last, environments, subsets)
        return None

    def _lean_target(
        self,
        outputs: Dict[str, ModelOutput],
        environments: Environments,
        subsets: List[AtomSubset],
        kept_tokens: int,
        forced: bool,
    ) -> Optional[str]:
        """The target of a lean evaluation (:meth:`_lean_energies`), or None when
        the evaluation is not one: the graph it would keep otherwise at most
        ``lean_forces_above`` tokens (``kept_tokens``, see
        :attr:`lean_forces_above`), positions and cell not requiring gradients,
        or no :meth:`_lean_output`. ``forced`` (frames without autograd) skips
        the first two conditions."""
        if forced:
            name = self._lean_output(outputs, subsets[-1].atoms is None)
            if name is None:
                raise ValueError("frames without autograd need a lean evaluation")
            return name
        if self.lean_forces_above < 0 or kept_tokens <= self.lean_forces_above:
            return None
        if not environments.geometry.requires_grad:
            return None
        return self._lean_output(outputs, subsets[-1].atoms is None)

    def _lean_last_block_target(
        self,
        outputs: Dict[str, ModelOutput],
        environments: Environments,
        subsets: List[AtomSubset],
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        tokens: int,
    ) -> Optional[str]:
        """The target of an evaluation whose last block alone is lean
        (:meth:`_lean_last_block_energies`) unless the whole evaluation is, or
        None: without layer-wise ECSE, with positions or cell requiring
        gradients, at least two blocks and more than ``lean_last_block_above``
        ``tokens`` (:meth:`_batch_graph_tokens`)."""
        if frames is not None or len(self.message_passing.blocks) < 2:
            return None
        if self.lean_last_block_above < 0 or not environments.geometry.requires_grad:
            return None
        if tokens <= self.lean_last_block_above:
            return None
        return self._lean_output(outputs, subsets[-1].atoms is None)

    def _batch_graph_tokens(
        self,
        environments: Environments,
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> int:
        """The batch's tokens (atoms, or (atom, frame) rows with layer-wise ECSE,
        times the longest environment) counted by :meth:`graph_tokens`."""
        rows = environments.token_weights.shape[0]
        if frames is not None:
            rows = frames[0].shape[0]
        width = environments.token_weights.shape[1]
        return self.graph_tokens(rows * width, width, environments.geometry)

    def graph_tokens(self, tokens: int, width: int, values: torch.Tensor) -> int:
        """``tokens`` in environments of ``width`` tokens, with the dtype of
        ``values``, counted in the unit of ``lean_forces_above``: the graph memory of
        a float32 token of the default model in liquid water
        (:mod:`~metatrain_pet.nn.graph_memory`). A float64 token counts twice, a
        token of a model twice as wide about twice, one of the small model (d_PET
        32, d_FF 64) about a third."""
        floats = self.graph_floats + self.graph_floats_per_width * width
        bytes_per_float = values.element_size()
        return tokens * floats * bytes_per_float // self.graph_unit_bytes

    def _lean_output(
        self, outputs: Dict[str, ModelOutput], all_atoms: bool
    ) -> Optional[str]:
        """The output a lean evaluation can compute: in evaluation mode, for all
        atoms and without long-range part, one scalar per-structure target alone
        (an energy); None otherwise."""
        if self.training or len(outputs) != 1 or not all_atoms:
            return None
        if self.long_range.enabled:
            return None
        for name, layout in self.layouts.items():
            if name in outputs and outputs[name].sample_kind == "system":
                if layout.num_values() == 1:
                    return name
        return None

    def lean_frames_target(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Optional[str]:
        """The target of an evaluation with layer-wise ECSE that will certainly be
        lean, so that its frames can be computed without autograd (and passed
        with ``frame_gradients``): positions or cell require gradients, a
        :meth:`_lean_output` exists, and even at the least two frames per atom
        (every frame comes with its mirror image) the rows hold more than
        ``lean_forces_above`` tokens (:meth:`graph_tokens`). None otherwise."""
        if self.lean_forces_above < 0:
            return None
        gradients = False
        for system in systems:
            gradients = gradients or system.positions.requires_grad
            gradients = gradients or system.cell.requires_grad
        name = self._lean_output(outputs, selected_atoms is None)
        if not gradients or name is None:
            return None
        n_atoms, width = 0, 1
        for system in systems:
            n_atoms += len(system)
            width = max(width, longest_environment(system, self.neighbor_list_options))
        tokens = self.graph_tokens(2 * n_atoms * width, width, systems[0].positions)
        if tokens <= self.lean_forces_above:
            return None
        return name

    def _lean_energies(
        self,
        name: str,
        environments: Environments,
        subsets: List[AtomSubset],
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        frame_gradients: Optional[Dict[str, torch.Tensor]],
    ) -> Tuple[Tokens, Dict[str, torch.Tensor]]:
        """Per-atom predictions of ``name`` whose sum per structure has the exact
        gradient with respect to positions and cell, without keeping the graph of
        the blocks.

        The blocks but the last run without autograd; the last runs once, chunk
        by chunk with its heads (:meth:`_lean_last_block`). The gradients g of
        the total with respect to every block's output tokens come from the
        heads, and :meth:`MessagePassing.pullback` carries them back, block by
        block and chunk by chunk, to the gradients G of the total with respect
        to the inputs x(r) of the blocks: the geometric input and cutoff weight of every
        edge, and with layer-wise ECSE the rotated geometric input and the weight
        of every (atom, frame) row. The prediction returned is E + G·x(r) −
        [G·x(r)]: equal to E, with gradient G ∂x/∂r. Only first derivatives are
        right (no Hessians through it). With ``frame_gradients``, the part of
        G·x(r) that goes through the frames is left to the caller."""
        detached = detached_environments(environments)
        fixed_frames = _detached(frames)
        rows: Optional[FrameRows] = None
        if fixed_frames is not None:
            output = subsets[-1]
            rows = output.frame_rows(fixed_frames, output.restrict(detached))
        with torch.no_grad():
            tokens = self.message_passing(
                detached, subsets, fixed_frames, len(self.message_passing.blocks) - 1
            )
        cutoffs = environments.edge_cutoffs.detach().requires_grad_()
        energies, grad_leaves = self._lean_readout(name, subsets, tokens, cutoffs, rows)
        n = len(tokens.central)
        upstream = [[grad_leaves[k], grad_leaves[n + k]] for k in range(n)]
        messages = self.message_passing.rebuilt_messages(detached, subsets, tokens)
        last = self._lean_last_block(name, detached, tokens, messages[-1], rows)
        input_grads = self.message_passing.pullback(
            detached, subsets, tokens, upstream, messages, last.gradients
        )
        frame_weights = last.frame_weights
        if rows is not None:
            frame_weights = frame_weights + grad_leaves[2 * n + 1]
            if n > 0:
                frame_weights = frame_weights + input_grads.frame_weights
        linear = _lean_linear_term(
            environments,
            [grad_leaves[2 * n] + last.cutoffs, input_grads.geometry, frame_weights],
            input_grads.token_weights,
            rows,
            frames,
            frame_gradients,
        )
        lean = energies + last.energies + (linear - linear.detach()).unsqueeze(1)
        return tokens, {name: lean}

    def _lean_last_block_energies(
        self, name: str, environments: Environments, subsets: List[AtomSubset]
    ) -> Tuple[Tokens, Dict[str, torch.Tensor]]:
        """Per-atom predictions of ``name`` whose sum per structure has the exact
        gradient with respect to positions and cell, keeping the graph of every
        block but the last: that one runs once, chunk by chunk with its heads
        (:meth:`_lean_last_block`), and the gradients g of the total with respect
        to its inputs x (messages, carried tokens, geometric inputs, cutoff
        weights) enter the prediction as g·x − [g·x], equal to zero, whose
        gradient autograd carries back through the other blocks' graph. No
        extra forward pass (unlike :meth:`_lean_energies`), for the memory of
        the other blocks' graph."""
        tokens = self.message_passing(
            environments, subsets, None, len(self.message_passing.blocks) - 1
        )
        view = subset_view(subsets, environments.edge_cutoffs)
        early = self.heads(tokens.central, tokens.edges, view, [name], [])[0]
        messages = self.message_passing.messages_of(environments, subsets, tokens)[-1]
        # the last block's chunks cut their inputs from this graph (chunk_inputs_of)
        last = self._lean_last_block(name, environments, tokens, messages, None)
        linear = _lean_linear_term(
            environments,
            [last.cutoffs, last.gradients.geometry],
            last.gradients.token_weights,
            None,
            None,
            None,
        )
        grad_messages, grad_carried = last.gradients.messages, last.gradients.carried
        if messages is not None and grad_messages is not None:
            per_edge = (messages * grad_messages).sum(dim=1)
            linear = linear + segment_sum(per_edge, environments.centers, len(linear))
        if self.message_passing.carry_central and grad_carried is not None:
            linear = linear + (tokens.central[-1] * grad_carried).sum(dim=1)
        energies = last.energies + (linear - linear.detach()).unsqueeze(1)
        if name in early:
            energies = energies + early[name]
        return tokens, {name: energies}

    def _lean_readout(
        self,
        name: str,
        subsets: List[AtomSubset],
        tokens: Tokens,
        cutoffs: torch.Tensor,
        rows: Optional[FrameRows],
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """Per-atom predictions of ``name`` read from the blocks in ``tokens``
        (computed without autograd; zeros when none of them is read), and their
        gradients with respect to every block's central then edge tokens (row
        tokens with layer-wise ECSE), the edge cutoffs, and with layer-wise ECSE
        (the ``rows`` of the atoms) the weights of the rows."""
        n_atoms = subsets[-1].n_atoms
        if rows is None:
            central = [t.requires_grad_() for t in tokens.central]
            edges = [t.requires_grad_() for t in tokens.edges]
            view = subset_view(subsets, cutoffs)
            leaves = central + edges + [cutoffs]
        else:
            central = [t.requires_grad_() for t in tokens.row_central]
            edges = [t.requires_grad_() for t in tokens.row_edges]
            weights = rows.weights.detach().requires_grad_()
            leaves = central + edges + [cutoffs, weights]
            view = subset_view(subsets, cutoffs)
            if len(central) > 0:
                view = frame_view(subsets, tokens.frame_rows, cutoffs)
        predictions = self.heads(central, edges, view, [name], [])[0]
        if name not in predictions:
            zeros = cutoffs.new_zeros((n_atoms, 1))
            return zeros, [torch.zeros_like(leaf) for leaf in leaves]
        energies = predictions[name]
        if rows is not None:
            weighted = FrameRows(
                rows.atoms, rows.rotations, leaves[-1], rows.edges, rows.edge_rows
            )
            energies = average_over_rows(energies, weighted, n_atoms)
        grads = torch.autograd.grad([energies.sum()], leaves, allow_unused=True)
        return energies.detach(), [or_zeros(g, leaf) for g, leaf in zip(grads, leaves)]

    def _lean_last_block(
        self,
        name: str,
        environments: Environments,
        tokens: Tokens,
        messages: Optional[torch.Tensor],
        rows: Optional[FrameRows],
    ) -> LastBlock:
        """The last block's part of a lean evaluation, evaluated once: chunk by
        chunk (:meth:`_last_block_chunks`), its output tokens are read out by its
        heads and the gradients of the chunk's predictions taken at once, so that
        the block is not also run without autograd before its pullback. With
        layer-wise ECSE it runs on the (atom, frame) ``rows``, whose predictions
        are averaged with the frame weights.

        :param tokens: output tokens of the other blocks (all atoms)
        :param messages: the last block's input messages
        """
        carried: Optional[torch.Tensor] = None
        if self.message_passing.carry_central and len(tokens.central) > 0:
            carried = tokens.central[-1]
        if rows is None:
            ones = environments.token_weights.new_ones(
                (environments.token_weights.shape[0], 1)
            )
            energies, gradients, cutoffs = self._last_block_chunks(
                name, environments, [messages, carried], ones
            )
            return LastBlock(energies, gradients, cutoffs, ones[:0, 0])
        row_energies, row_gradients, row_cutoffs = self._last_block_chunks(
            name,
            rotated_environments(environments, rows),
            [
                None if messages is None else messages[rows.edges],
                None if carried is None else carried[rows.atoms],
            ],
            rows.weights.detach().unsqueeze(1),
        )
        n_atoms = environments.token_weights.shape[0]
        return LastBlock(
            average_over_rows(row_energies, rows, n_atoms),
            summed_over_rows(row_gradients, rows, environments, [messages, carried]),
            torch.zeros_like(environments.edge_cutoffs).index_add(
                0, rows.edges, row_cutoffs
            ),
            row_energies[:, 0],
        )

    def _last_block_chunks(
        self,
        name: str,
        environments: Environments,
        inputs: List[Optional[torch.Tensor]],
        weights: torch.Tensor,
    ) -> Tuple[torch.Tensor, BlockGradients, torch.Tensor]:
        """The last block on ``environments``, chunk by chunk, read out by its
        heads: the predictions of ``name`` ``(n_atoms, 1)``, and the gradients of
        their sum weighted by ``weights`` ``(n_atoms, 1)`` with respect to the
        block's inputs (geometry, token weights, then ``inputs``: messages and
        carried tokens, or None) and to the edge cutoffs."""
        messages, carried = inputs[0], inputs[1]
        all_cutoffs = environments.edge_cutoffs.detach()
        energies = torch.zeros_like(weights)
        grad_cutoffs = torch.zeros_like(all_cutoffs)
        totals = zero_block_gradients(environments, messages, carried)
        chunks = self.message_passing.blocks[-1].chunk_plan(environments)
        for c, atoms in enumerate(chunks.atoms):
            edges = chunks.edges[c]
            chunk = chunk_inputs_of(environments, messages, carried, chunks, c)
            central, edge_tokens = self.message_passing.blocks[-1].chunk_outputs(
                environments, chunk, chunks, c
            )
            cutoffs = all_cutoffs[edges].requires_grad_()
            energy = self.heads.read_last_block(
                name, central, edge_tokens, cutoffs, chunks.rows[c]
            )
            leaves = inputs_list(chunk) + [cutoffs]
            upstream: List[Optional[torch.Tensor]] = [weights[atoms]]
            grads = torch.autograd.grad([energy], leaves, upstream, allow_unused=True)
            energies[atoms] = energy.detach()
            grad_cutoffs[edges] = or_zeros(grads[-1], cutoffs)
            add_chunk_gradients(totals, grads[:-1], chunk, chunks, c)
        return energies, totals, grad_cutoffs

    def _read_out(
        self,
        outputs: Dict[str, ModelOutput],
        environments: Environments,
        subsets: List[AtomSubset],
        tokens: Tokens,
        rotations: Optional[torch.Tensor],
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Predictions and last-layer features of the requested targets for the
        atoms of the last subset, in the laboratory frame: read from the tokens, or
        with layer-wise ECSE from every (atom, frame) row, rotated back and
        averaged."""
        targets, last_layer_targets = self._requested(outputs)
        if len(tokens.frame_rows) == 0:
            view = subset_view(subsets, environments.edge_cutoffs)
            predictions, last_layer_features = self.heads(
                tokens.central, tokens.edges, view, targets, last_layer_targets
            )
            if rotations is not None:
                predictions = self._rotated_back(
                    predictions, subsets[-1].take_atoms(rotations)
                )
            return predictions, last_layer_features
        view = frame_view(subsets, tokens.frame_rows, environments.edge_cutoffs)
        predictions, last_layer_features = self.heads(
            tokens.row_central, tokens.row_edges, view, targets, last_layer_targets
        )
        return self._frame_averages(
            predictions, last_layer_features, tokens.frame_rows[-1], subsets[-1]
        )

    def _rotated_back(
        self, predictions: Dict[str, torch.Tensor], rotations: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        """Per-atom predictions made in the frames ``rotations`` (one per row),
        brought back to the laboratory frame."""
        rotated: Dict[str, torch.Tensor] = {}
        for name, layout in self.layouts.items():
            if name in predictions:
                rotated[name] = layout.rotate_back(predictions[name], rotations)
        return rotated

    def _frame_averages(
        self,
        predictions: Dict[str, torch.Tensor],
        last_layer_features: Dict[str, torch.Tensor],
        rows: FrameRows,
        output: AtomSubset,
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """Layer-wise ECSE: predictions of every (atom, frame) row rotated back
        and averaged with the frame weights (Eq. 17); last-layer features (all
        invariant) averaged."""
        averaged: Dict[str, torch.Tensor] = {}
        for name, values in self._rotated_back(predictions, rows.rotations).items():
            averaged[name] = average_over_rows(values, rows, output.n_atoms)
        features: Dict[str, torch.Tensor] = {}
        for name, values in last_layer_features.items():
            features[name] = average_over_rows(values, rows, output.n_atoms)
        return averaged, features

    def _tensor_maps(
        self,
        outputs: Dict[str, ModelOutput],
        batch: SystemBatch,
        environments: Environments,
        output: AtomSubset,
        tokens: Tokens,
        predictions: Dict[str, torch.Tensor],
        last_layer_features: Dict[str, torch.Tensor],
    ) -> Dict[str, TensorMap]:
        """Per-atom maps of the predictions, of the last-layer features and of the
        ``feature`` output, for the atoms of the last block's subset."""
        samples = per_atom_samples(batch, output)
        per_atom: Dict[str, TensorMap] = {}
        for name, layout in self.layouts.items():
            if name in predictions:
                per_atom[name] = layout.to_tensor_map(predictions[name], samples)
        for name, values in last_layer_features.items():
            per_atom[last_layer_features_name(name)] = features_tensor_map(
                values, samples
            )
        if "feature" in outputs:
            features = pet_features(
                tokens.central[-1],
                tokens.edges[-1],
                output.take_edges(environments.edge_cutoffs),
                output.centers,
            )
            per_atom["feature"] = features_tensor_map(features, samples)
        return per_atom

    def _check_inputs(self, batch: SystemBatch) -> None:
        if not bool(torch.all(torch.isfinite(batch.positions))):
            raise ValueError("the positions contain NaN or infinite values")
        types = batch.types
        known = types < self.species_to_index.shape[0]
        known_types = torch.where(known, types, torch.zeros_like(types))
        known = known & (types >= 0) & (self.species_to_index[known_types] >= 0)
        if not bool(torch.all(known)):
            unknown: List[int] = torch.unique(types[~known]).tolist()
            raise ValueError(
                f"unknown atomic types {unknown}: this model only knows the atomic "
                f"types {self.atomic_types}"
            )

    def _environment_rotations(
        self,
        batch: SystemBatch,
        frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    ) -> Optional[torch.Tensor]:
        """One random rotation R_i per atomic environment ``(n_atoms, 3, 3)`` in
        training mode with per-environment augmentation (App. F.10), else None
        (also with layer-wise ECSE, which makes the blocks invariant)."""
        if not (self.training and self.rotate_environments) or frames is not None:
            return None
        positions = batch.positions
        return random_rotations(
            positions.shape[0],
            self.rotation_inversion,
            positions.dtype,
            positions.device,
        )

    def _input_features(
        self, systems: List[System], batch: SystemBatch
    ) -> torch.Tensor:
        """``(n_atoms, n_features)``: the extra inputs of every atom as features
        (none without extra inputs)."""
        positions = batch.positions
        n_atoms, n_systems = positions.shape[0], len(systems)
        atomic = torch.zeros(
            (n_atoms, 0), dtype=positions.dtype, device=positions.device
        )
        if len(self.atomic_inputs) > 0:
            atomic = atomic_input_values(systems, self.atomic_inputs)
        charges = torch.zeros(n_systems, dtype=torch.long, device=positions.device)
        multiplicities = torch.ones_like(charges)
        if self.system_conditioning:
            charges = system_input_values(systems, "charge")
            multiplicities = system_input_values(systems, "spin_multiplicity")
        return self.input_features(
            atomic.to(positions.dtype), charges, multiplicities, batch.structure_of_atom
        )

    def requested_inputs(self) -> Dict[str, ModelOutput]:
        """The extra inputs this network reads from the systems."""
        requested: Dict[str, ModelOutput] = {}
        for name in self.atomic_inputs:
            requested[name] = ModelOutput(sample_kind="atom")
        if self.system_conditioning:
            for name in SYSTEM_INPUTS:
                requested[name] = ModelOutput(sample_kind="system")
        return requested

    def _environments(
        self,
        batch: SystemBatch,
        rotations: Optional[torch.Tensor],
        features: torch.Tensor,
    ) -> Environments:
        """PET's environments; every edge vector seen in its centre's frame
        ``R_i r_ij`` when environments are rotated."""
        vectors = batch.vectors
        if rotations is not None:
            vectors = torch.einsum("eab,eb->ea", rotations[batch.centers], vectors)
        return build_environments(
            vectors,
            batch.centers,
            batch.neighbors,
            batch.cell_shifts,
            self.species_to_index[batch.types],
            self.cutoff,
            self.cutoff_width,
            geometric_input(
                vectors,
                self.use_only_lengths,
                self.encode_length,
                self.radial_basis,
                self.cutoff,
            ),
            features,
            not self.use_only_lengths,
        )

    def _subsets(
        self,
        batch: SystemBatch,
        environments: Environments,
        selected_atoms: Optional[Labels],
    ) -> List[AtomSubset]:
        """The atoms each block must process: all, or with ``selected_atoms`` the
        receptive field of the selected atoms (:mod:`..nn.receptive_field`)."""
        n_atoms = batch.types.shape[0]
        num_blocks = len(self.message_passing.blocks)
        selected = torch.ones(n_atoms, dtype=torch.bool, device=batch.types.device)
        if selected_atoms is not None:
            selected = torch.zeros_like(selected)
            selected[selected_atom_indices(selected_atoms, batch)] = True
        if bool(selected.all()):
            return [
                AtomSubset(None, environments.centers, n_atoms)
                for _ in range(num_blocks)
            ]
        needed = atoms_needed_per_block(
            selected, environments.centers, batch.neighbors, num_blocks
        )
        return [AtomSubset(atoms, environments.centers, n_atoms) for atoms in needed]

    def _requested(
        self, outputs: Dict[str, ModelOutput]
    ) -> Tuple[List[str], List[str]]:
        """Targets whose values, and whose last-layer features, are requested."""
        targets: List[str] = []
        last_layer_targets: List[str] = []
        for name in self.layouts.keys():
            if name in outputs:
                targets.append(name)
            if last_layer_features_name(name) in outputs:
                last_layer_targets.append(name)
        return targets, last_layer_targets


def _detached(
    frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Layer-wise ECSE frames cut from the autograd graph of the positions."""
    if frames is None:
        return None
    return (frames[0], frames[1].detach(), frames[2].detach())


def _lean_linear_term(
    environments: Environments,
    gradients: List[torch.Tensor],
    token_weights: torch.Tensor,
    rows: Optional[FrameRows],
    frames: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    frame_gradients: Optional[Dict[str, torch.Tensor]],
) -> torch.Tensor:
    """Per atom, the lean linear term G·x(r) (:meth:`PETNetwork._lean_energies`)
    from the gradients with respect to the edge cutoffs (through the heads), the
    geometric inputs and, with layer-wise ECSE, the row weights (``gradients``),
    and with respect to the token weights (``token_weights``, through the
    blocks)."""
    centers, slots = environments.centers, environments.slots
    n_atoms = environments.token_weights.shape[0]
    grad_cutoffs = gradients[0] + token_weights[centers, slots + 1]
    linear = segment_sum(environments.edge_cutoffs * grad_cutoffs, centers, n_atoms)
    if rows is None or frames is None:
        geometry = (environments.geometry * gradients[1]).sum(dim=1)
        return linear + segment_sum(geometry, centers, n_atoms)
    return linear + _frame_linear_term(
        environments, rows, frames, gradients[1:], frame_gradients
    )


def _frame_linear_term(
    environments: Environments,
    rows: FrameRows,
    frames: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    gradients: List[torch.Tensor],
    frame_gradients: Optional[Dict[str, torch.Tensor]],
) -> torch.Tensor:
    """Per atom, the lean linear term G·x(r) of layer-wise ECSE, from the
    ``gradients`` with respect to the rotated geometric input R v of every row
    edge and to the normalised weight of every row: through v (laboratory inputs
    of the edges) and, unless ``frame_gradients`` takes them (frames computed
    without autograd, pulled back by the caller), through the rotations and raw
    weights of the ``frames``. ``rows`` are the blocks' rows of all atoms (built
    from the detached frames), one per frame."""
    n_atoms = environments.token_weights.shape[0]
    cartesian = environments.cartesian
    geometry = environments.geometry
    lab = geometry_gradients_in_lab(
        gradients[0], rows, cartesian, environments.centers.shape[0]
    )
    per_edge = (geometry * lab).sum(dim=1)
    linear = segment_sum(per_edge, environments.centers, n_atoms)
    rotations = rotation_gradients(geometry.detach(), gradients[0], rows, cartesian)
    weights = raw_weight_gradients(frames[2].detach(), rows, gradients[1], n_atoms)
    if frame_gradients is not None:
        frame_gradients["rotations"] = rotations
        frame_gradients["weights"] = weights
        return linear
    per_row = (frames[1] * rotations).sum(dim=(1, 2)) + frames[2] * weights
    return linear + segment_sum(per_row, rows.atoms, n_atoms)


def per_atom_samples(batch: SystemBatch, output: AtomSubset) -> Labels:
    """``(system, atom)`` samples of the atoms of ``output`` (all when None)."""
    atoms = output.atoms
    if atoms is None:
        atoms = torch.arange(batch.types.shape[0], device=batch.types.device)
    return atom_samples(batch, atoms)


def _per_sample_kind(
    per_atom: Dict[str, TensorMap], outputs: Dict[str, ModelOutput], n_systems: int
) -> Dict[str, TensorMap]:
    """Per-atom maps as requested: kept per atom, or summed per structure."""
    results: Dict[str, TensorMap] = {}
    for name, tensor_map in per_atom.items():
        if outputs[name].sample_kind == "system":
            tensor_map = sum_over_atoms(tensor_map, n_systems)
        results[name] = tensor_map
    return results


def _selected_only(
    per_atom: Dict[str, TensorMap], selected_atoms: Labels
) -> Dict[str, TensorMap]:
    """The samples of ``selected_atoms`` of every per-atom map, computed for all
    atoms (with the long-range part)."""
    results: Dict[str, TensorMap] = {}
    for name, tensor_map in per_atom.items():
        results[name] = mts.slice(tensor_map, "samples", selected_atoms)
    return results


def _message_passing(
    hypers: Dict, num_species: int, num_geometric: int, num_input_features: int
) -> MessagePassing:
    """The message-passing blocks that ``hypers`` describe."""
    return MessagePassing(
        num_species=num_species,
        num_geometric_features=num_geometric,
        d_pet=int(hypers["d_pet"]),
        num_heads=int(hypers["num_heads"]),
        d_feedforward=int(hypers["d_feedforward"]),
        num_attention_layers=int(hypers["num_attention_layers"]),
        num_blocks=int(hypers["num_gnn_layers"]),
        transformer=TransformerOptions(
            pre_norm=hypers["transformer_type"] == "PreLN",
            normalization=hypers["normalization"],
            activation=hypers["activation"],
            temperature=float(hypers["attention_temperature"]),
        ),
        species_as_first_message=bool(hypers["species_as_first_message"]),
        carry_central=bool(hypers["carry_central_token"]),
        num_input_features=num_input_features,
    )
