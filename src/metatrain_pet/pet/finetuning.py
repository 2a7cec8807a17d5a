"""Fine-tuning strategies (``training: finetune: method:``): metatrain's own
(``full``, ``heads``, ``lora``, ``inherit_heads``), given the names of our modules,
and the merge of LoRA adapters back into plain linear layers for export."""

import copy
from typing import Any, Dict

import torch
from metatrain.pet.modules.finetuning import LoRALinear, apply_finetuning_strategy

HEADS = {"head_modules": ["network.heads"], "last_layer_modules": []}
"""``heads``: every prediction head (atomic and bond heads of every block)."""

LORA = {"rank": 4, "alpha": 8.0, "target_modules": ["input_projection",
                                                     "output_projection"]}  # fmt: skip
"""``lora``: adapters on the attention's and the feed-forward's projections."""


def strategy(finetune: Dict[str, Any]) -> Dict[str, Any]:
    """The ``finetune`` hypers with our defaults for the method's ``config``."""
    method = finetune["method"]
    defaults: Dict[str, Any] = {"heads": HEADS, "lora": LORA}.get(method, {})
    unknown = sorted(set(finetune["config"]) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown finetune.config options {unknown} for method '{method}' "
            f"(known: {sorted(defaults)})"
        )
    return {
        "method": method,
        "config": {**copy.deepcopy(defaults), **finetune["config"]},
        "inherit_heads": dict(finetune["inherit_heads"]),
    }


def apply(model: torch.nn.Module, config: Dict[str, Any], first_time: bool) -> None:
    """Freeze what ``config`` (from :func:`strategy`) keeps fixed and inject its
    adapters, with metatrain's implementation; ``first_time`` also copies the
    inherited heads (once, when fine-tuning starts, not on a restart)."""
    apply_finetuning_strategy(model, config, apply_inherit_heads=first_time)


def merged_lora(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` in which every LoRA layer is replaced by the linear
    layer it computes, W + (α/r) B A with the same bias: the same function, at
    the cost of the original model (``model`` itself if it has no adapters)."""
    if not any(isinstance(module, LoRALinear) for module in model.modules()):
        return model
    merged = copy.deepcopy(model)
    for module in list(merged.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, _merged_linear(child))
    return merged


def _merged_linear(lora: LoRALinear) -> torch.nn.Linear:
    linear = copy.deepcopy(lora.linear)
    with torch.no_grad():
        update = lora.lora_B.weight @ lora.lora_A.weight
        linear.weight += lora.scaling * update
    return linear
