"""Checks of the composition baseline fitted before training.

metatrain reads a NaN label as a missing one: its losses and error metrics skip it.
Its composition fit does not: one structure with a NaN (or infinite) energy makes
the per-species energies NaN, every energy target minus the baseline NaN, the
energy loss silently zero, and the first epoch's error metrics divide by zero. The
check below turns that into one line naming the structures to fix.
"""

from typing import List

import torch

MAX_NAMED = 5
"""Structures named in the error message, at most."""


def check_composition_baseline(composition_model, train_datasets: List) -> None:
    """Raises a ``ValueError`` when the per-species baseline of a target, as
    fitted by metatrain's ``CompositionModel`` on ``train_datasets``, is not
    finite, naming the training structures whose labels of that target are not."""
    for name, weights in composition_model.model.weights.items():
        if all(_finite(block.values) for block in weights.blocks()):
            continue
        raise ValueError(
            f"the composition baseline of target '{name}' is not finite, because "
            f"{non_finite_labels(train_datasets, name)}: remove these structures "
            "or fix their labels (a NaN label is read as a missing one everywhere "
            "but in this fit)"
        )


def non_finite_labels(datasets: List, name: str) -> str:
    """Which structures of ``datasets`` have non-finite values of target
    ``name``, in words (the first :data:`MAX_NAMED` of each dataset), numbered as
    in the data read (the frames of the file) when a dataset is a split of it."""
    parts = []
    for d, dataset in enumerate(datasets):
        bad = [
            index
            for index in range(len(dataset))
            if not _finite(getattr(dataset[index], name).block().values)
        ]
        bad = sorted(_index_in_data_read(dataset, index) for index in bad)
        if len(bad) > 0:
            shown = ", ".join(str(index) for index in bad[:MAX_NAMED])
            more = f" and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else ""
            parts.append(
                f"structures {shown}{more} of the data read for training set {d} "
                f"have non-finite values of '{name}'"
            )
    if len(parts) == 0:
        return f"the fit of '{name}' did not converge to finite values"
    return "; ".join(parts)


def _index_in_data_read(dataset, index: int) -> int:
    """The index of ``dataset[index]`` in the dataset read, through the splits
    (nested ``Subset``) metatrain made of it."""
    while isinstance(dataset, torch.utils.data.Subset):
        index, dataset = int(dataset.indices[index]), dataset.dataset
    return index


def _finite(values: torch.Tensor) -> bool:
    return bool(torch.isfinite(values).all())
