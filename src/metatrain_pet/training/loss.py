"""The training loss: metatrain's per-target loss terms, optionally normalised by a
moving average of their validation errors (Eq. 8 of the paper)."""

from typing import Any, Dict, Tuple

import torch
from metatensor.torch import TensorMap
from metatrain.utils.data import TargetInfo
from metatrain.utils.loss import LossAggregator


def expand_loss_hypers(
    loss: Any, targets: Dict[str, TargetInfo], energy_weight: float = 1.0
) -> Dict[str, Dict[str, Any]]:
    """Turn the ``loss`` hyper (a loss type for everything, or a mapping per target
    whose values are a type or a full specification) into one full specification
    per target, as :class:`metatrain.utils.loss.LossAggregator` expects.

    A target trained with gradients (an energy with forces or stress) gets the
    weight ``energy_weight`` for its values unless ``loss`` gives one; every
    gradient term and every other target gets weight 1 by default."""
    expanded: Dict[str, Dict[str, Any]] = {}
    for name, info in targets.items():
        spec = loss if isinstance(loss, str) else loss.get(name, "mse")
        if isinstance(spec, str):
            spec = {"type": spec}
        spec = dict(spec)
        spec.setdefault("type", "mse")
        spec.setdefault("weight", energy_weight if info.gradients else 1.0)
        spec.setdefault("reduction", "mean")
        gradients = dict(spec.get("gradients", {}))
        for gradient in info.gradients:
            gradient_spec = gradients.get(gradient, {"type": spec["type"]})
            if isinstance(gradient_spec, str):
                gradient_spec = {"type": gradient_spec}
            gradient_spec = dict(gradient_spec)
            gradient_spec.setdefault("type", "mse")
            gradient_spec.setdefault("weight", 1.0)
            gradient_spec.setdefault("reduction", "mean")
            gradients[gradient] = gradient_spec
        spec["gradients"] = gradients
        expanded[name] = spec
    return expanded


class NormalizedLoss:
    """Weighted sum of the loss terms (one per target and per gradient), each
    divided by its normalisation: L = Σ_t w_t l_t / MSE_t (Eq. 8), where MSE_t is an
    exponential moving average of the validation value of term t, updated once per
    epoch. Without normalisation (the default) every MSE_t is 1.

    :param aggregator: metatrain's loss terms and weights
    :param normalization: the moving averages, shared with the trainer so that they
        are saved in checkpoints and restored on restart
    """

    def __init__(self, aggregator: LossAggregator, normalization: Dict[str, float]):
        self.aggregator = aggregator
        self.normalization = normalization

    def __call__(
        self,
        predictions: Dict[str, TensorMap],
        targets: Dict[str, TensorMap],
        extra_data: Dict[str, TensorMap],
    ) -> Tuple[torch.Tensor, Dict[str, float]]:
        """:return: the total loss, and the unweighted value of every term"""
        total = torch.zeros(())
        terms: Dict[str, float] = {}
        for name, term in self.aggregator.losses.items():
            if term.target not in predictions:
                continue
            value = term.compute(predictions, targets, extra_data)
            total = total.to(value) + term.weight * value / self.normalization.get(
                name, 1.0
            )
            terms[name] = value.item()
        return total, terms

    def update_normalization(
        self, validation_terms: Dict[str, float], hypers: Dict[str, Any], first: bool
    ) -> None:
        """Fold this epoch's validation value of every term into its moving average
        (Eq. 8); does nothing unless ``loss_normalization`` is ``validation_ema``."""
        if hypers["loss_normalization"] != "validation_ema":
            return
        alpha = hypers["loss_ema_alpha"]
        for name, value in validation_terms.items():
            value = max(value, 1e-12)
            if first or name not in self.normalization:
                self.normalization[name] = value
            else:
                previous = self.normalization[name]
                self.normalization[name] = (1.0 - alpha) * previous + alpha * value
