"""Local coordinate systems of ECSE and their weights (Sec. 5 and App. F.1-F.4).

The input is a flat list of edges: ``centers[e]`` is the environment (atom) that edge
``e`` belongs to and ``vectors[e]`` the displacement r_ij to one of its neighbours
within the outer cutoff. All ordered pairs (j, j') of neighbours of the same centre
are enumerated at once; every quantity below is computed for all environments in one
vectorised pass.

A frame is returned as a 3x3 proper rotation ``F`` whose rows are the axes (v̂1, û1,
û2) of App. F.1 expressed in the lab frame, so that ``F @ r`` are the coordinates of
``r`` in the local frame.
"""

from typing import List, Tuple

import torch

from ..geometry.segments import rows_of_segments, segment_offsets
from ..geometry.switching import (
    angular_cutoff_q1,
    angular_cutoff_q2,
    cutoff_fc,
    lambert_T,
    smooth_max,
    smooth_max_weighted,
    smooth_min_weighted,
)


def ordered_neighbor_pairs(
    centers: torch.Tensor, n_centers: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (j, j'), j != j', of edges sharing a centre.

    ``centers`` must be sorted. Returns the indices of the first and second edge of
    every pair; there are Σ_i n_i (n_i - 1) of them.
    """
    first, second = rows_of_segments(centers, segment_offsets(centers, n_centers))
    distinct = first != second
    return first[distinct], second[distinct]


def pair_geometry(
    centers: torch.Tensor, vectors: torch.Tensor, n_centers: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(distances, first, second, z)``: the length of every edge, the ordered
    pairs of edges sharing a centre (:func:`ordered_neighbor_pairs`, ``centers``
    sorted) and z = |v̂_j × v̂_j'|² of every pair."""
    distances = torch.linalg.norm(vectors, dim=-1)
    units = vectors / distances.unsqueeze(-1)
    first, second = ordered_neighbor_pairs(centers, n_centers)
    z = torch.sum(torch.linalg.cross(units[first], units[second], dim=-1) ** 2, -1)
    return distances, first, second, z


def frame_weights(
    pair_radial: torch.Tensor,
    z: torch.Tensor,
    omega: torch.Tensor,
    delta_omega: torch.Tensor,
    use_q2: bool,
) -> torch.Tensor:
    """Weight of the frame of every pair (j, j') (Eq. 18):
    w_jj' = f_c(r_j | R_in) f_c(r_j' | R_in) q_c(|v̂_j × v̂_j'|² | ω, Δ_ω).

    :param pair_radial: f_c(r_j | R_in, Δ_Rc) f_c(r_j' | R_in, Δ_Rc)
    :param z: |v̂_j × v̂_j'|²
    :param use_q2: q_c = q_c^2 (Eq. 11) rather than q_c^1 (Eq. 10)
    """
    if use_q2:
        return pair_radial * angular_cutoff_q2(z, omega, delta_omega)
    return pair_radial * angular_cutoff_q1(z, omega, delta_omega)


def adaptive_omega(
    z: torch.Tensor,
    pair_radial: torch.Tensor,
    pair_centers: torch.Tensor,
    n_centers: int,
    beta_omega: float,
) -> torch.Tensor:
    """Adaptive angular threshold of every environment (Eq. 21):
    ω = ½ SmoothMaxWeighted({(z_jj', f_c f_c)} | β_ω), so that the best pairs of a
    nearly collinear environment still make frames. Returns the smooth maximum
    per environment (ω and Δ_ω are half of it)."""
    return smooth_max_weighted(z, pair_radial, pair_centers, n_centers, beta_omega)


def frame_from_pair(v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """Right-handed frames (v̂1, û1, û2) of App. F.1 for non-collinear pairs.

    û1 = v̂1 × v̂2 / |v̂1 × v̂2| and û2 = v̂1 × û1; the rows of the returned (P, 3, 3)
    tensor are these three unit vectors, so every frame is a proper rotation. The
    component of v̂1 × v̂2 along v̂1, zero in exact arithmetic, is removed before
    normalising, so that frames stay orthonormal for nearly collinear pairs.
    """
    e1 = v1 / torch.linalg.norm(v1, dim=-1, keepdim=True)
    e2 = v2 / torch.linalg.norm(v2, dim=-1, keepdim=True)
    normal = torch.linalg.cross(e1, e2, dim=-1)
    normal = normal - torch.sum(normal * e1, dim=-1, keepdim=True) * e1
    u1 = normal / torch.linalg.norm(normal, dim=-1, keepdim=True)
    u2 = torch.linalg.cross(e1, u1, dim=-1)
    return torch.stack([e1, u1, u2], dim=1)


def frames_around_axis(v1: torch.Tensor) -> torch.Tensor:
    """Four right-handed frames per vector: first axis v̂1, the two others fixed by
    the lab axis least aligned with v̂1 and turned by 0, 90, 180 and 270 degrees
    about v̂1. Returns (4, N, 3, 3).

    Used only for exactly collinear (or single-neighbour) environments with the
    adaptive fallback (App. F.3). Such an environment looks the same in every frame
    whose first axis is v̂1; averaging over the four quarter turns makes vector and
    rank-2 outputs, and the forces, exactly covariant there (their components that
    are not symmetric about the axis cancel).
    """
    e1 = v1 / torch.linalg.norm(v1, dim=-1, keepdim=True)
    helper_axis = torch.argmin(torch.abs(e1.detach()), dim=-1)
    helper = torch.nn.functional.one_hot(helper_axis, 3).to(e1.dtype)
    frame = frame_from_pair(e1, helper)
    u1 = frame[:, 1]
    u2 = frame[:, 2]
    return torch.stack(
        [
            frame,
            torch.stack([e1, u2, -u1], dim=1),
            torch.stack([e1, -u1, -u2], dim=1),
            torch.stack([e1, -u2, u1], dim=1),
        ]
    )


def mirrored_frames(rotations: torch.Tensor) -> torch.Tensor:
    """Frames with v̂1 → -v̂1 (App. F.3): rows (-v̂1, -û1, û2), still right-handed."""
    signs = torch.tensor(
        [-1.0, -1.0, 1.0], dtype=rotations.dtype, device=rotations.device
    )
    return rotations * signs.view(1, 3, 1)


class FrameBuilder(torch.nn.Module):
    """Frames and weights of every environment (Eqs. 18 and 21-24).

    :param r_out: outer cutoff R_out of the frame search
    :param delta_r: width Δ_Rc of the radial cutoffs
    :param omega: angular threshold ω of Eq. 18
    :param delta_omega: width Δ_ω of the angular cutoff
    :param angular_cutoff: ``"q1"`` (Eq. 10) or ``"q2"`` (Eq. 11) in Eq. 18
    :param beta: β of the SmoothMax/SmoothMin defining R_in (Eqs. 22-23)
    :param adaptive: use the adaptive ω of Eq. 21 and mirrored frames (second
        solution of App. F.3)
    :param beta_omega: β of the smooth maximum of Eq. 21
    :param gradual_onset: each pair's candidate for R_in moves in from
        R_out + T(β) as its weight p_jj' rises (:meth:`inner_cutoff`), instead of
        counting at its own distance from the first non-zero p_jj' (Eq. 23)
    :param near_collinear_only: with ``adaptive``, keep the fixed ω, Δ_ω of Eq. 18
        and no mirrored frames wherever the environment has clearly non-collinear
        pairs, and switch to Eq. 21 only as it approaches collinearity
        (:meth:`angular_cutoffs`)

    With ``adaptive``, environments so collinear that the directions of
    v̂1 × v̂2 are dominated by rounding (Z = SmoothMaxWeighted of |v̂1 × v̂2|² below
    ``collinear_z`` = 1e-8, i.e. angles below 1e-4 rad) use frames around the
    neighbour directions instead (:func:`frames_around_axis`). The two sets are
    blended smoothly for Z between 1e-8 and 2e-8, the axis frames getting weights
    f_c(r_j | R_in) · 1e-8, the scale of the pair weights there.
    """

    max_pairs: int
    """Ordered neighbour pairs per chunk of environments on CPU (:meth:`forward`);
    it changes the cost, not the result."""

    def __init__(
        self,
        r_out: float,
        delta_r: float,
        omega: float,
        delta_omega: float,
        angular_cutoff: str,
        beta: float,
        adaptive: bool,
        beta_omega: float,
        gradual_onset: bool = False,
        near_collinear_only: bool = False,
    ):
        super().__init__()
        if angular_cutoff not in ["q1", "q2"]:
            raise ValueError(
                f"angular_cutoff must be 'q1' or 'q2', got '{angular_cutoff}'"
            )
        self.r_out = r_out
        self.delta_r = delta_r
        self.omega = omega
        self.delta_omega = delta_omega
        self.use_q2 = angular_cutoff == "q2"
        self.beta = beta
        self.adaptive = adaptive
        self.beta_omega = beta_omega
        self.gradual_onset = gradual_onset
        self.near_collinear_only = near_collinear_only
        self.collinear_z = 1e-8
        self.max_pairs = 1 << 18

    def search_radius(self) -> float:
        """Largest distance at which a neighbour can get a non-zero weight.

        R_in (Eq. 23) never exceeds R_out + T(β) + Δ_Rc, since every term of the
        SmoothMinWeighted with positive weight is below R_out + T(β).
        """
        return self.r_out + lambert_T(self.beta) + self.delta_r

    def inner_cutoff(
        self,
        distances: torch.Tensor,
        z: torch.Tensor,
        pair_centers: torch.Tensor,
        first: torch.Tensor,
        second: torch.Tensor,
        n_centers: int,
    ) -> torch.Tensor:
        """Adaptive inner cutoff R_in of every environment (Eqs. 22-24).

        Each pair contributes x_jj' = SmoothMax({r_j, r_j'} | β) + T(β) with the
        weight p_jj' of Eq. 24; the point (R_out, 1) makes R_in fall back to
        R_out + Δ_Rc when no good pair exists within R_out.

        In Eq. 23 a pair whose p_jj' has just left zero already weighs
        p_jj' e^{βΔx} against a current R_in larger by Δx, so the C∞ onset of its
        switch moves R_in within a hundredth of an ångström for β = 5-10 (the force
        spikes of ``docs/ecse.md``). With ``gradual_onset`` the pair contributes
        p_jj' x_jj' + (1 - p_jj') (R_out + T(β)) instead: the same point once
        p_jj' = 1, never larger than R_out + T(β) (so :meth:`search_radius` holds),
        and no closer than R_out + T(β) while its weight is small, so that it
        moves R_in over the whole width of its switch.
        """
        n_pairs = first.shape[0]
        pair_distances = torch.stack([distances[first], distances[second]], dim=1)
        pair_index = torch.arange(n_pairs, device=z.device).repeat_interleave(2)
        farthest = smooth_max(
            pair_distances.reshape(-1), pair_index, n_pairs, self.beta
        )

        r_out = torch.full(
            [], self.r_out, dtype=distances.dtype, device=distances.device
        )
        delta_r = torch.full(
            [], self.delta_r, dtype=distances.dtype, device=distances.device
        )
        delta_omega = torch.full([], self.delta_omega, dtype=z.dtype, device=z.device)
        p = (
            cutoff_fc(distances[first], r_out, delta_r)
            * cutoff_fc(distances[second], r_out, delta_r)
            * angular_cutoff_q1(z, self.omega + delta_omega, delta_omega)
        )
        pair_candidates = farthest + lambert_T(self.beta)
        if self.gradual_onset:
            farthest_candidate = r_out + lambert_T(self.beta)
            pair_candidates = farthest_candidate - p * (
                farthest_candidate - pair_candidates
            )
        candidates = torch.cat([pair_candidates, r_out.expand(n_centers)])
        weights = torch.cat([p, torch.ones(n_centers, dtype=p.dtype, device=p.device)])
        segments = torch.cat(
            [pair_centers, torch.arange(n_centers, device=pair_centers.device)]
        )
        smooth_min = smooth_min_weighted(
            candidates, weights, segments, n_centers, self.beta
        )
        return smooth_min + self.delta_r

    def forward(
        self, centers: torch.Tensor, vectors: torch.Tensor, n_centers: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frames of all environments.

        The environments are independent, so on CPU they are processed in chunks
        of about ``max_pairs`` neighbour pairs: the per-pair temporaries then stay
        small, and the cost per environment does not grow with the number of
        environments. The result does not depend on the chunks.

        :param centers: (E,) environment index of each edge, in ``[0, n_centers)``
        :param vectors: (E, 3) displacement from the centre to the neighbour; edges
            of zero length must not be included
        :param n_centers: number of environments
        :return: ``(pools, rotations, weights)``: the environment (pool) of each
            frame, the (F, 3, 3) frames and their weights w_jj' (Eq. 18). Only frames
            of positive weight are returned.
        """
        order = torch.argsort(centers, stable=True)
        centers = centers[order]
        vectors = vectors[order]
        offsets = segment_offsets(centers, n_centers)
        starts = self.chunk_starts(offsets, vectors.device)
        if len(starts) <= 2:
            return self._frames(centers, vectors, n_centers)
        all_offsets: List[int] = offsets.tolist()
        edge_starts = [all_offsets[start] for start in starts]
        pools: List[torch.Tensor] = []
        rotations: List[torch.Tensor] = []
        weights: List[torch.Tensor] = []
        for c in range(len(starts) - 1):
            first, last = edge_starts[c], edge_starts[c + 1]
            chunk = self._frames(
                centers[first:last] - starts[c],
                vectors[first:last],
                starts[c + 1] - starts[c],
            )
            pools.append(chunk[0] + starts[c])
            rotations.append(chunk[1])
            weights.append(chunk[2])
        return torch.cat(pools), torch.cat(rotations), torch.cat(weights)

    def chunk_starts(self, offsets: torch.Tensor, device: torch.device) -> List[int]:
        """First environment of every chunk of about ``max_pairs`` ordered
        neighbour pairs, then the number of environments (one chunk on GPUs)."""
        n_centers = offsets.shape[0] - 1
        if device.type != "cpu" or n_centers == 0:
            return [0, n_centers]
        counts = offsets[1:] - offsets[:-1]
        pairs = counts * (counts - 1)
        before = torch.cumsum(pairs, dim=0) - pairs
        chunk = torch.div(before, self.max_pairs, rounding_mode="floor")
        _, sizes = torch.unique_consecutive(chunk, return_counts=True)
        ends: List[int] = torch.cumsum(sizes, dim=0).tolist()
        return [0] + ends

    def _frames(
        self, centers: torch.Tensor, vectors: torch.Tensor, n_centers: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` for edges sorted by centre, in one vectorised pass."""
        distances, first, second, z = pair_geometry(centers, vectors, n_centers)
        pair_centers = centers[first]
        r_in = self.inner_cutoff(distances, z, pair_centers, first, second, n_centers)
        delta_r = torch.full(
            [], self.delta_r, dtype=distances.dtype, device=distances.device
        )
        radial = cutoff_fc(distances, r_in[centers], delta_r)
        pair_radial = radial[first] * radial[second]

        axis_share = torch.zeros(n_centers, dtype=z.dtype, device=z.device)
        fixed_share = torch.ones(n_centers, dtype=z.dtype, device=z.device)
        if self.adaptive:
            spread = adaptive_omega(
                z, pair_radial, pair_centers, n_centers, self.beta_omega
            )
            omega, delta_omega, fixed_share = self.angular_cutoffs(spread)
            weights = frame_weights(
                pair_radial,
                z,
                omega[pair_centers],
                delta_omega[pair_centers],
                self.use_q2,
            )
            threshold = torch.full_like(spread, self.collinear_z)
            axis_share = 1.0 - angular_cutoff_q1(spread, threshold, threshold)
            weights = weights * (1.0 - axis_share[pair_centers])
        else:
            omega = torch.full_like(z, self.omega)
            delta_omega = torch.full_like(z, self.delta_omega)
            weights = frame_weights(pair_radial, z, omega, delta_omega, self.use_q2)

        kept = weights > 0.0
        pools = pair_centers[kept]
        rotations = frame_from_pair(vectors[first[kept]], vectors[second[kept]])
        weights = weights[kept]
        if self.adaptive:
            return self._with_axis_frames(
                pools,
                rotations,
                weights,
                centers,
                vectors,
                radial * axis_share[centers],
                1.0 - fixed_share,
            )
        return pools, rotations, weights

    def angular_cutoffs(
        self, spread: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ω and Δ_ω of every environment with the adaptive fallback, and the share
        s of the fixed values of Eq. 18 in them.

        Eq. 21 sets ω = Δ_ω = Z/2 everywhere (Z = SmoothMaxWeighted |v̂ × v̂'|²,
        ``spread``), so that every pair's angular weight moves with the best pair
        of its environment (s = 0). With ``near_collinear_only``,
        s = q_c^1(Z | ω + Δ_ω, ω + Δ_ω) blends the two, ω' = s ω + (1 - s) Z/2 and
        Δ_ω' = s Δ_ω + (1 - s) Z/2: the fixed values wherever Z ≥ 2(ω + Δ_ω),
        Eq. 21 wherever Z ≤ ω + Δ_ω. Z is a weighted mean, never above the largest
        |v̂ × v̂'|² of a pair with radial weight, and ω' + Δ_ω' ≤ Z wherever s > 0,
        so some pair keeps its full angular weight as it does with Eq. 21.
        """
        half = 0.5 * spread
        if not self.near_collinear_only:
            return half, half, torch.zeros_like(spread)
        onset = torch.full(
            [], self.omega + self.delta_omega, dtype=spread.dtype, device=spread.device
        )
        share = angular_cutoff_q1(spread, onset, onset)
        omega = share * self.omega + (1.0 - share) * half
        delta_omega = share * self.delta_omega + (1.0 - share) * half
        return omega, delta_omega, share

    def _with_axis_frames(
        self,
        pools: torch.Tensor,
        rotations: torch.Tensor,
        weights: torch.Tensor,
        centers: torch.Tensor,
        vectors: torch.Tensor,
        axis_radial: torch.Tensor,
        mirror_share: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Adaptive fallback (App. F.3): add the frames around the neighbour
        directions of (nearly) collinear environments, weighted
        f_c(r_j | R_in) · share · 1e-8, then every frame mirrored, the mirror
        weighted ``mirror_share`` (per environment: 1 for Eq. 21, 1 - s of
        :meth:`angular_cutoffs`) times its frame's weight."""
        axis_weights = axis_radial * self.collinear_z
        collinear = axis_weights > 0.0
        axis_frames = frames_around_axis(vectors[collinear])
        pools = torch.cat([pools, centers[collinear].repeat(4)])
        weights = torch.cat([weights, axis_weights[collinear].repeat(4)])
        rotations = torch.cat([rotations, axis_frames.reshape(-1, 3, 3)])
        mirror_weights = weights * mirror_share[pools]
        mirrored = mirror_weights > 0.0
        return (
            torch.cat([pools, pools[mirrored]]),
            torch.cat([rotations, mirrored_frames(rotations[mirrored])]),
            torch.cat([weights, mirror_weights[mirrored]]),
        )
