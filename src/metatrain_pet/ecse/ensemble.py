"""Operations on pools of weighted frames (App. F.3, F.5, F.8 and Eqs. 17, 19).

A pool is the set of frames sharing one average: one environment in ``per_atom``
mode, one whole structure in ``global`` mode (App. F.10). ``pools[f]`` is the pool
of frame ``f``. After the frames of Eq. 18 are built, the pools are finished in
named steps: :func:`prune_weights` and :func:`drop_empty_frames`,
:func:`auxiliary_weight` or :func:`add_isolated_frames`, :func:`add_inversion`,
:func:`add_extra_rotations`, :func:`sort_by_pool`.
"""

from typing import NamedTuple, Optional

import torch

from ..geometry.segments import segment_sum
from ..geometry.switching import angular_cutoff_q1, cutoff_fc, smooth_max_weighted


class Frames(NamedTuple):
    """Weighted frames, each in one pool."""

    rotations: torch.Tensor
    """``(F, 3, 3)``: rows are the frame's axes, ``R r`` the coordinates in it"""
    weights: torch.Tensor
    """``(F,)``"""
    pools: torch.Tensor
    """``(F,)`` pool of every frame"""


def drop_empty_frames(frames: Frames) -> Frames:
    """Frames of zero weight (pruned) change no average: drop them."""
    kept = frames.weights > 0.0
    return Frames(frames.rotations[kept], frames.weights[kept], frames.pools[kept])


def pools_without_frames(frames: Frames, n_pools: int) -> torch.Tensor:
    """Boolean ``(n_pools,)``: pools whose frames have no total weight."""
    return segment_sum(frames.weights, frames.pools, n_pools) <= 0.0


def add_isolated_frames(
    frames: Frames, isolated: torch.Tensor, cube: torch.Tensor
) -> Frames:
    """Give every pool of ``isolated`` (indices) the rotations ``cube`` ``(C, 3, 3)``
    with weight 1: an isolated atom looks the same in every frame, and averaging
    over the 24 rotations of the cube makes its outputs exactly
    invariant/covariant (:func:`~metatrain_pet.geometry.rotations.cube_rotations`).
    """
    n_cube = cube.shape[0]
    cube = cube.to(frames.rotations.dtype)
    ones = torch.ones(
        n_cube * isolated.shape[0],
        dtype=frames.weights.dtype,
        device=frames.weights.device,
    )
    return Frames(
        torch.cat([frames.rotations, cube.repeat(isolated.shape[0], 1, 1)]),
        torch.cat([frames.weights, ones]),
        torch.cat([frames.pools, isolated.repeat_interleave(n_cube)]),
    )


def add_inversion(frames: Frames) -> Frames:
    """Add, for every frame (v̂1, û1, û2), the improper frame (v̂1, -û1, û2) with
    the same weight: û1 is a pseudovector, so these are the frames of the inverted
    structure, and the average becomes O(3)- rather than SO(3)-equivariant."""
    rotations = frames.rotations
    mirror = torch.tensor(
        [1.0, -1.0, 1.0], dtype=rotations.dtype, device=rotations.device
    )
    return Frames(
        torch.cat([rotations, rotations * mirror.view(1, 3, 1)]),
        torch.cat([frames.weights, frames.weights]),
        torch.cat([frames.pools, frames.pools]),
    )


def add_extra_rotations(frames: Frames, extra: torch.Tensor) -> Frames:
    """Every frame combined with the fixed rotations ``extra`` (Eq. 25, see
    :func:`augment_frames`); with the identity alone nothing changes."""
    n_extra = extra.shape[0]
    if n_extra <= 1:
        return frames
    extra = extra.to(frames.rotations.dtype)
    return Frames(
        augment_frames(frames.rotations, extra).reshape(-1, 3, 3),
        frames.weights.repeat(n_extra),
        frames.pools.repeat(n_extra),
    )


def sort_by_pool(frames: Frames) -> Frames:
    """Frames grouped by pool (stable), the order the evaluations are made in."""
    order = torch.argsort(frames.pools, stable=True)
    return Frames(frames.rotations[order], frames.weights[order], frames.pools[order])


def prune_weights(
    weights: torch.Tensor,
    pools: torch.Tensor,
    n_pools: int,
    beta_w: float,
    threshold: float,
    width: float,
    activation: float,
    activation_width: float,
) -> torch.Tensor:
    """Smooth pruning of the frames of small weight (App. F.5, steps 1-4).

    w_MAX = SmoothMaxWeighted({(w, w)} | β_w); f = q_c^1(w | T_f w_MAX, Δ_Tf w_MAX);
    e = f_c(w_MAX | T_e, Δ_Te); w ← e w + (1 - e) w f. Frames whose pruned weight is
    exactly zero can be dropped without changing the average.
    """
    w_max = smooth_max_weighted(weights, weights, pools, n_pools, beta_w)
    w_max_of_frame = w_max[pools]
    keep = angular_cutoff_q1(
        weights, threshold * w_max_of_frame, width * w_max_of_frame
    )
    activation_t = torch.full(
        [], activation, dtype=weights.dtype, device=weights.device
    )
    width_t = torch.full(
        [], activation_width, dtype=weights.dtype, device=weights.device
    )
    enabled = cutoff_fc(w_max_of_frame, activation_t, width_t)
    return enabled * weights + (1.0 - enabled) * weights * keep


def auxiliary_weight(
    weights: torch.Tensor,
    pools: torch.Tensor,
    n_pools: int,
    beta_omega: float,
    t_aux: float,
    delta_aux: float,
) -> torch.Tensor:
    """Weight w_aux of the auxiliary model in each pool (Eq. 20).

    w_aux = f_c(SmoothMaxWeighted({(w, w)} | β_ω) | t_aux, Δ_aux): 1 when no frame has
    a sizeable weight, 0 as soon as one does.
    """
    w_max = smooth_max_weighted(weights, weights, pools, n_pools, beta_omega)
    t_aux_t = torch.full([], t_aux, dtype=weights.dtype, device=weights.device)
    delta_t = torch.full([], delta_aux, dtype=weights.dtype, device=weights.device)
    return cutoff_fc(w_max, t_aux_t, delta_t)


def augment_frames(rotations: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """Combine every frame with a fixed set of rotations (Eq. 25).

    ``extra`` holds the N_aug rotations R_aug (the first one is usually the identity).
    The frame F combined with R_aug is R_augᵀ F: the environment seen in F, rotated
    back by R_aug. Returns the (N_aug, F, 3, 3) combined frames; each copy keeps the
    weight of its frame, so that the average carries the 1/N_aug of Eq. 25.
    """
    return torch.einsum("aji,fjk->afik", extra, rotations)


def ensemble_average(
    values: torch.Tensor,
    weights: torch.Tensor,
    pools: torch.Tensor,
    n_pools: int,
    aux_values: Optional[torch.Tensor],
    aux_weights: Optional[torch.Tensor],
) -> torch.Tensor:
    """Weighted average of back-rotated predictions (Eq. 17), with the auxiliary
    model blended in when given (Eq. 19).

    :param values: (F, ...) predictions of every frame, already rotated back to the
        lab frame
    :param weights: (F,) frame weights
    :param pools: (F,) pool of each frame
    :param aux_values: (n_pools, ...) predictions of the auxiliary model
    :param aux_weights: (n_pools,) w_aux of Eq. 20
    :return: (n_pools, ...) averages; a pool of zero total weight gives 0
    """
    broadcast = [-1] + [1] * (values.dim() - 1)
    # for invariants, average the differences to one value of the pool and add it
    # back: the same average, but single precision no longer rounds totals such as
    # -4200 eV (whose weight gradients (y_F - ȳ) would then be rounding noise)
    reference = values.new_zeros([n_pools] + list(values.shape[1:]))
    if values.dim() == 2:  # invariants (energies are large totals): any row
        reference = reference.index_copy(0, pools, values.detach())
    shifted = values - reference[pools]
    numerator = segment_sum(shifted * weights.view(broadcast), pools, n_pools)
    denominator = segment_sum(weights, pools, n_pools)
    if aux_values is not None and aux_weights is not None:
        numerator = numerator + (aux_values - reference) * aux_weights.view(broadcast)
        denominator = denominator + aux_weights
    empty = denominator <= 0.0
    safe = torch.where(empty, torch.ones_like(denominator), denominator)
    averaged = numerator / safe.view(broadcast) + reference
    return torch.where(empty.view(broadcast), torch.zeros_like(averaged), averaged)
