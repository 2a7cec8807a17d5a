"""Frames, weights and adaptive inner cutoff (App. F.1, F.3-F.5)."""

import numpy as np
import pytest
import torch

from metatrain_pet.ecse.ensemble import auxiliary_weight, prune_weights
from metatrain_pet.ecse.frames import (
    FrameBuilder,
    frame_from_pair,
    frames_around_axis,
    mirrored_frames,
    ordered_neighbor_pairs,
    pair_geometry,
)
from metatrain_pet.geometry.switching import lambert_T

DTYPE = torch.float64


def builder(**overrides):
    params = dict(
        r_out=5.0,
        delta_r=0.5,
        omega=0.05,
        delta_omega=0.05,
        angular_cutoff="q2",
        beta=3.0,
        adaptive=False,
        beta_omega=10.0,
    )
    params.update(overrides)
    return FrameBuilder(**params)


def random_environments(n_centers=6, per_center=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.arange(n_centers).repeat_interleave(per_center)
    vectors = torch.randn(n_centers * per_center, 3, generator=generator, dtype=DTYPE)
    vectors = 1.0 + 3.5 * torch.rand(vectors.shape[0], 1, generator=generator) * (
        vectors / torch.linalg.norm(vectors, dim=1, keepdim=True)
    )
    return centers, vectors.to(DTYPE)


def test_ordered_pairs_enumerates_all_distinct_pairs():
    centers = torch.tensor([0, 0, 0, 2, 2, 3])
    first, second = ordered_neighbor_pairs(centers, 4)
    pairs = set(zip(first.tolist(), second.tolist()))
    assert pairs == {(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (3, 4), (4, 3)}


def test_frames_are_proper_rotations_following_f1():
    _, vectors = random_environments()
    frames = frame_from_pair(vectors[:-1], vectors[1:])
    identity = torch.eye(3, dtype=DTYPE).expand_as(frames)
    assert torch.allclose(frames @ frames.transpose(1, 2), identity, atol=1e-14)
    assert torch.allclose(
        torch.linalg.det(frames), torch.ones(len(frames), dtype=DTYPE)
    )
    v1 = vectors[:-1] / torch.linalg.norm(vectors[:-1], dim=1, keepdim=True)
    assert torch.allclose(frames[:, 0], v1)
    # the second neighbour lies in the (v̂1, û2) plane, on the -û2 side, since
    # û2 = v̂1 × (v̂1 × v̂2)/|.| = -(v̂2 - (v̂1·v̂2) v̂1)/|.|
    assert torch.allclose(
        torch.sum(frames[:, 1] * vectors[1:], dim=1),
        torch.zeros(len(frames), dtype=DTYPE),
        atol=1e-13,
    )
    assert torch.all(torch.sum(frames[:, 2] * vectors[1:], dim=1) < 0)
    for rotation in [
        mirrored_frames(frames),
        frames_around_axis(vectors).reshape(-1, 3, 3),
    ]:
        assert torch.allclose(
            torch.linalg.det(rotation), torch.ones(len(rotation), dtype=DTYPE)
        )


def test_frames_rotate_with_the_environment():
    centers, vectors = random_environments()
    rotation = torch.linalg.qr(torch.randn(3, 3, dtype=DTYPE))[0]
    rotation = rotation * torch.sign(torch.linalg.det(rotation))
    frame_centers, frames, weights = builder()(centers, vectors, 6)
    frame_centers_r, frames_r, weights_r = builder()(centers, vectors @ rotation.T, 6)
    assert torch.equal(frame_centers, frame_centers_r)
    assert torch.allclose(weights, weights_r, atol=1e-13)
    assert torch.allclose(frames_r, frames @ rotation.T, atol=1e-13)


def test_inner_cutoff_contains_a_good_pair_eq22_24():
    centers, vectors = random_environments(n_centers=20, per_center=8, seed=3)
    frames = builder()
    distances = torch.linalg.norm(vectors, dim=1)
    first, second = ordered_neighbor_pairs(centers, 20)
    units = vectors / distances.unsqueeze(1)
    z = torch.sum(torch.linalg.cross(units[first], units[second], dim=-1) ** 2, -1)
    r_in = frames.inner_cutoff(distances, z, centers[first], first, second, 20)
    good = z > frames.omega + frames.delta_omega
    farthest = torch.maximum(distances[first], distances[second])
    for center in range(20):
        mask = (centers[first] == center) & good
        best_pair = farthest[mask].min()
        # larger than the closest good pair (Eqs. 13-14), so that pair gets a frame
        assert r_in[center] >= best_pair + frames.delta_r - 1e-12
        assert r_in[center] <= frames.r_out + lambert_T(frames.beta) + frames.delta_r


def test_inner_cutoff_falls_back_to_r_out_without_good_pairs():
    vectors = torch.tensor([[1.0, 0, 0], [-1.2, 0, 0], [2.5, 0, 0]], dtype=DTYPE)
    centers = torch.zeros(3, dtype=torch.long)
    frames = builder()
    first, second = ordered_neighbor_pairs(centers, 1)
    z = torch.zeros(len(first), dtype=DTYPE)
    r_in = frames.inner_cutoff(
        torch.linalg.norm(vectors, dim=1), z, centers[first], first, second, 1
    )
    assert torch.allclose(r_in, torch.tensor([5.5], dtype=DTYPE))
    assert len(frames(centers, vectors, 1)[2]) == 0


def test_adaptive_fallback_gives_frames_to_collinear_environments():
    vectors = torch.tensor([[1.0, 0, 0], [-1.2, 0, 0], [2.5, 0, 0]], dtype=DTYPE)
    centers = torch.zeros(3, dtype=torch.long)
    frame_centers, frames, weights = builder(adaptive=True)(centers, vectors, 1)
    # three neighbours, four quarter turns, mirrored
    assert len(weights) == 24 and torch.all(weights > 0)
    assert torch.allclose(torch.abs(frames[:, 0, 0]), torch.ones(24, dtype=DTYPE))
    # nearly collinear: regular pair frames with the adaptive ω of Eq. 21
    vectors[1, 1] = 1e-4
    _, _, weights = builder(adaptive=True)(centers, vectors, 1)
    assert len(weights) > 0 and torch.all(weights > 0)


def test_adaptive_near_collinear_keeps_fixed_omega_away_from_collinearity():
    """``near_collinear_only``: the frames and weights of Eq. 18 with the fixed ω
    (no mirrored frames) where the environment has pairs far from collinear, those
    of Eq. 21 (mirrored) where all pairs are nearly collinear."""
    centers, vectors = random_environments()
    near = builder(adaptive=True, near_collinear_only=True)
    spread = torch.tensor([0.3, 0.2, 0.15, 0.1, 0.05], dtype=DTYPE)
    omega, delta_omega, share = near.angular_cutoffs(spread)
    assert share[:2].tolist() == [1.0, 1.0] and share[3:].tolist() == [0.0, 0.0]
    assert 0.0 < float(share[2]) < 1.0
    assert torch.all(omega + delta_omega <= torch.clamp(spread, min=0.1) + 1e-15)
    fixed = _sorted_frames(*builder()(centers, vectors, 6))
    blended = _sorted_frames(*near(centers, vectors, 6))
    for expected, actual in zip(fixed, blended):
        torch.testing.assert_close(actual, expected, rtol=0.0, atol=1e-15)
    assert len(fixed[2]) > 0
    # a nearly collinear environment (|v̂ × v̂'|² ~ 1e-3 for every pair)
    line = torch.tensor([[1.0, 0, 0], [-1.2, 0.04, 0], [2.5, 0, 0.05]], dtype=DTYPE)
    centers = torch.zeros(3, dtype=torch.long)
    paper = _sorted_frames(*builder(adaptive=True)(centers, line, 1))
    blended = _sorted_frames(*near(centers, line, 1))
    for expected, actual in zip(paper, blended):
        torch.testing.assert_close(actual, expected, rtol=0.0, atol=1e-15)
    assert len(paper[2]) > 0 and len(builder()(centers, line, 1)[2]) == 0


def test_pruning_and_aux_weight():
    weights = torch.tensor([1.0, 0.9, 0.05, 0.5, 0.01, 0.0], dtype=DTYPE)
    segments = torch.tensor([0, 0, 0, 1, 1, 2])
    pruned = prune_weights(weights, segments, 3, 10.0, 0.5, 0.2, 0.1, 0.05)
    assert pruned[2] == 0.0 and pruned[4] == 0.0
    assert pruned[0] == 1.0 and pruned[3] == 0.5
    # pruning is off when every weight is small (e = 1)
    small = weights * 1e-3
    assert torch.equal(
        prune_weights(small, segments, 3, 10.0, 0.5, 0.2, 0.1, 0.05), small
    )
    aux = auxiliary_weight(weights, segments, 3, 10.0, 0.1, 0.05)
    assert aux.tolist() == [0.0, 0.0, 1.0]


def _sorted_frames(pools, rotations, weights):
    """Frames in a canonical order: by environment, then weight, then matrix."""
    keys = torch.cat([pools.unsqueeze(1).to(DTYPE), weights.unsqueeze(1)], dim=1)
    keys = torch.cat([keys, rotations.reshape(-1, 9)], dim=1).numpy()
    order = torch.from_numpy(np.lexsort(keys.T[::-1].copy()))
    return pools[order], rotations[order], weights[order]


@pytest.mark.parametrize("adaptive", [False, True, "near_collinear_only"])
def test_frames_do_not_depend_on_the_chunks(adaptive):
    """On CPU the environments are processed in chunks of ``max_pairs`` pairs:
    the same frames, with the same weights and gradients, as in one pass (one
    environment collinear, for the axis frames of the adaptive fallback)."""
    centers, vectors = random_environments(n_centers=40, per_center=9)
    axis = torch.tensor([0.3, -0.4, 0.5], dtype=DTYPE)
    lengths = torch.linspace(1.0, 2.0, 9, dtype=DTYPE).unsqueeze(1)
    vectors = torch.cat([vectors[:9], lengths * axis, vectors[18:]])
    vectors.requires_grad_(True)
    results = []
    for max_pairs in (1 << 18, 100):
        frame_builder = builder(
            adaptive=bool(adaptive),
            near_collinear_only=adaptive == "near_collinear_only",
            beta=10.0,
        )
        frame_builder.max_pairs = max_pairs
        offsets = torch.arange(0, 361, 9)
        n_chunks = len(frame_builder.chunk_starts(offsets, vectors.device)) - 1
        assert n_chunks == 1 if max_pairs > 1000 else n_chunks > 20
        pools, rotations, weights = frame_builder(centers, vectors, 40)
        # squares: a mirrored frame would cancel its original in a plain sum
        scalar = (weights.unsqueeze(1) * rotations.reshape(-1, 9) ** 2).sum()
        (gradient,) = torch.autograd.grad(scalar + (weights**2).sum(), vectors)
        frames = _sorted_frames(pools, rotations.detach(), weights.detach())
        results.append((frames, gradient))
    (frames, gradient), (chunked, chunked_gradient) = results
    assert torch.equal(frames[0], chunked[0])
    torch.testing.assert_close(chunked[1], frames[1], rtol=0.0, atol=1e-14)
    torch.testing.assert_close(chunked[2], frames[2], rtol=0.0, atol=1e-14)
    torch.testing.assert_close(chunked_gradient, gradient, rtol=0.0, atol=1e-12)
    assert float(gradient.abs().max()) > 1e-6


def _inner_cutoff_while_a_close_pair_opens(frame_builder, angles):
    """R_in of one environment whose two closest neighbours (1 and 1.1 Å) open
    from |v̂1 × v̂2|² = 0.095 to 0.16, through the onset of their pair weight p_jj'
    (z from ω + Δ_ω = 0.1 to 0.15), while a well-defined pair sits at ~3 Å."""
    values = []
    for theta in angles:
        vectors = torch.tensor(
            [
                [1.0, 0.0, 0.0],
                [1.1 * np.cos(theta), 1.1 * np.sin(theta), 0.0],
                [0.0, 3.0, 0.3],
                [0.2, 0.0, 3.2],
            ],
            dtype=DTYPE,
        )
        centers = torch.zeros(4, dtype=torch.long)
        distances, first, second, z = pair_geometry(centers, vectors, 1)
        r_in = frame_builder.inner_cutoff(
            distances, z, centers[first], first, second, 1
        )
        values.append(r_in.item())
    return np.array(values)


@pytest.mark.parametrize("beta", [5.0, 10.0])
def test_gradual_onset_spreads_the_inner_cutoff_over_the_switch(beta):
    """As the close pair's weight switches on, R_in falls from ~3.6 to ~1.6 Å.
    Eq. 23 as printed makes most of that fall happen where p_jj' has only just
    left zero (amplified by e^{βΔx}): the steepest slope is 30x (β = 5) to 115x
    (β = 10) the mean one. With ``gradual_onset`` it follows the switch itself
    (steepest slope under 10x the mean, for any β), with the same end points."""
    angles = np.linspace(np.arcsin(np.sqrt(0.095)), np.arcsin(np.sqrt(0.16)), 2001)
    steepness = {}
    ends = {}
    for gradual in (False, True):
        r_in = _inner_cutoff_while_a_close_pair_opens(
            builder(beta=beta, gradual_onset=gradual), angles
        )
        slopes = np.abs(np.diff(r_in)) / np.diff(angles)
        mean_slope = abs(r_in[-1] - r_in[0]) / (angles[-1] - angles[0])
        steepness[gradual] = slopes.max() / mean_slope
        ends[gradual] = (r_in[0], r_in[-1])
    assert ends[True] == pytest.approx(ends[False], abs=1e-12)
    assert ends[True][0] - ends[True][1] > 1.5
    assert steepness[True] < 10.0, steepness
    assert steepness[False] > 25.0, steepness
