"""The smooth cutoff function of PET."""

import torch


def cutoff_function(r: torch.Tensor, r_cut: float, width: float) -> torch.Tensor:
    """Smooth switching function f_c(r | R_c, Δ_Rc) of Eq. 9.

    Equal to 1 for ``r <= r_cut - width``, to 0 for ``r >= r_cut``, and in between
    ``(tanh(1/(x+1) + 1/(x-1)) + 1) / 2`` with ``x = 2 (r - r_cut + width/2) / width``
    running from -1 to 1. It is infinitely differentiable everywhere; the masked
    evaluation keeps the gradients finite (and exactly zero) outside the switching
    region.

    :param r: distances, any shape
    :param r_cut: cutoff radius R_c
    :param width: width Δ_Rc of the switching region
    :return: f_c(r), same shape as ``r``
    """
    x = 2.0 * (r - r_cut + 0.5 * width) / width
    inside = (x > -1.0) & (x < 1.0)
    x_safe = torch.where(inside, x, torch.zeros_like(x))
    switching = 0.5 * (torch.tanh(1.0 / (x_safe + 1.0) + 1.0 / (x_safe - 1.0)) + 1.0)
    outside = torch.where(x <= -1.0, torch.ones_like(x), torch.zeros_like(x))
    return torch.where(inside, switching, outside)
