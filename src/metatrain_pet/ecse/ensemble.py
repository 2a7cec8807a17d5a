"""Operations on a pool of weighted frames (App. F.3, F.5, F.8 and Eqs. 17, 19).

A pool is a segment of frames sharing one average: one environment in ``per_atom``
mode, one whole structure in ``global`` mode (App. F.10). ``segments[f]`` is the pool
of frame ``f``.
"""

from typing import Optional

import torch

from ..geometry.switching import angular_cutoff_q1, cutoff_fc, smooth_max_weighted


def prune_weights(
    weights: torch.Tensor,
    segments: torch.Tensor,
    n_segments: int,
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
    w_max = smooth_max_weighted(weights, weights, segments, n_segments, beta_w)
    w_max_of_frame = w_max[segments]
    keep = angular_cutoff_q1(
        weights, threshold * w_max_of_frame, width * w_max_of_frame
    )
    activation_t = torch.tensor(activation, dtype=weights.dtype, device=weights.device)
    width_t = torch.tensor(activation_width, dtype=weights.dtype, device=weights.device)
    enabled = cutoff_fc(w_max_of_frame, activation_t, width_t)
    return enabled * weights + (1.0 - enabled) * weights * keep


def auxiliary_weight(
    weights: torch.Tensor,
    segments: torch.Tensor,
    n_segments: int,
    beta_omega: float,
    t_aux: float,
    delta_aux: float,
) -> torch.Tensor:
    """Weight w_aux of the auxiliary model in each pool (Eq. 20).

    w_aux = f_c(SmoothMaxWeighted({(w, w)} | β_ω) | t_aux, Δ_aux): 1 when no frame has
    a sizeable weight, 0 as soon as one does.
    """
    w_max = smooth_max_weighted(weights, weights, segments, n_segments, beta_omega)
    t_aux_t = torch.tensor(t_aux, dtype=weights.dtype, device=weights.device)
    delta_t = torch.tensor(delta_aux, dtype=weights.dtype, device=weights.device)
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
    segments: torch.Tensor,
    n_segments: int,
    aux_values: Optional[torch.Tensor],
    aux_weights: Optional[torch.Tensor],
) -> torch.Tensor:
    """Weighted average of back-rotated predictions (Eq. 17), with the auxiliary
    model blended in when given (Eq. 19).

    :param values: (F, ...) predictions of every frame, already rotated back to the
        lab frame
    :param weights: (F,) frame weights
    :param segments: (F,) pool of each frame
    :param aux_values: (n_segments, ...) predictions of the auxiliary model
    :param aux_weights: (n_segments,) w_aux of Eq. 20
    :return: (n_segments, ...) averages; a pool of zero total weight gives 0
    """
    shape = [n_segments] + list(values.shape[1:])
    broadcast = [-1] + [1] * (values.dim() - 1)
    numerator = torch.zeros(shape, dtype=values.dtype, device=values.device)
    numerator = numerator.index_add(0, segments, values * weights.view(broadcast))
    denominator = torch.zeros(n_segments, dtype=values.dtype, device=values.device)
    denominator = denominator.index_add(0, segments, weights)
    if aux_values is not None and aux_weights is not None:
        numerator = numerator + aux_values * aux_weights.view(broadcast)
        denominator = denominator + aux_weights
    empty = denominator <= 0.0
    safe = torch.where(empty, torch.ones_like(denominator), denominator)
    return numerator / safe.view(broadcast)
