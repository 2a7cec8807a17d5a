"""Rotations: the one random source of the package and the one rotation back to
the laboratory frame of Cartesian values of any rank (pure torch, TorchScript).

Convention: a frame or rotation ``R`` acts on column vectors, ``v' = R v``; a value
computed in that frame is brought back with ``v = Rᵀ v'`` on every Cartesian axis
(``M = Rᵀ M' R`` for rank 2).
"""

import itertools
from typing import List, Optional

import torch


def quaternions_to_matrices(quaternions: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(n, 3, 3)`` of the (not necessarily unit) quaternions
    ``(n, 4)``, as ``(w, x, y, z)``. Gaussian quaternions give rotations distributed
    uniformly over SO(3) (Haar measure)."""
    unit = quaternions / torch.linalg.vector_norm(quaternions, dim=1, keepdim=True)
    w, x, y, z = unit.unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z),
            2 * (x * y - w * z),
            2 * (x * z + w * y),
            2 * (x * y + w * z),
            1 - 2 * (x * x + z * z),
            2 * (y * z - w * x),
            2 * (x * z - w * y),
            2 * (y * z + w * x),
            1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(-1, 3, 3)


def random_rotations(
    n: int,
    inversion: bool,
    dtype: torch.dtype,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``n`` rotations ``(n, 3, 3)`` uniform over SO(3) (from Gaussian quaternions,
    drawn in float64), each multiplied by a random ±1 when ``inversion`` is set
    (uniform over O(3)). ``generator`` makes the sequence reproducible."""
    quaternions = torch.randn(
        (n, 4), dtype=torch.float64, device=device, generator=generator
    )
    matrices = quaternions_to_matrices(quaternions)
    if inversion:
        signs = torch.randint(0, 2, (n,), device=device, generator=generator) * 2 - 1
        matrices = matrices * signs.to(matrices.dtype).reshape(n, 1, 1)
    return matrices.to(dtype)


def cube_rotations() -> torch.Tensor:
    """The 24 proper rotations mapping a cube onto itself (signed permutation
    matrices of determinant 1), ``(24, 3, 3)`` in float64. The average over them of
    any spherical component of degree 1 to 3 vanishes, so it makes the scalar,
    vector and rank-2 outputs of an isolated atom exactly invariant/covariant."""
    rotations = []
    for permutation in itertools.permutations(range(3)):
        for signs in itertools.product([1.0, -1.0], repeat=3):
            matrix = torch.zeros(3, 3, dtype=torch.float64)
            for row, column in enumerate(permutation):
                matrix[row, column] = signs[row]
            if torch.linalg.det(matrix) > 0:
                rotations.append(matrix)
    return torch.stack(rotations)


def cartesian_rank(component_names: List[str], output: str, who: str) -> int:
    """Rank of a block from the names of its components: 0 for none, 1 for
    ``xyz``, 2 for ``xyz_1, xyz_2``; anything else raises a ``ValueError`` saying
    that ``who`` cannot rotate ``output`` back."""
    if len(component_names) == 0:
        return 0
    if component_names == ["xyz"]:
        return 1
    if component_names == ["xyz_1", "xyz_2"]:
        return 2
    raise ValueError(
        who + " cannot rotate output '" + output + "' back to the laboratory frame: "
        "its components " + str(component_names) + " are neither invariant ([]), a "
        "Cartesian vector (['xyz']) nor a Cartesian rank-2 tensor (['xyz_1', "
        "'xyz_2'])"
    )


def rotate_back(
    values: torch.Tensor, rotations: torch.Tensor, rank: int
) -> torch.Tensor:
    """Bring values computed in rotated frames back to the laboratory frame.

    ``values`` is ``(n, 3, ..., 3, ...)`` with ``rank`` Cartesian axes after the
    first; row k was computed in the frame ``rotations[k]`` ``(n, 3, 3)``. Every
    Cartesian axis is contracted with ``Rᵀ``: ``Rᵀ v`` for vectors, ``Rᵀ M R`` for
    rank-2 tensors. Rank 0 returns ``values`` unchanged.
    """
    n = values.shape[0]
    for axis in range(1, rank + 1):
        moved = values.movedim(axis, -1).unsqueeze(-2)
        shape = [n] + [1] * (moved.dim() - 3) + [3, 3]
        # (Rᵀ v)_a = Σ_b v_b R_ba
        rotated = torch.matmul(moved, rotations.reshape(shape)).squeeze(-2)
        values = rotated.movedim(-1, axis)
    return values
