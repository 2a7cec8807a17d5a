"""``ECSEModel``: exact rotational symmetrization of any metatomic model (Sec. 5 and
App. F), and :func:`symmetrize` for exported models.

The wrapped model is evaluated on the input expressed in an ensemble of local frames
(one per ordered pair of neighbours, :mod:`.frames`), its outputs are rotated back and
averaged with smooth weights (:mod:`.outputs`). Frames and weights are differentiable
functions of the positions and cell, so forces and stress obtained by autograd are the
exact derivatives of the symmetrized energy.
"""

import itertools
import math
import warnings
from typing import Dict, List, Optional, Tuple

import metatensor.torch as mts
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelOutput,
    NeighborListOptions,
    System,
)
from metatomic.torch.o3 import random_transformations

from .ensemble import augment_frames, auxiliary_weight, prune_weights
from .frames import FrameBuilder
from .hypers import resolve_ecse_hypers
from .outputs import average_over_frames
from .systems import Environments, neighbor_vectors, rotated_systems, rows_of_segments

NUM_FRAMES_OUTPUT = "mtt::aux::ecse_num_frames"
"""Diagnostic output: number of frames the wrapped model was evaluated in, per
structure (the cost of ECSE relative to one evaluation)."""


def _cube_rotations() -> torch.Tensor:
    """The 24 proper rotations mapping a cube onto itself (signed permutation
    matrices of determinant 1). Their average of any l <= 3 spherical component is
    zero for l > 0, so averaging over them makes the scalar, vector and rank-2
    outputs of an isolated atom exactly invariant/covariant."""
    rotations = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product([1.0, -1.0], repeat=3):
            matrix = torch.zeros(3, 3, dtype=torch.float64)
            for row, column in enumerate(permutation):
                matrix[row, column] = signs[row]
            if torch.linalg.det(matrix) > 0:
                rotations.append(matrix)
    return torch.stack(rotations)


def _copy_options(options: NeighborListOptions) -> NeighborListOptions:
    return NeighborListOptions(options.cutoff, options.full_list, options.strict)


def _inner_module(model: torch.nn.Module) -> torch.nn.Module:
    if isinstance(model, AtomisticModel):
        return model.module
    return model


def _neighbor_lists(model: torch.nn.Module) -> List[NeighborListOptions]:
    """Copies of the neighbour lists ``model`` needs. An exported model knows them
    at the top level (its scripted module may not expose them any more)."""
    return [_copy_options(options) for options in model.requested_neighbor_lists()]


class ECSEModel(torch.nn.Module):
    """Equivariant Coordinate System Ensemble around a metatomic model.

    ``model`` is any module with the metatomic signature ``forward(systems, outputs,
    selected_atoms)`` and a ``requested_neighbor_lists()`` method (an
    ``AtomisticModel`` is unwrapped to its module). The parameters are the fields of
    :class:`~metatrain_pet.ecse.hypers.ECSEHypers`, given as a ``hypers`` dict and/or
    as keywords (keywords win); ``preset="tight"`` starts from the tight settings.

    Outputs with no components are averaged as invariants, ``xyz`` components as
    Cartesian vectors, ``xyz_1``/``xyz_2`` as rank-2 Cartesian tensors. In addition,
    :data:`NUM_FRAMES_OUTPUT` gives the number of frames used per structure.

    Structures (``global``) or environments (``per_atom``) with no neighbour within
    R_out (isolated atoms) are evaluated in the 24 rotations of the cube: the input of
    an isolated atom is the same in every frame, and this average makes its scalar,
    vector and rank-2 outputs exact. With ``fallback="aux"`` the auxiliary model
    gives them instead (Eq. 19 with no frames).
    """

    inner_options: List[NeighborListOptions]
    aux_options: List[NeighborListOptions]

    def __init__(
        self,
        model: torch.nn.Module,
        hypers: Optional[Dict] = None,
        aux_model: Optional[torch.nn.Module] = None,
        preset: str = "loose",
        **params,
    ):
        super().__init__()
        config = resolve_ecse_hypers(hypers, preset, **params)
        if aux_model is not None:
            if config["fallback"] == "none":
                config["fallback"] = "aux"
            if config["fallback"] != "aux":
                raise ValueError(
                    f"aux_model was given, but fallback is '{config['fallback']}'; "
                    "set fallback='aux' to use it"
                )
        elif config["fallback"] == "aux":
            raise ValueError("fallback='aux' needs an auxiliary model: pass aux_model=")

        self.num_frames_output = NUM_FRAMES_OUTPUT
        self.model = _inner_module(model)
        self.aux_model = None if aux_model is None else _inner_module(aux_model)
        self.per_atom = config["mode"] == "per_atom"
        self.fallback = str(config["fallback"])
        self.r_out = float(config["r_out"])
        self.frames = FrameBuilder(
            r_out=self.r_out,
            delta_r=float(config["delta_r"]),
            omega=float(config["omega"]),
            delta_omega=float(config["delta_omega"]),
            angular_cutoff=str(config["angular_cutoff"]),
            beta=float(config["beta"]),
            adaptive=self.fallback == "adaptive",
            beta_omega=float(config["beta_omega"]),
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

        extra = torch.eye(3, dtype=torch.float64).unsqueeze(0)
        n_extra = int(config["num_extra_rotations"])
        if n_extra > 0:
            generator = torch.Generator().manual_seed(int(config["seed"]))
            random = random_transformations(
                n_extra,
                device=torch.device("cpu"),
                dtype=torch.float64,
                generator=generator,
            )
            extra = torch.cat([extra, random.matrices])
        self.register_buffer("extra_rotations", extra)
        self.register_buffer("cube_rotations", _cube_rotations())
        self.register_buffer(
            "frame_types",
            torch.tensor(config["frame_types"], dtype=torch.int32),
            persistent=False,
        )

        self.inner_options = _neighbor_lists(model)
        self.aux_options = []
        if aux_model is not None:
            self.aux_options = _neighbor_lists(aux_model)
        self.search_radius = self.frames.search_radius()
        self.environment_radius = 0.0
        if self.per_atom:
            cutoffs = [options.cutoff for options in self.inner_options]
            self.environment_radius = max(cutoffs + [0.0])
        self.ecse_options = NeighborListOptions(
            cutoff=max(self.search_radius, self.environment_radius),
            full_list=True,
            strict=True,
        )

    def _frame_edges(
        self, distances: torch.Tensor, neighbor_types: torch.Tensor
    ) -> torch.Tensor:
        """Edges that may define frames: within the search radius, and to a
        neighbour of one of ``frame_types`` when these are given (App. F.5)."""
        usable = distances < self.search_radius
        if self.frame_types.shape[0] > 0:
            matches = neighbor_types.unsqueeze(1) == self.frame_types.unsqueeze(0)
            usable = usable & torch.any(matches, dim=1)
        return usable

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

    def interaction_range(self) -> float:
        """Interaction range of the symmetrized model.

        ``per_atom``: an atom's contribution depends on its neighbours within the
        frame search radius R_out + T(β) + Δ_Rc and within the wrapped model's
        cutoff. ``global``: a frame defined anywhere rotates the whole structure, so
        the range is infinite.
        """
        if self.per_atom:
            return max(self.search_radius, self.environment_radius)
        return math.inf

    @torch.jit.export
    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """ECSE's own full list (cutoff R_out + T(β) + Δ_Rc, or the wrapped model's
        cutoff in ``per_atom`` mode if larger) and the wrapped models' lists."""
        return [self.ecse_options] + self.inner_options + self.aux_options

    def _finish_pools(
        self,
        rotations: torch.Tensor,
        weights: torch.Tensor,
        pools: torch.Tensor,
        n_pools: int,
        needs_frame: torch.Tensor,
        kind: str,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Pruning (F.5), w_aux (Eq. 20), frames of empty pools, inversion and extra
        rotations (Eq. 25), for pools of frames that share one average.

        Inversion adds, for every frame F, the improper frame (v̂1, -û1, û2): û1 is
        a pseudovector, so this is how the frames of the inverted structure map
        onto those of the original, which makes the average O(3)-equivariant."""
        if self.pruning:
            weights = prune_weights(
                weights,
                pools,
                n_pools,
                self.beta_w,
                self.prune_threshold,
                self.prune_width,
                self.prune_activation,
                self.prune_activation_width,
            )
            kept = weights > 0.0
            rotations = rotations[kept]
            weights = weights[kept]
            pools = pools[kept]

        aux_weights: Optional[torch.Tensor] = None
        if self.fallback == "aux":
            aux_weights = auxiliary_weight(
                weights, pools, n_pools, self.beta_omega, self.t_aux, self.delta_aux
            )
        else:
            totals = torch.zeros(n_pools, dtype=weights.dtype, device=weights.device)
            totals = totals.index_add(0, pools, weights)
            empty = totals <= 0.0
            if self.fallback == "none":
                stuck = empty & needs_frame
                if bool(torch.any(stuck)):
                    index = int(torch.nonzero(stuck)[0, 0])
                    raise ValueError(
                        "ECSE: " + kind + " " + str(index) + " has fewer than two "
                        "non-collinear neighbours within r_out="
                        + str(self.r_out)
                        + ", so no local frame can be built; set fallback='adaptive' "
                        "or fallback='aux' (with aux_model=), or increase r_out"
                    )
            lonely = torch.nonzero(empty)[:, 0]
            cube = self.cube_rotations.to(rotations.dtype)
            n_cube = cube.shape[0]
            rotations = torch.cat([rotations, cube.repeat(lonely.shape[0], 1, 1)])
            weights = torch.cat(
                [
                    weights,
                    torch.ones(
                        n_cube * lonely.shape[0],
                        dtype=weights.dtype,
                        device=weights.device,
                    ),
                ]
            )
            pools = torch.cat([pools, lonely.repeat_interleave(n_cube)])

        if self.inversion:
            mirror = torch.tensor(
                [1.0, -1.0, 1.0], dtype=rotations.dtype, device=rotations.device
            )
            rotations = torch.cat([rotations, rotations * mirror.view(1, 3, 1)])
            weights = torch.cat([weights, weights])
            pools = torch.cat([pools, pools])
        extra = self.extra_rotations.to(rotations.dtype)
        n_extra = extra.shape[0]
        if n_extra > 1:
            rotations = augment_frames(rotations, extra).reshape(-1, 3, 3)
            weights = weights.repeat(n_extra)
            pools = pools.repeat(n_extra)

        order = torch.argsort(pools, stable=True)
        return rotations[order], weights[order], pools[order], aux_weights

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        if len(systems) == 0:
            raise ValueError("ECSEModel needs at least one system")
        requested: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            if name == self.num_frames_output:
                if output.sample_kind != "system":
                    raise ValueError(name + " is only available per system")
            else:
                requested[name] = output

        device = systems[0].positions.device
        centers: List[torch.Tensor] = []
        neighbors: List[torch.Tensor] = []
        vectors: List[torch.Tensor] = []
        types: List[torch.Tensor] = []
        sizes: List[int] = []
        offset = 0
        for system in systems:
            nl, system_vectors = neighbor_vectors(system, self.ecse_options)
            distances = torch.linalg.norm(system_vectors, dim=-1)
            kept = (distances > 0.0) & (distances < self.ecse_options.cutoff)
            samples = nl.samples.values
            centers.append(samples[kept, 0].to(torch.long) + offset)
            neighbors.append(samples[kept, 1].to(torch.long) + offset)
            vectors.append(system_vectors[kept])
            types.append(system.types)
            sizes.append(len(system))
            offset += len(system)
        all_centers = torch.cat(centers)
        all_neighbors = torch.cat(neighbors)
        all_vectors = torch.cat(vectors)
        all_types = torch.cat(types)
        sizes_t = torch.tensor(sizes, device=device)
        atom_offsets = torch.cumsum(sizes_t, 0) - sizes_t
        system_of_atom = torch.repeat_interleave(
            torch.arange(len(systems), device=device), sizes_t
        )

        if self.per_atom:
            results, frame_systems = self._per_atom(
                systems,
                requested,
                selected_atoms,
                all_centers,
                all_neighbors,
                all_vectors,
                all_types,
                atom_offsets,
                system_of_atom,
            )
        else:
            results, frame_systems = self._global(
                systems,
                requested,
                selected_atoms,
                all_centers,
                all_vectors,
                all_types[all_neighbors],
                system_of_atom,
            )

        if self.num_frames_output in outputs:
            counts = torch.zeros(
                len(systems), dtype=systems[0].positions.dtype, device=device
            ).index_add(
                0,
                frame_systems,
                torch.ones_like(frame_systems, dtype=systems[0].positions.dtype),
            )
            results[self.num_frames_output] = TensorMap(
                Labels("_", torch.zeros((1, 1), dtype=torch.int32, device=device)),
                [
                    TensorBlock(
                        values=counts.unsqueeze(-1),
                        samples=Labels(
                            "system",
                            torch.arange(len(systems), device=device).reshape(-1, 1),
                        ),
                        components=[],
                        properties=Labels(
                            "num_frames",
                            torch.zeros((1, 1), dtype=torch.int32, device=device),
                        ),
                    )
                ],
            )
        return results

    def _global(
        self,
        systems: List[System],
        requested: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
        centers: torch.Tensor,
        vectors: torch.Tensor,
        neighbor_types: torch.Tensor,
        system_of_atom: torch.Tensor,
    ) -> Tuple[Dict[str, TensorMap], torch.Tensor]:
        """One pool of frames per structure (App. F.10); the wrapped model sees each
        whole structure in each of its frames, in a single batched call."""
        n_systems = len(systems)
        in_search = self._frame_edges(
            torch.linalg.norm(vectors, dim=-1), neighbor_types
        )
        frame_centers, rotations, weights = self.frames(
            centers[in_search], vectors[in_search], system_of_atom.shape[0]
        )
        pools = system_of_atom[frame_centers]
        close = torch.linalg.norm(vectors, dim=-1) < self.r_out
        needs_frame = torch.zeros(n_systems, dtype=torch.bool, device=vectors.device)
        needs_frame = needs_frame.index_fill(0, system_of_atom[centers[close]], True)
        rotations, weights, pools, aux_weights = self._finish_pools(
            rotations, weights, pools, n_systems, needs_frame, "structure"
        )

        results: Dict[str, TensorMap] = {}
        aux_results: Dict[str, TensorMap] = {}
        aux_model = self.aux_model
        if aux_model is not None and len(requested) != 0:
            aux_results = aux_model(systems, requested, selected_atoms)

        if pools.shape[0] == 0 or len(requested) == 0:
            for name in requested:
                results[name] = aux_results[name]
            return results, pools

        frame_starts: List[int] = torch.cumsum(
            torch.bincount(pools, minlength=n_systems), 0
        ).tolist()
        copies: List[System] = []
        start = 0
        for index, system in enumerate(systems):
            stop: int = frame_starts[index]
            if stop > start:
                copies.extend(
                    rotated_systems(system, rotations[start:stop], self.inner_options)
                )
            start = stop

        inner_selected: Optional[Labels] = None
        if selected_atoms is not None:
            selection = selected_atoms.values
            order = torch.argsort(selection[:, 0], stable=True)
            selection = selection[order]
            selection_starts = torch.cumsum(
                torch.bincount(selection[:, 0].to(torch.long), minlength=n_systems), 0
            )
            selection_stops: List[int] = selection_starts.tolist()
            starts: List[int] = [0] + selection_stops
            frame, row = rows_of_segments(pools, starts)
            inner_values = torch.stack(
                [frame.to(selection.dtype), selection[row, 1]], dim=1
            )
            inner_selected = Labels(selected_atoms.names, inner_values)

        inner = self.model(copies, requested, inner_selected)
        for name in requested:
            aux_tensor: Optional[TensorMap] = None
            if name in aux_results:
                aux_tensor = aux_results[name]
            results[name] = average_over_frames(
                name,
                inner[name],
                rotations,
                weights,
                pools,
                None,
                aux_tensor,
                aux_weights,
                None,
            )
        return results, pools

    def _per_atom(
        self,
        systems: List[System],
        requested: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        vectors: torch.Tensor,
        types: torch.Tensor,
        atom_offsets: torch.Tensor,
        system_of_atom: torch.Tensor,
    ) -> Tuple[Dict[str, TensorMap], torch.Tensor]:
        """One pool of frames per atomic environment (Eq. 17): each atom's
        contribution is predicted from its own environment, cut out of the structure
        and seen in that environment's frames."""
        n_atoms = types.shape[0]
        if selected_atoms is None:
            center_atoms = torch.arange(n_atoms, device=types.device)
        else:
            selection = selected_atoms.values.to(torch.long)
            center_atoms = atom_offsets[selection[:, 0]] + selection[:, 1]
        n_centers = center_atoms.shape[0]
        environment_of_atom = torch.full_like(types, -1, dtype=torch.long)
        environment_of_atom[center_atoms] = torch.arange(n_centers, device=types.device)
        edge_environments = environment_of_atom[centers]
        owned = edge_environments >= 0
        edge_environments = edge_environments[owned]
        vectors = vectors[owned]
        edge_types = types[neighbors[owned]]

        distances = torch.linalg.norm(vectors, dim=-1)
        in_search = self._frame_edges(distances, edge_types)
        pools, rotations, weights = self.frames(
            edge_environments[in_search], vectors[in_search], n_centers
        )
        needs_frame = torch.zeros(n_centers, dtype=torch.bool, device=types.device)
        needs_frame = needs_frame.index_fill(
            0, edge_environments[distances < self.r_out], True
        )
        rotations, weights, pools, aux_weights = self._finish_pools(
            rotations, weights, pools, n_centers, needs_frame, "atom"
        )
        frame_atoms = center_atoms[pools]
        frame_systems = system_of_atom[frame_atoms]

        per_atom_requests: Dict[str, ModelOutput] = {}
        for name, output in requested.items():
            per_atom_requests[name] = ModelOutput(
                unit=output.unit, sample_kind="atom", explicit_gradients=[]
            )

        results: Dict[str, TensorMap] = {}
        if len(requested) == 0:
            return results, frame_systems

        aux_results: Dict[str, TensorMap] = {}
        aux_weight_of_atom: Optional[torch.Tensor] = None
        aux_model = self.aux_model
        if aux_model is not None and aux_weights is not None:
            aux_results = aux_model(systems, per_atom_requests, selected_atoms)
            aux_weight_of_atom = torch.zeros(
                n_atoms, dtype=aux_weights.dtype, device=aux_weights.device
            )
            aux_weight_of_atom[center_atoms] = aux_weights

        averaged: Dict[str, TensorMap] = {}
        if pools.shape[0] == 0:
            averaged = aux_results
        else:
            environments = Environments(
                types[center_atoms],
                edge_environments,
                edge_types,
                vectors,
                self.environment_radius,
                self.inner_options,
            )
            copies = environments.rotated(pools, rotations)
            n_frames = pools.shape[0]
            inner_selected = Labels(
                ["system", "atom"],
                torch.stack(
                    [
                        torch.arange(n_frames, device=types.device),
                        torch.zeros(n_frames, dtype=torch.long, device=types.device),
                    ],
                    dim=1,
                ).to(torch.int32),
            )
            inner = self.model(copies, per_atom_requests, inner_selected)
            for name in requested:
                aux_tensor: Optional[TensorMap] = None
                if name in aux_results:
                    aux_tensor = aux_results[name]
                averaged[name] = average_over_frames(
                    name,
                    inner[name],
                    rotations,
                    weights,
                    frame_systems,
                    frame_atoms - atom_offsets[frame_systems],
                    aux_tensor,
                    aux_weight_of_atom,
                    atom_offsets,
                )

        for name, output in requested.items():
            if output.sample_kind == "system":
                results[name] = mts.sum_over_samples(averaged[name], ["atom"])
            else:
                results[name] = averaged[name]
        return results, frame_systems


def symmetrize(
    atomistic_model: AtomisticModel,
    hypers: Optional[Dict] = None,
    aux_model: Optional[AtomisticModel] = None,
    preset: str = "loose",
    **params,
) -> AtomisticModel:
    """Wrap an exported model with ECSE and return a new exported model.

    Metadata, units, atomic types, devices and outputs are kept; the output
    :data:`NUM_FRAMES_OUTPUT` is added; the interaction range becomes that of
    :meth:`ECSEModel.interaction_range`. The parameters are those of
    :class:`ECSEModel`.
    """
    if not isinstance(atomistic_model, AtomisticModel):
        raise TypeError(
            "symmetrize expects an AtomisticModel, e.g. from load_atomistic_model"
        )
    capabilities = atomistic_model.capabilities()
    if aux_model is not None:
        _check_aux_compatible(capabilities, aux_model.capabilities())

    wrapper = ECSEModel(
        atomistic_model, hypers, aux_model=aux_model, preset=preset, **params
    )
    wrapper.warn_if_truncated(capabilities.interaction_range)
    declared = getattr(
        atomistic_model,
        "_model_capabilities_outputs_names",
        list(capabilities.outputs.keys()),
    )
    outputs: Dict[str, ModelOutput] = {
        name: capabilities.outputs[name] for name in declared
    }
    outputs[NUM_FRAMES_OUTPUT] = ModelOutput(
        unit="",
        sample_kind="system",
        description="number of ECSE frames the wrapped model was evaluated in",
    )
    new_capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=capabilities.atomic_types,
        interaction_range=wrapper.interaction_range(),
        length_unit=capabilities.length_unit,
        supported_devices=capabilities.supported_devices,
        dtype=capabilities.dtype,
    )
    return AtomisticModel(
        wrapper.eval(), atomistic_model.metadata(), capabilities=new_capabilities
    )


def _check_aux_compatible(main: ModelCapabilities, aux: ModelCapabilities) -> None:
    if aux.length_unit != main.length_unit:
        raise ValueError(
            f"the auxiliary model uses length unit '{aux.length_unit}', the model "
            f"'{main.length_unit}'"
        )
    if aux.dtype != main.dtype:
        raise ValueError(
            f"the auxiliary model uses dtype {aux.dtype}, the model {main.dtype}"
        )
    missing = sorted(set(main.atomic_types) - set(aux.atomic_types))
    if missing:
        raise ValueError(f"the auxiliary model does not support atomic types {missing}")
