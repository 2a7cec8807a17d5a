"""Learning-rate schedules of the trainer (App. B and C of the paper)."""

from typing import Optional


def learning_rate_factor(
    step: int,
    steps_per_epoch: int,
    warmup_epochs: int,
    step_size: int,
    gamma: float,
    fast_decay_start: Optional[int],
    fast_decay_epochs: int,
) -> float:
    """Factor multiplying the base learning rate at optimisation ``step``.

    Linear warm-up over ``warmup_epochs`` epochs, then StepLR (a factor ``gamma``
    every ``step_size`` epochs). Once a fast decay has started at epoch
    ``fast_decay_start``, the factor further falls linearly to zero over
    ``fast_decay_epochs`` epochs (the "fast decay" of App. C.2/C.5).
    """
    epoch = step / max(steps_per_epoch, 1)
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    factor = gamma ** int(epoch // step_size)
    if fast_decay_start is not None:
        progress = (epoch - fast_decay_start) / max(fast_decay_epochs, 1)
        factor *= max(0.0, 1.0 - progress)
    return factor
