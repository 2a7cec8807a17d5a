"""Rotational augmentation during training (App. B and App. F.10 of the paper).

- ``structure`` (App. B): every structure, and its targets, is rotated by a fresh
  uniformly random rotation each time it is seen, i.e. at every epoch.
- ``environment`` (App. F.10): every atomic environment is rotated by its own random
  rotation inside the network (:class:`metatrain_pet.pet.network.PETNetwork`), so
  that messages can only carry rotation-invariant content. The targets are left in
  the laboratory frame; Cartesian predictions are rotated back per atom.
"""

from typing import Dict, List, Tuple

import torch
from metatensor.torch import TensorMap
from metatomic.torch import System
from metatrain.utils.augmentation import O3Augmenter
from metatrain.utils.data import TargetInfo

from ..geometry.rotations import random_rotations
from ..pet.network import PETNetwork


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
            len(systems),
            self.inversion,
            systems[0].positions.dtype,
            torch.device("cpu"),
        )
        return self.augmenter.apply_augmentations(
            systems, targets, list(matrices.unbind(0)), extra_data=extra_data
        )


def check_environment_augmentation(targets: Dict[str, TargetInfo]) -> None:
    """Refuse targets that per-environment rotations cannot handle: the per-atom
    predictions are rotated back with Cartesian rotation matrices, so spherical
    targets (which would need Wigner matrices) are not supported."""
    spherical = [name for name, info in targets.items() if info.is_spherical]
    if len(spherical) > 0:
        raise ValueError(
            f"`augmentation: environment` does not support spherical targets "
            f"({', '.join(spherical)}): per-atom predictions can only be rotated "
            "back for scalar and Cartesian targets. Use `augmentation: structure`, "
            "or express these targets as Cartesian tensors."
        )


def set_environment_rotation(
    model: torch.nn.Module, enabled: bool, inversion: bool
) -> None:
    """Switch the per-environment rotations of every PET network inside ``model``
    (they only act in training mode)."""
    for module in model.modules():
        if isinstance(module, PETNetwork):
            module.rotate_environments = enabled
            module.rotation_inversion = inversion
