"""Equivariant Coordinate System Ensemble (Sec. 5 and App. F of Pozdnyakov & Ceriotti,
2023): exact, smooth, a-posteriori rotational symmetrization of metatomic models.

``ECSEModel`` and ``symmetrize`` are imported lazily, so that importing
:mod:`metatrain_pet.ecse.hypers` does not import torch.
"""

__all__ = ["ECSEModel", "symmetrize"]


def __getattr__(name):
    if name in __all__:
        from . import wrapper

        return getattr(wrapper, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
