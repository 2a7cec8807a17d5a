"""Per-environment rotational augmentation (App. F.10 of the paper).

Every atomic environment A_i is rotated by its own random rotation R_i: the edge
vectors r_ij of centre i become R_i r_ij. Messages sent from environment j to
environment i are then expressed in a frame unrelated to that of i, so the network
can only learn to pass rotation-invariant content through them (the "individual
augmentation strategy" of F.10). The per-atom prediction of atom i is built from
the tokens of environment i alone and therefore lives in the frame R_i; Cartesian
predictions are brought back to the laboratory frame with R_i^T (rank 1) or
R_i^T M R_i (rank 2). Spherical targets would need Wigner matrices and are refused.

Everything here is TorchScript-compatible, since it is called from
:meth:`metatrain_pet.network.PETNetwork.forward`.
"""

from typing import List

import torch
from metatensor.torch import Labels

from ..geometry.rotations import quaternions_to_matrices


def random_rotation_matrices(
    n: int, inversion: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``n`` rotations drawn uniformly from SO(3) (Haar measure, from uniformly
    distributed unit quaternions), each multiplied by a random ±1 when
    ``inversion`` is set.

    :return: tensor of shape ``(n, 3, 3)``
    """
    quaternions = torch.randn((n, 4), dtype=torch.float64, device=device)
    matrices = quaternions_to_matrices(quaternions)
    if inversion:
        signs = torch.randint(0, 2, (n,), device=device) * 2 - 1
        matrices = matrices * signs.to(matrices.dtype).reshape(n, 1, 1)
    return matrices.to(dtype)


def rotate_edge_vectors(
    edge_vectors: torch.Tensor, centers: torch.Tensor, rotations: torch.Tensor
) -> torch.Tensor:
    """Edge vectors r_ij expressed in the rotated frame of their centre:
    ``R_{center(e)} r_e`` for every edge ``e``.

    :param edge_vectors: ``(n_edges, 3)``
    :param centers: ``(n_edges,)`` index of the central atom of every edge
    :param rotations: ``(n_atoms, 3, 3)`` one rotation per atomic environment
    """
    return torch.einsum("eab,eb->ea", rotations[centers], edge_vectors)


def cartesian_rank(components: List[Labels]) -> int:
    """Number of Cartesian axes (components named ``xyz``, ``xyz_1``, ...) of a
    block, raising for spherical components, which this augmentation cannot
    rotate back."""
    rank = 0
    for component in components:
        name = component.names[0]
        if name.startswith("xyz"):
            rank += 1
        else:
            raise ValueError(
                f"per-environment rotational augmentation cannot rotate the "
                f"component '{name}' back to the laboratory frame: only scalar and "
                "Cartesian targets are supported, use `augmentation: structure` "
                "for spherical targets"
            )
    return rank


def rotate_to_laboratory_frame(
    values: torch.Tensor,
    rotations: torch.Tensor,
    components: List[List[Labels]],
    shapes: List[List[int]],
    sizes: List[int],
) -> torch.Tensor:
    """Undo the per-environment rotation on per-atom predictions.

    ``values`` holds, for every atom i, the flattened blocks of one target
    (components first, properties last), computed in the frame R_i. Every Cartesian
    axis a of a block is contracted with R_i^T: v -> R_i^T v for vectors,
    M -> R_i^T M R_i for rank-2 tensors. Scalar blocks are left untouched.

    :param values: ``(n_atoms, sum(sizes))``
    :param rotations: ``(n_atoms, 3, 3)``, the R_i used for the edge vectors
    :param components: per block, the component labels of the target
    :param shapes: per block, the shape of one atom's values
    :param sizes: per block, the number of values per atom
    """
    n_atoms = values.shape[0]
    pieces: List[torch.Tensor] = []
    start = 0
    for block_components, shape, size in zip(components, shapes, sizes):
        piece = values[:, start : start + size]
        rank = cartesian_rank(block_components)
        if rank > 0:
            piece = piece.reshape([n_atoms] + shape)
            transposed = rotations.transpose(1, 2).reshape(
                [n_atoms] + [1] * (len(shape) - 1) + [3, 3]
            )
            for axis in range(1, rank + 1):
                # (R^T v)_a = sum_b R_ba v_b along this axis, the others untouched
                moved = piece.movedim(axis, -1).unsqueeze(-2)
                piece = (transposed * moved).sum(-1).movedim(-1, axis)
            piece = piece.reshape(n_atoms, size)
        pieces.append(piece)
        start += size
    return torch.cat(pieces, dim=1)
