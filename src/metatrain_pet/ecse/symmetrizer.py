"""The ECSE protocol without the model it symmetrizes: frames and weights, the
inputs to evaluate, and the averages of the outputs (Sec. 5 and App. F).

For a model ``f`` and an ensemble of local frames ``F`` with weights ``w_F``, the
symmetrized prediction of a pool (a structure in ``global`` mode, an atomic
environment in ``per_atom`` mode) is (Eq. 17)

    y(A) = Σ_F w_F F⁻¹ · f(F · A) / Σ_F w_F,

with one frame per ordered pair of neighbours (Eq. 18, :mod:`.frames`), pools
finished in named steps (:mod:`.ensemble`), rows rotated back with their frame
and averaged (:mod:`.outputs`). Frames and weights are differentiable functions
of positions and cell, so forces and stress by autograd are the exact derivatives
of the symmetrized energy.

The owner of a :class:`Symmetrizer` evaluates the model between :meth:`plan` and
:meth:`average`: :class:`~.wrapper.ECSEModel` around any metatomic model, or PET
around its own network (which is then stored once).
"""

import math
import warnings
from typing import Dict, List, NamedTuple, Optional, Tuple

import metatensor.torch as mts
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from ..geometry.rotations import cube_rotations, random_rotations
from ..geometry.segments import rows_of_segments, segment_offsets, segment_sum
from ..systems.batch import (
    SystemBatch,
    atom_samples,
    flatten_systems,
    selected_atom_indices,
)
from ..systems.transform import rotated_copies
from .ensemble import (
    Frames,
    add_extra_rotations,
    add_inversion,
    add_isolated_frames,
    auxiliary_weight,
    drop_empty_frames,
    pools_without_frames,
    prune_weights,
    sort_by_pool,
)
from .environments import CutOutEnvironments
from .frames import FrameBuilder
from .hypers import ADAPTIVE_FALLBACKS
from .outputs import OutputLayout, average_over_frames

NUM_FRAMES_OUTPUT = "mtt::aux::ecse_num_frames"
"""Diagnostic output: number of frames the wrapped model was evaluated in, per
structure (the cost of ECSE relative to one evaluation)."""


class FramePlan(NamedTuple):
    """What to evaluate, and how to average it."""

    systems: List[System]
    """one input per frame: the structure (``global``) or the cut-out environment
    (``per_atom``) seen in that frame"""
    requests: Dict[str, ModelOutput]
    """outputs to ask the model for (per atom in ``per_atom`` mode)"""
    selected_atoms: Optional[Labels]
    """atoms the model must predict, per frame"""
    evaluate: bool
    """whether the model has anything to compute"""
    frames: Frames
    layout: OutputLayout
    frame_systems: torch.Tensor
    """structure of every frame"""
    aux_weights: Optional[torch.Tensor]
    """w_aux of every pool (Eq. 20), with ``fallback="aux"``"""


class Symmetrizer(torch.nn.Module):
    """ECSE's frames and averages, for resolved parameters ``config`` (see
    :func:`~.hypers.resolve_ecse_hypers`) around a model that needs the neighbour
    lists ``inner_options``."""

    inner_options: List[NeighborListOptions]

    def __init__(self, config: Dict, inner_options: List[NeighborListOptions]):
        super().__init__()
        self.num_frames_output = NUM_FRAMES_OUTPUT
        self.per_atom = config["mode"] == "per_atom"
        self.layerwise = config["mode"] == "layerwise"
        self.fallback = str(config["fallback"])
        self.r_out = float(config["r_out"])
        self.frame_builder = FrameBuilder(
            r_out=self.r_out,
            delta_r=float(config["delta_r"]),
            omega=float(config["omega"]),
            delta_omega=float(config["delta_omega"]),
            angular_cutoff=str(config["angular_cutoff"]),
            beta=float(config["beta"]),
            adaptive=self.fallback in ADAPTIVE_FALLBACKS,
            beta_omega=float(config["beta_omega"]),
            gradual_onset=bool(config["gradual_onset"]),
            near_collinear_only=self.fallback == "adaptive_near_collinear",
        )
        self.pruning = bool(config["pruning"])
        self.beta_w = float(config["beta_w"])
        self.prune_threshold = float(config["prune_threshold"])
        self.prune_width = float(config["prune_width"])
        self.prune_activation = float(config["prune_activation"])
        self.prune_activation_width = float(config["prune_activation_width"])
        self.beta_omega = float(config["beta_omega"])
        self.t_aux = float(config["t_aux"])
        self.delta_aux = float(config["delta_aux"])
        self.inversion = bool(config["inversion"])
        self.max_evaluated_pairs = int(config["max_evaluated_pairs"])
        # derived from the parameters, so not stored in state dicts: a network
        # trained without ECSE loads into one with ECSE
        self.register_buffer(
            "extra_rotations", _extra_rotations(config), persistent=False
        )
        self.register_buffer("cube_rotations", cube_rotations(), persistent=False)
        self.register_buffer(
            "frame_types",
            torch.tensor(config["frame_types"], dtype=torch.int32),
            persistent=False,
        )
        self.inner_options = inner_options
        self.search_radius = self.frame_builder.search_radius()
        self.environment_radius = 0.0
        if self.per_atom:
            cutoffs = [options.cutoff for options in inner_options]
            self.environment_radius = max(cutoffs + [0.0])
        self.ecse_options = NeighborListOptions(
            cutoff=max(self.search_radius, self.environment_radius),
            full_list=True,
            strict=True,
        )

    def interaction_range(self) -> float:
        """``per_atom``: an atom's contribution depends on its neighbours within the
        frame search radius R_out + T(β) + Δ_Rc and within the wrapped model's
        cutoff. ``global``: a frame defined anywhere rotates the whole structure,
        so the range is infinite."""
        if self.per_atom:
            return max(self.search_radius, self.environment_radius)
        return math.inf

    def warn_if_truncated(self, model_range: float) -> None:
        """In ``per_atom`` mode, warn when the wrapped model sees farther than the
        cut-out environments (message passing): each atom's prediction then differs
        from the raw model's, and jumps when an atom crosses the cut-out sphere."""
        if self.per_atom and model_range > self.environment_radius + 1e-6:
            warnings.warn(
                f"ECSE per_atom mode cuts environments at {self.environment_radius} "
                f"but the wrapped model's interaction range is {model_range} "
                "(message passing): the symmetrized model is not the raw model's "
                "function and is not continuous when an atom crosses the cut-out "
                "sphere; use mode='global' for this model",
                stacklevel=3,
            )

    def plan(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> FramePlan:
        """Frames of every pool and the inputs to evaluate in them."""
        if len(systems) == 0:
            raise ValueError("ECSE needs at least one system")
        if self.layerwise:
            raise ValueError(
                "ECSE mode 'layerwise' runs inside PET's blocks: use atom_frames()"
            )
        requests = self._inner_requests(outputs)
        batch = flatten_systems(systems, self.ecse_options)
        if self.per_atom:
            _refuse_extra_data(systems)
            return self._per_atom_plan(batch, requests, selected_atoms)
        return self._global_plan(systems, batch, requests, selected_atoms)

    def average(
        self,
        plan: FramePlan,
        evaluated: Dict[str, TensorMap],
        aux: Dict[str, TensorMap],
        outputs: Dict[str, ModelOutput],
    ) -> Dict[str, TensorMap]:
        """The symmetrized outputs from the model's outputs in every frame
        (``evaluated``) and, with ``fallback="aux"``, the auxiliary model's."""
        results: Dict[str, TensorMap] = {}
        for name in plan.requests.keys():
            if plan.frames.pools.shape[0] == 0:
                averaged = aux[name]
            else:
                aux_tensor: Optional[TensorMap] = None
                if name in aux:
                    aux_tensor = aux[name]
                averaged = average_over_frames(
                    name,
                    evaluated[name],
                    plan.frames,
                    plan.layout,
                    aux_tensor,
                    plan.aux_weights,
                )
            if self.per_atom and outputs[name].sample_kind == "system":
                averaged = mts.sum_over_samples(averaged, ["atom"])
            results[name] = averaged
        if self.num_frames_output in outputs:
            results[self.num_frames_output] = _frame_counts(
                plan.frame_systems,
                len(plan.layout.systems),
                plan.frames.rotations.dtype,
            )
        return results

    def _inner_requests(
        self, outputs: Dict[str, ModelOutput]
    ) -> Dict[str, ModelOutput]:
        """The outputs to evaluate in every frame: per atom in ``per_atom`` mode,
        without :data:`NUM_FRAMES_OUTPUT`."""
        requests: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            if name == self.num_frames_output:
                if output.sample_kind != "system":
                    raise ValueError(name + " is only available per system")
            elif self.per_atom:
                requests[name] = ModelOutput(
                    unit=output.unit, sample_kind="atom", explicit_gradients=[]
                )
            else:
                requests[name] = output
        return requests

    def _frame_edges(self, batch: SystemBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ECSE edges (non-zero, within the list's cutoff), and among them
        those that may define frames: within the search radius, and to a
        neighbour of one of ``frame_types`` when these are given (App. F.5)."""
        distances = torch.linalg.norm(batch.vectors, dim=-1)
        edges = (distances > 0.0) & (distances < self.ecse_options.cutoff)
        usable = distances < self.search_radius
        if self.frame_types.shape[0] > 0:
            types = batch.types[batch.neighbors].unsqueeze(1)
            usable = usable & torch.any(types == self.frame_types.unsqueeze(0), dim=1)
        return edges, edges & usable

    def _post_process_pools(
        self, frames: Frames, n_pools: int, needs_frame: torch.Tensor, kind: str
    ) -> Tuple[Frames, Optional[torch.Tensor]]:
        """Pruning (F.5), w_aux (Eq. 20) or the frames of isolated atoms, inversion
        and extra rotations (Eq. 25), frames sorted by pool."""
        if self.pruning:
            weights = prune_weights(
                frames.weights,
                frames.pools,
                n_pools,
                self.beta_w,
                self.prune_threshold,
                self.prune_width,
                self.prune_activation,
                self.prune_activation_width,
            )
            frames = drop_empty_frames(Frames(frames.rotations, weights, frames.pools))
        aux_weights: Optional[torch.Tensor] = None
        if self.fallback == "aux":
            aux_weights = auxiliary_weight(
                frames.weights,
                frames.pools,
                n_pools,
                self.beta_omega,
                self.t_aux,
                self.delta_aux,
            )
        else:
            empty = pools_without_frames(frames, n_pools)
            if self.fallback == "none":
                self._check_frames_exist(empty & needs_frame, kind)
            isolated = torch.nonzero(empty)[:, 0]
            frames = add_isolated_frames(frames, isolated, self.cube_rotations)
        if self.inversion:
            frames = add_inversion(frames)
        frames = add_extra_rotations(frames, self.extra_rotations)
        return sort_by_pool(frames), aux_weights

    def _check_global_cost(
        self, systems: List[System], frame_starts: List[int]
    ) -> None:
        """Stop before evaluating a structure in more frames than memory allows
        (``max_evaluated_pairs``), with the options that fit."""
        if self.max_evaluated_pairs <= 0 or len(self.inner_options) == 0:
            return
        for index, system in enumerate(systems):
            pairs = system.get_neighbor_list(self.inner_options[0]).values.shape[0]
            n_frames = frame_starts[index + 1] - frame_starts[index]
            if n_frames * max(pairs, len(system)) > self.max_evaluated_pairs:
                raise ValueError(
                    "ECSE global mode would evaluate structure "
                    + str(index)
                    + " ("
                    + str(len(system))
                    + " atoms, "
                    + str(pairs)
                    + " neighbour pairs) in "
                    + str(n_frames)
                    + " frames, "
                    + str(n_frames * pairs)
                    + " pairs in all (about "
                    + str(n_frames * pairs * 70 // 1000000)
                    + " GB with forces for a PET of default size), above "
                    "max_evaluated_pairs="
                    + str(self.max_evaluated_pairs)
                    + ": use mode='per_atom' (local models), mode='layerwise' "
                    "(PET checkpoints), or preset='tight'; raise "
                    "max_evaluated_pairs for a small model"
                )

    def _check_frames_exist(self, frameless: torch.Tensor, kind: str) -> None:
        if bool(torch.any(frameless)):
            index = int(torch.nonzero(frameless)[0, 0])
            raise ValueError(
                "ECSE: " + kind + " " + str(index) + " has fewer than two "
                "non-collinear neighbours within r_out=" + str(self.r_out) + ", so "
                "no local frame can be built; set fallback='adaptive' or "
                "fallback='aux' (with aux_model=), or increase r_out"
            )

    def _global_plan(
        self,
        systems: List[System],
        batch: SystemBatch,
        requests: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> FramePlan:
        """One pool of frames per structure (App. F.10): the model sees each whole
        structure in each of its frames, in a single batched call."""
        n_systems = len(systems)
        edges, usable = self._frame_edges(batch)
        frame_atoms, rotations, weights = self.frame_builder(
            batch.centers[usable], batch.vectors[usable], batch.types.shape[0]
        )
        frames = Frames(rotations, weights, batch.structure_of_atom[frame_atoms])
        close = edges & (torch.linalg.norm(batch.vectors, dim=-1) < self.r_out)
        needs_frame = torch.zeros(n_systems, dtype=torch.bool, device=weights.device)
        needs_frame[batch.structure_of_atom[batch.centers[close]]] = True
        frames, aux_weights = self._post_process_pools(
            frames, n_systems, needs_frame, "structure"
        )
        output_atoms = _output_atoms(batch, selected_atoms)
        frame_starts: List[int] = segment_offsets(frames.pools, n_systems).tolist()
        self._check_global_cost(systems, frame_starts)
        copies: List[System] = []
        for index, system in enumerate(systems):
            start, stop = frame_starts[index], frame_starts[index + 1]
            if stop > start:
                copies.extend(
                    rotated_copies(
                        system, frames.rotations[start:stop], self.inner_options
                    )
                )
        return FramePlan(
            systems=copies,
            requests=requests,
            selected_atoms=_selected_per_frame(batch, frames, selected_atoms),
            evaluate=len(copies) > 0 and len(requests) > 0,
            frames=frames,
            layout=_layout(batch, output_atoms, False),
            frame_systems=frames.pools,
            aux_weights=aux_weights,
        )

    def _per_atom_plan(
        self,
        batch: SystemBatch,
        requests: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> FramePlan:
        """One pool of frames per atomic environment (Eq. 17): each atom's
        contribution is predicted from its own environment, cut out of the
        structure and seen in that environment's frames."""
        output_atoms = _output_atoms(batch, selected_atoms)
        layout = _layout(batch, output_atoms, True)
        frames, aux_weights, owned = self._environment_frames(
            batch, layout.atom_rows, output_atoms.shape[0]
        )
        environments = CutOutEnvironments(
            batch.types[output_atoms],
            layout.atom_rows[batch.centers[owned]],
            batch.types[batch.neighbors[owned]],
            batch.vectors[owned],
            self.environment_radius,
            self.inner_options,
        )
        n_frames = frames.pools.shape[0]
        device = frames.weights.device
        first_atoms = torch.zeros((n_frames, 2), dtype=torch.int32, device=device)
        first_atoms[:, 0] = torch.arange(n_frames, device=device)
        return FramePlan(
            systems=environments.rotated(frames.pools, frames.rotations),
            requests=requests,
            selected_atoms=Labels(["system", "atom"], first_atoms),
            evaluate=n_frames > 0 and len(requests) > 0,
            frames=frames,
            layout=layout,
            frame_systems=batch.structure_of_atom[output_atoms[frames.pools]],
            aux_weights=aux_weights,
        )

    def atom_frames(self, systems: List[System]) -> Tuple[Frames, torch.Tensor]:
        """Layer-wise ECSE: the frames of every atom's environment (the pool of a
        frame is its atom, numbered across ``systems``; frames sorted by atom) and
        the structure of every frame."""
        batch = flatten_systems(systems, self.ecse_options)
        n_atoms = batch.types.shape[0]
        atoms = torch.arange(n_atoms, device=batch.types.device)
        frames, _, _ = self._environment_frames(batch, atoms, n_atoms)
        return frames, batch.structure_of_atom[frames.pools]

    def frame_counts(
        self, frame_systems: torch.Tensor, n_systems: int, dtype: torch.dtype
    ) -> TensorMap:
        """:data:`NUM_FRAMES_OUTPUT`: number of frames of every structure."""
        return _frame_counts(frame_systems, n_systems, dtype)

    def atom_frames_linear_term(
        self,
        systems: List[System],
        frame_atoms: torch.Tensor,
        rotation_gradients: torch.Tensor,
        weight_gradients: torch.Tensor,
    ) -> torch.Tensor:
        """Layer-wise ECSE with lean forces, for frames from :meth:`atom_frames`
        computed without autograd: per structure, a term whose gradient with
        respect to positions and cell is that of Σ_f R_f·G_R + w_f·G_w over all
        frames (the gradients G of the energy with respect to every frame's
        rotation and weight). The frames are rebuilt with autograd one chunk of
        about ``max_pairs`` neighbour pairs at a time, so that only one chunk's
        graph ever exists; their gradients with respect to the ECSE edge
        vectors v are accumulated into g, and the term returned is Σ v·g."""
        batch = flatten_systems(systems, self.ecse_options)
        n_atoms = batch.types.shape[0]
        edges, usable = self._frame_edges(batch)
        index = torch.nonzero(usable)[:, 0]
        centers = batch.centers[index]
        offsets = segment_offsets(centers, n_atoms)
        edge_offsets: List[int] = offsets.tolist()
        row_offsets: List[int] = segment_offsets(frame_atoms, n_atoms).tolist()
        needs_frame = self._needs_frame(batch, edges, batch.centers, n_atoms)
        vectors = batch.vectors.detach()
        gradients = torch.zeros_like(vectors)
        starts = self.frame_builder.chunk_starts(offsets, vectors.device)
        for c in range(len(starts) - 1):
            first, last = starts[c], starts[c + 1]
            chunk = index[edge_offsets[first] : edge_offsets[last]]
            leaf = vectors[chunk].requires_grad_()
            frames, _ = self._owned_frames(
                centers[edge_offsets[first] : edge_offsets[last]] - first,
                leaf,
                needs_frame[first:last],
                last - first,
            )
            rows = slice(row_offsets[first], row_offsets[last])
            if frames.weights.shape[0] != row_offsets[last] - row_offsets[first]:
                raise ValueError("ECSE frames differ between two evaluations")
            total = (frames.rotations * rotation_gradients[rows]).sum()
            total = total + (frames.weights * weight_gradients[rows]).sum()
            grad = torch.autograd.grad([total], [leaf], allow_unused=True)[0]
            if grad is not None:
                gradients[chunk] = grad
        per_edge = (batch.vectors * gradients).sum(dim=1)
        per_atom = segment_sum(per_edge, batch.centers, n_atoms)
        return segment_sum(per_atom, batch.structure_of_atom, len(systems))

    def _environment_frames(
        self, batch: SystemBatch, environment_of_atom: torch.Tensor, n_environments: int
    ) -> Tuple[Frames, Optional[torch.Tensor], torch.Tensor]:
        """Frames of the environments of some atoms (``environment_of_atom``: the
        environment of every atom, -1 for none), finished; also the mask of the
        edges these environments own."""
        edges, usable = self._frame_edges(batch)
        owner = environment_of_atom[batch.centers]
        edges = edges & (owner >= 0)
        usable = edges & usable
        needs_frame = self._needs_frame(batch, edges, owner, n_environments)
        frames, aux_weights = self._owned_frames(
            owner[usable], batch.vectors[usable], needs_frame, n_environments
        )
        return frames, aux_weights, edges

    def _needs_frame(
        self,
        batch: SystemBatch,
        edges: torch.Tensor,
        owner: torch.Tensor,
        n_environments: int,
    ) -> torch.Tensor:
        """Environments (``owner``: the environment of every edge) with one of
        ``edges`` shorter than R_out: those that need a frame of their own."""
        close = edges & (torch.linalg.norm(batch.vectors, dim=-1) < self.r_out)
        needs_frame = torch.zeros(n_environments, dtype=torch.bool, device=owner.device)
        needs_frame[owner[close]] = True
        return needs_frame

    def _owned_frames(
        self,
        owner: torch.Tensor,
        vectors: torch.Tensor,
        needs_frame: torch.Tensor,
        n_environments: int,
    ) -> Tuple[Frames, Optional[torch.Tensor]]:
        """Finished frames of environments from their frame-defining edges
        (``owner`` sorted, ``vectors``)."""
        pools, rotations, weights = self.frame_builder(owner, vectors, n_environments)
        return self._post_process_pools(
            Frames(rotations, weights, pools),
            n_environments,
            needs_frame,
            "atom",
        )


def _refuse_extra_data(systems: List[System]) -> None:
    """The environments that ``per_atom`` ECSE cuts out are new systems, which
    cannot carry the extra inputs of the structures (spins, charges)."""
    for system in systems:
        names = system.known_data()
        if len(names) > 0:
            raise ValueError(
                "ECSE mode 'per_atom' cuts environments out of their structures "
                f"and cannot give them the structures' extra inputs {names}: use "
                "the 'global' or 'layerwise' mode"
            )


def _extra_rotations(config: Dict) -> torch.Tensor:
    """The identity and ``num_extra_rotations`` fixed random rotations (Eq. 25),
    drawn from ``seed``."""
    identity = torch.eye(3, dtype=torch.float64).unsqueeze(0)
    n_extra = int(config["num_extra_rotations"])
    if n_extra == 0:
        return identity
    generator = torch.Generator().manual_seed(int(config["seed"]))
    random = random_rotations(
        n_extra, False, torch.float64, torch.device("cpu"), generator
    )
    return torch.cat([identity, random])


def _output_atoms(batch: SystemBatch, selected_atoms: Optional[Labels]) -> torch.Tensor:
    """Flat indices, sorted, of the atoms whose per-atom outputs are returned."""
    if selected_atoms is None:
        return torch.arange(batch.types.shape[0], device=batch.types.device)
    return selected_atom_indices(selected_atoms, batch)


def _layout(
    batch: SystemBatch, output_atoms: torch.Tensor, atom_pools: bool
) -> OutputLayout:
    device = batch.types.device
    n_systems = batch.cells.shape[0]
    atom_rows = torch.full_like(batch.types, -1, dtype=torch.long)
    atom_rows[output_atoms] = torch.arange(output_atoms.shape[0], device=device)
    systems = torch.arange(n_systems, dtype=torch.int32, device=device).unsqueeze(1)
    return OutputLayout(
        atom_pools=atom_pools,
        atom_offsets=batch.atom_offsets,
        atom_rows=atom_rows,
        systems=Labels(["system"], systems),
        atoms=atom_samples(batch, output_atoms),
    )


def _selected_per_frame(
    batch: SystemBatch, frames: Frames, selected_atoms: Optional[Labels]
) -> Optional[Labels]:
    """``selected_atoms`` for the rotated copies: every frame, the selected atoms
    of its structure."""
    if selected_atoms is None:
        return None
    atoms = selected_atom_indices(selected_atoms, batch)
    structures = batch.structure_of_atom[atoms]
    offsets = segment_offsets(structures, batch.cells.shape[0])
    frame, row = rows_of_segments(frames.pools, offsets)
    local = atoms[row] - batch.atom_offsets[structures[row]]
    values = torch.stack([frame, local], dim=1).to(torch.int32)
    return Labels(selected_atoms.names, values)


def _frame_counts(
    frame_systems: torch.Tensor, n_systems: int, dtype: torch.dtype
) -> TensorMap:
    """:data:`NUM_FRAMES_OUTPUT`: number of frames of every structure."""
    device = frame_systems.device
    ones = torch.ones_like(frame_systems, dtype=dtype)
    counts = segment_sum(ones, frame_systems, n_systems)
    zero = torch.zeros((1, 1), dtype=torch.int32, device=device)
    block = TensorBlock(
        values=counts.unsqueeze(-1),
        samples=Labels("system", torch.arange(n_systems, device=device).reshape(-1, 1)),
        components=[],
        properties=Labels("num_frames", zero),
    )
    return TensorMap(Labels("_", zero), [block])
