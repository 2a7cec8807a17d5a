"""Random rotations (and inversions) for rotational augmentation (App. B)."""

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import TensorMap
from metatomic.torch import System
from metatrain.utils.augmentation import O3Augmenter
from metatrain.utils.data import TargetInfo


def random_rotations(
    n: int,
    inversion: bool,
    dtype: torch.dtype,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """``n`` rotation matrices drawn uniformly from SO(3) (Haar measure, through
    uniformly distributed unit quaternions), multiplied by a random ±1 when
    ``inversion`` is set.

    :return: tensor of shape ``(n, 3, 3)``
    """
    quaternions = torch.randn((n, 4), generator=generator, dtype=torch.float64)
    quaternions = quaternions / torch.linalg.vector_norm(
        quaternions, dim=1, keepdim=True
    )
    w, x, y, z = quaternions.unbind(1)
    matrices = torch.stack(
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
    ).reshape(n, 3, 3)
    if inversion:
        signs = torch.randint(0, 2, (n,), generator=generator) * 2 - 1
        matrices = matrices * signs.to(matrices.dtype)[:, None, None]
    return matrices.to(dtype)


class StructureRotation:
    """Rotates every structure of a batch, and its targets consistently, by a fresh
    random rotation (and optional inversion) each time it is called: the
    augmentation of App. B, applied at every epoch."""

    def __init__(self, targets: Dict[str, TargetInfo], inversion: bool):
        self.inversion = inversion
        self.augmenter = O3Augmenter(target_info_dict=targets)

    def __call__(
        self,
        systems: List[System],
        targets: Dict[str, TensorMap],
        extra_data: Dict[str, TensorMap],
    ) -> Tuple[List[System], Dict[str, TensorMap], Dict[str, TensorMap]]:
        matrices = random_rotations(
            len(systems), self.inversion, systems[0].positions.dtype
        )
        return self.augmenter.apply_augmentations(
            systems, targets, list(matrices.unbind(0)), extra_data=extra_data
        )
