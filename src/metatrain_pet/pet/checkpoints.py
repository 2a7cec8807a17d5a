"""Checkpoint versions of ``experimental.pet_ecse`` and their upgrades.

When the layout of a model or trainer checkpoint changes, bump the class's
``__checkpoint_version__``, add a function ``model_update_vN_vN+1`` (or
``trainer_update_...``) that rewrites an old checkpoint in place, register it below,
and store a reference checkpoint of the new version in ``tests/checkpoints/``.
"""

from typing import Any, Callable, Dict

ARCHITECTURE_NAME = "experimental.pet_ecse"
"""The name metatrain knows the architecture by, stored in every checkpoint."""


def model_update_v1_v2(checkpoint: Dict[str, Any]) -> None:
    """Version 2 adds the ECSE parameter ``frame_types`` (all types, as before)."""
    checkpoint["model_data"]["model_hypers"]["ecse"]["frame_types"] = []


def model_update_v2_v3(checkpoint: Dict[str, Any]) -> None:
    """Version 3 adds ``normalization``, ``activation``, ``attention_temperature``,
    ``carry_central_token`` and ``readout``; older models are LayerNorm, SiLU, 1,
    no carried central token, readout from every block."""
    hypers = checkpoint["model_data"]["model_hypers"]
    hypers.setdefault("normalization", "LayerNorm")
    hypers.setdefault("activation", "SiLU")
    hypers.setdefault("attention_temperature", 1.0)
    hypers.setdefault("carry_central_token", False)
    hypers.setdefault("readout", "every_block")


_RENAMED_V4 = {
    "network.backbone.blocks.": "network.message_passing.blocks.",
    "network.backbone.readouts.": "network.heads.blocks.",
}


def model_update_v3_v4(checkpoint: Dict[str, Any]) -> None:
    """Version 4 names the readout width ``d_readout`` (was ``d_head``), adds the
    ECSE parameter ``max_evaluated_pairs``, splits
    the backbone into ``message_passing`` and ``heads``, and stores nothing of
    ECSE but its parameters (no ``symmetrizer.*`` entries: the network once, the
    fixed rotations rebuilt from the hypers)."""
    hypers = checkpoint["model_data"]["model_hypers"]
    hypers["d_readout"] = hypers.pop("d_head")
    hypers["ecse"].setdefault("max_evaluated_pairs", 300000)
    for key in ("model_state_dict", "best_model_state_dict"):
        state = checkpoint.get(key)
        if state is not None:
            checkpoint[key] = _renamed_v4(state)


def _renamed_v4(state: Dict[str, Any]) -> Dict[str, Any]:
    renamed: Dict[str, Any] = {}
    for name, value in state.items():
        if name.startswith("symmetrizer."):
            continue
        for old, new in _RENAMED_V4.items():
            if name.startswith(old):
                name = new + name[len(old) :]
        renamed[name] = value
    return renamed


def model_update_v4_v5(checkpoint: Dict[str, Any]) -> None:
    """Version 5 adds the ``zbl`` repulsion (off before) and records the
    fine-tuning strategy applied to the model (none before)."""
    checkpoint["model_data"]["model_hypers"].setdefault("zbl", False)
    checkpoint["model_data"].setdefault("finetune_config", {})


def model_update_v5_v6(checkpoint: Dict[str, Any]) -> None:
    """Version 6 adds extra inputs (``atomic_inputs``, ``system_conditioning``;
    none before), ``long_range`` (off before) and ``radial_basis`` (none before)."""
    hypers = checkpoint["model_data"]["model_hypers"]
    hypers.setdefault("radial_basis", 0)
    hypers.setdefault(
        "long_range",
        {
            "enable": False,
            "use_ewald": False,
            "smearing": 1.4,
            "kspace_resolution": 1.33,
            "interpolation_nodes": 5,
        },
    )
    hypers.setdefault("atomic_inputs", [])
    hypers.setdefault("discretize_atomic_inputs", False)
    hypers.setdefault("system_conditioning", False)
    hypers.setdefault("max_charge", 10)
    hypers.setdefault("max_spin_multiplicity", 10)


def model_update_v6_v7(checkpoint: Dict[str, Any]) -> None:
    """Version 7 adds the ECSE parameter ``gradual_onset`` (Eq. 23 as printed
    before, so off)."""
    checkpoint["model_data"]["model_hypers"]["ecse"].setdefault("gradual_onset", False)


MODEL_UPDATES: Dict[int, Callable[[Dict[str, Any]], None]] = {
    1: model_update_v1_v2,
    2: model_update_v2_v3,
    3: model_update_v3_v4,
    4: model_update_v4_v5,
    5: model_update_v5_v6,
    6: model_update_v6_v7,
}
"""Model upgrade functions, keyed by the version they upgrade from."""


def trainer_update_v1_v2(checkpoint: Dict[str, Any]) -> None:
    """Version 2 adds ``energy_weight``: older runs weighted energies 1."""
    checkpoint["train_hypers"].setdefault("energy_weight", 1.0)


def trainer_update_v2_v3(checkpoint: Dict[str, Any]) -> None:
    """Version 3 adds data-parallel training (``distributed``: detected, and
    ``distributed_port``)."""
    checkpoint["train_hypers"].setdefault("distributed", None)
    checkpoint["train_hypers"].setdefault("distributed_port", 39591)


def trainer_update_v3_v4(checkpoint: Dict[str, Any]) -> None:
    """Version 4 adds ``invariance_weight`` (0: no penalty, as before)."""
    checkpoint["train_hypers"].setdefault("invariance_weight", 0.0)


TRAINER_UPDATES: Dict[int, Callable[[Dict[str, Any]], None]] = {
    1: trainer_update_v1_v2,
    2: trainer_update_v2_v3,
    3: trainer_update_v3_v4,
}
"""Trainer upgrade functions, keyed by the version they upgrade from."""


def upgrade(
    checkpoint: Dict[str, Any],
    kind: str,
    current_version: int,
    updates: Dict[int, Callable[[Dict[str, Any]], None]],
) -> Dict[str, Any]:
    """Apply the upgrade functions until ``checkpoint`` reaches ``current_version``.

    :param checkpoint: the checkpoint, modified in place
    :param kind: ``"model"`` or ``"trainer"``
    :param current_version: the version of the installed code
    :param updates: upgrade functions keyed by their starting version
    :return: the upgraded checkpoint
    :raises RuntimeError: if no chain of upgrades reaches ``current_version``
    """
    key = f"{kind}_ckpt_version"
    while checkpoint[key] in updates and checkpoint[key] < current_version:
        updates[checkpoint[key]](checkpoint)
        checkpoint[key] += 1
    if checkpoint[key] != current_version:
        raise RuntimeError(
            f"Unable to upgrade the checkpoint: the checkpoint is using {kind} "
            f"version {checkpoint[key]}, while the current {kind} version is "
            f"{current_version}."
        )
    return checkpoint
