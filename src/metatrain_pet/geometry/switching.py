"""Smooth cutoff and smooth max/min functions of App. F.1 (Pozdnyakov & Ceriotti, 2023).

Every function is infinitely differentiable wherever the paper's definition is, is
exact on the constant pieces of the piecewise definitions, and stays finite (with
finite first and second derivatives) when evaluated on the constant pieces: the
transition formula is only ever evaluated on safe, clamped arguments.

The max/min functions act on segments: ``values[k]`` belongs to segment
``segments[k]``, and one result is returned per segment, so that thousands of
environments are reduced at once without Python loops.
"""

import torch

from .segments import segment_sum


def _switch_down(x: torch.Tensor) -> torch.Tensor:
    """Smooth step from 1 at ``x <= -1`` to 0 at ``x >= 1``.

    Inside (-1, 1) it is ½(tanh(1/(x+1) + 1/(x-1)) + 1), the common kernel of Eqs.
    9-11. Outside, the exact constants are returned and the kernel is evaluated on a
    harmless argument, so that neither value nor derivatives become NaN.
    """
    inside = (x > -1.0) & (x < 1.0)
    safe_x = torch.where(inside, x, torch.zeros_like(x))
    kernel = 0.5 * (torch.tanh(1.0 / (safe_x + 1.0) + 1.0 / (safe_x - 1.0)) + 1.0)
    below = torch.ones_like(x)
    above = torch.zeros_like(x)
    return torch.where(inside, kernel, torch.where(x <= -1.0, below, above))


def cutoff_fc(r: torch.Tensor, r_c: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Radial cutoff f_c(r | R_c, Δ_Rc) of Eq. 9.

    1 for r <= R_c - Δ, 0 for r >= R_c, and a C∞ tanh switch in between, with
    x = 2(r - R_c + Δ/2)/Δ. ``r_c`` and ``delta`` broadcast against ``r`` (the
    adaptive R_in of Eq. 23 is one value per environment). ``delta`` must be > 0.
    """
    x = 2.0 * (r - r_c + 0.5 * delta) / delta
    return _switch_down(x)


def angular_cutoff_q1(
    z: torch.Tensor, omega: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """Angular cutoff q_c^1(z | ω, Δ_ω) of Eq. 10.

    0 for z <= ω, 1 for z >= ω + Δ_ω, and the C∞ switch in between, with
    x = 2(z - ω - Δ_ω/2)/Δ_ω. Where ``delta`` is 0 (the exactly collinear limit of
    the adaptive ω of Eq. 21), the result is the step z > ω.
    """
    degenerate = delta <= 0.0
    safe_delta = torch.where(degenerate, torch.ones_like(delta), delta)
    x = 2.0 * (z - omega - 0.5 * safe_delta) / safe_delta
    switch = 1.0 - _switch_down(x)
    step = (z > omega).to(z.dtype)
    return torch.where(degenerate, step, switch)


def angular_cutoff_q2(
    z: torch.Tensor, omega: torch.Tensor, delta: torch.Tensor
) -> torch.Tensor:
    """Angular cutoff q_c^2(z | ω, Δ_ω) of Eq. 11.

    0 for z <= ω and z for z >= ω + Δ_ω: the switch of Eq. 10 multiplied by z, so that
    well-defined frames are favoured proportionally to |v̂1 × v̂2|², which makes the
    pruning of App. F.5 more effective.
    """
    return z * angular_cutoff_q1(z, omega, delta)


def smooth_max_weighted(
    values: torch.Tensor,
    weights: torch.Tensor,
    segments: torch.Tensor,
    n_segments: int,
    beta: float,
) -> torch.Tensor:
    """SmoothMaxWeighted({(x_k, p_k)} | β) of Eq. 15, once per segment.

    Σ exp(β x) p x / Σ exp(β x) p. The exponentials are shifted by the largest x of
    positive weight in each segment (a constant that cancels exactly), so the result
    neither overflows nor underflows, and points of zero weight change nothing
    (Eq. 16). A segment whose weights are all zero has no maximum and gives 0.
    A negative ``beta`` gives SmoothMinWeighted.
    """
    scaled = beta * values
    positive = weights > 0.0
    excluded = torch.full_like(scaled, -float("inf"))
    shift = scaled.new_full([n_segments], -float("inf"))
    shift = shift.scatter_reduce(
        0, segments, torch.where(positive, scaled, excluded).detach(), reduce="amax"
    )
    shift = torch.where(torch.isinf(shift), torch.zeros_like(shift), shift)
    exponent = torch.where(positive, scaled - shift[segments], torch.zeros_like(scaled))
    factors = torch.exp(exponent) * weights
    numerator = segment_sum(factors * values, segments, n_segments)
    denominator = segment_sum(factors, segments, n_segments)
    empty = denominator <= 0.0
    safe_denominator = torch.where(empty, torch.ones_like(denominator), denominator)
    return torch.where(empty, torch.zeros_like(numerator), numerator / safe_denominator)


def smooth_max(
    values: torch.Tensor, segments: torch.Tensor, n_segments: int, beta: float
) -> torch.Tensor:
    """SmoothMax({x_k} | β) of Eq. 12, once per segment: Eq. 15 with unit weights.

    It is below the true maximum and tends to it for β → ∞ (Eq. 13); for two numbers
    it is above ``max - T(β)`` (Eq. 14, see :func:`lambert_T`).
    """
    return smooth_max_weighted(
        values, torch.ones_like(values), segments, n_segments, beta
    )


def smooth_min_weighted(
    values: torch.Tensor,
    weights: torch.Tensor,
    segments: torch.Tensor,
    n_segments: int,
    beta: float,
) -> torch.Tensor:
    """SmoothMinWeighted: Eq. 15 with -β (App. F.1)."""
    return smooth_max_weighted(values, weights, segments, n_segments, -beta)


def smooth_min(
    values: torch.Tensor, segments: torch.Tensor, n_segments: int, beta: float
) -> torch.Tensor:
    """SmoothMin: Eq. 12 with -β (App. F.1)."""
    return smooth_max_weighted(
        values, torch.ones_like(values), segments, n_segments, -beta
    )


def lambert_T(beta: float) -> float:
    """T(β) = W(1/e)/β, the largest gap between max and SmoothMax of two numbers
    (Eq. 14). W(1/e) = 0.27846..., the Lambert W function at 1/e, solves
    w·exp(w) = 1/e."""
    return 0.2784645427610738 / beta
