"""Unit tests of the functions of App. F.1 (Eqs. 9-16)."""

import math

import pytest
import torch

from metatrain_pet.geometry.switching import (
    angular_cutoff_q1,
    angular_cutoff_q2,
    cutoff_fc,
    lambert_T,
    smooth_max,
    smooth_max_weighted,
    smooth_min,
    smooth_min_weighted,
)

DTYPE = torch.float64


def t(value):
    return torch.tensor(value, dtype=DTYPE)


def test_lambert_constant_solves_its_equation():
    w = lambert_T(1.0)
    assert w * math.exp(w) == pytest.approx(math.exp(-1.0), rel=1e-15)
    assert lambert_T(4.0) == pytest.approx(w / 4.0)


def test_cutoff_fc_pieces_and_symmetry():
    r = torch.linspace(0.0, 6.0, 601, dtype=DTYPE)
    f = cutoff_fc(r, t(5.0), t(0.5))
    assert torch.all(f[r <= 4.5] == 1.0)
    assert torch.all(f[r >= 5.0] == 0.0)
    assert torch.all((f >= 0.0) & (f <= 1.0))
    assert torch.all(f[1:] <= f[:-1])
    # the switch is antisymmetric about its middle, where it is 1/2
    x = torch.linspace(-0.2, 0.2, 41, dtype=DTYPE)
    assert torch.allclose(
        cutoff_fc(4.75 + x, t(5.0), t(0.5)) + cutoff_fc(4.75 - x, t(5.0), t(0.5)),
        torch.ones_like(x),
    )


def test_angular_cutoffs_pieces():
    z = torch.linspace(0.0, 1.0, 1001, dtype=DTYPE)
    q1 = angular_cutoff_q1(z, t(0.1), t(0.2))
    q2 = angular_cutoff_q2(z, t(0.1), t(0.2))
    assert torch.all(q1[z <= 0.1] == 0.0) and torch.all(q1[z >= 0.3] == 1.0)
    assert torch.all(q2[z <= 0.1] == 0.0)
    assert torch.equal(q2[z >= 0.3], z[z >= 0.3])
    assert torch.all(q1[1:] >= q1[:-1])
    # q1(z | ω, Δ) = 1 - f_c(z | ω + Δ, Δ)
    assert torch.allclose(q1, 1.0 - cutoff_fc(z, t(0.3), t(0.2)))


@pytest.mark.parametrize("edge", [4.5, 5.0])
def test_cutoff_derivatives_vanish_at_the_piece_boundaries(edge):
    """f_c is C∞: the first and second derivatives go to 0 at both ends of the
    switch, and are finite (not NaN) exactly at the boundaries."""
    for r0 in [edge - 1e-3, edge, edge + 1e-3]:
        r = t(r0).requires_grad_(True)
        f = cutoff_fc(r, t(5.0), t(0.5))
        (first,) = torch.autograd.grad(f, r, create_graph=True)
        (second,) = torch.autograd.grad(first, r)
        assert torch.isfinite(first) and torch.isfinite(second)
        assert abs(first.item()) < 1e-6 and abs(second.item()) < 1e-3


def test_cutoff_second_derivative_is_continuous():
    r = torch.linspace(4.4, 5.1, 7001, dtype=DTYPE).requires_grad_(True)
    f = cutoff_fc(r, t(5.0), t(0.5)).sum()
    (first,) = torch.autograd.grad(f, r, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), r)
    step = float(r[1] - r[0])
    assert torch.max(torch.abs(torch.diff(first))) < 40 * step
    assert torch.max(torch.abs(torch.diff(second))) < 2000 * step
    assert torch.all(torch.isfinite(second))


def test_q2_derivative_is_continuous_at_the_boundaries():
    z = torch.linspace(0.0, 0.5, 5001, dtype=DTYPE).requires_grad_(True)
    (first,) = torch.autograd.grad(angular_cutoff_q2(z, t(0.1), t(0.2)).sum(), z)
    step = float(z[1] - z[0])
    assert torch.max(torch.abs(torch.diff(first))) < 100 * step
    assert first[z > 0.3].detach().allclose(torch.ones_like(first[z > 0.3]))


def _random_segments(n_values=200, n_segments=17, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = 3.0 * torch.randn(n_values, generator=generator, dtype=DTYPE)
    segments = torch.randint(0, n_segments, (n_values,), generator=generator)
    return values, segments, n_segments


@pytest.mark.parametrize("beta", [0.5, 3.0, 100.0])
def test_smooth_max_bounds_eq13(beta):
    values, segments, n = _random_segments()
    result = smooth_max(values, segments, n, beta)
    for segment in range(n):
        members = values[segments == segment]
        if len(members) == 0:
            continue
        assert result[segment] <= members.max() + 1e-12
        assert result[segment] >= members.min() - 1e-12
        expected = torch.sum(torch.softmax(beta * members, 0) * members)
        assert torch.allclose(result[segment], expected, rtol=1e-12)
    assert torch.allclose(
        smooth_min(values, segments, n, beta), -smooth_max(-values, segments, n, beta)
    )


def test_smooth_max_tends_to_max_eq13():
    values, segments, n = _random_segments()
    exact = torch.full((n,), -math.inf, dtype=DTYPE).scatter_reduce(
        0, segments, values, reduce="amax"
    )
    present = torch.isfinite(exact)
    error = torch.abs(smooth_max(values, segments, n, 1e4) - exact)[present]
    assert torch.all(error < 1e-3)


def test_smooth_max_of_two_within_T_eq14():
    generator = torch.Generator().manual_seed(1)
    pairs = 4.0 * torch.randn(5000, 2, generator=generator, dtype=DTYPE)
    gaps = torch.linspace(0.0, 3.0, 5000, dtype=DTYPE)
    pairs[:, 1] = pairs[:, 0] + gaps
    segments = torch.arange(5000).repeat_interleave(2)
    for beta in [1.0, 3.0, 10.0]:
        result = smooth_max(pairs.reshape(-1), segments, 5000, beta)
        gap = pairs.max(dim=1).values - result
        assert torch.all(gap >= -1e-12)
        assert torch.all(gap <= lambert_T(beta) + 1e-12)
        # the bound is reached at β·gap = 1 + W(1/e)
        assert gap.max() > 0.999 * lambert_T(beta)


def test_weighted_ignores_zero_weight_points_eq16():
    values, segments, n = _random_segments()
    weights = torch.rand(values.shape, generator=torch.Generator().manual_seed(2))
    weights = weights.to(DTYPE)
    reference = smooth_max_weighted(values, weights, segments, n, 3.0)
    extra = torch.tensor([1e3, -1e3, 50.0], dtype=DTYPE)
    with_zeros = smooth_max_weighted(
        torch.cat([values, extra]),
        torch.cat([weights, torch.zeros(3, dtype=DTYPE)]),
        torch.cat([segments, torch.tensor([0, 1, 2])]),
        n,
        3.0,
    )
    assert torch.equal(reference, with_zeros)


def test_weighted_is_stable_and_handles_empty_segments():
    values = torch.tensor([800.0, 801.0, -900.0, 5.0], dtype=DTYPE)
    weights = torch.tensor([1.0, 0.5, 1.0, 0.0], dtype=DTYPE, requires_grad=True)
    segments = torch.tensor([0, 0, 1, 2])
    result = smooth_max_weighted(values, weights, segments, 4, 10.0)
    assert torch.all(torch.isfinite(result))
    assert result[2] == 0.0 and result[3] == 0.0
    assert result[1] == -900.0
    min_result = smooth_min_weighted(values, weights, segments, 4, 10.0)
    assert min_result[0] < 800.0 + 1e-3
    (gradient,) = torch.autograd.grad(result.sum() + min_result.sum(), weights)
    assert torch.all(torch.isfinite(gradient))


def test_second_derivatives_of_weighted_max_are_finite():
    values, segments, n = _random_segments(40, 5)
    values.requires_grad_(True)
    weights = torch.rand(40, dtype=DTYPE)
    weights[::3] = 0.0
    result = smooth_max_weighted(values, weights, segments, n, 3.0).sum()
    (first,) = torch.autograd.grad(result, values, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), values)
    assert torch.all(torch.isfinite(second))
    assert torch.all(first[weights == 0.0] == 0.0)


def test_functions_are_torchscript_compatible():
    for function in [
        cutoff_fc,
        angular_cutoff_q1,
        angular_cutoff_q2,
        smooth_max,
        smooth_max_weighted,
        smooth_min,
        smooth_min_weighted,
    ]:
        torch.jit.script(function)
