"""Learning-rate schedules of the trainer (App. B, C.2 and C.5 of the paper, and
the cosine decay of the default setting)."""

import math
from typing import Optional


def learning_rate_factor(
    step: int,
    steps_per_epoch: int,
    warmup_epochs: int,
    step_size: int,
    gamma: float,
    fast_decay_start: Optional[int],
    fast_decay_epochs: int,
    cosine_epochs: Optional[int] = None,
) -> float:
    """Factor multiplying the base learning rate at optimisation ``step`` (counted
    from the start of training, ``steps_per_epoch`` steps per epoch).

    - Warm-up (App. B): the factor grows linearly, step by step, from
      ``1 / warmup_steps`` to 1 over the first ``warmup_epochs`` epochs.
    - StepLR (App. B): then it is ``gamma ** floor(epoch / step_size)``.
    - Cosine (when ``cosine_epochs`` is given, the length of the whole run): instead
      of StepLR, ``(1 + cos(π p)) / 2`` with p the fraction of the post-warm-up
      steps done, reaching zero at the last step.
    - Fast decay (App. C.2, C.5): once a decay has started at epoch
      ``fast_decay_start``, StepLR is frozen at its value of that epoch and the
      factor falls linearly to zero over ``fast_decay_epochs`` epochs.
    """
    steps_per_epoch = max(steps_per_epoch, 1)
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    epoch = step / steps_per_epoch
    if cosine_epochs is not None:
        decay_steps = max(cosine_epochs * steps_per_epoch - warmup_steps, 1)
        progress = min((step - warmup_steps) / decay_steps, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if fast_decay_start is None:
        return gamma ** int(epoch // step_size)
    progress = (epoch - fast_decay_start) / fast_decay_epochs
    return gamma ** (fast_decay_start // step_size) * max(0.0, 1.0 - progress)
