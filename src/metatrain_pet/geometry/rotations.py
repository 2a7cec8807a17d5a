"""Rotation matrices from quaternions, shared by the augmentations and the symmetry
tools (pure torch, TorchScript-compatible)."""

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
