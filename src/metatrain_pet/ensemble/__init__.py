"""Ensembles of trained models as one exported model (the paper's PET-ens), with
the members' spread as an uncertainty: :func:`~.model.build_ensemble` and the
``metatrain-pet ensemble`` command."""

from .model import EnsembleModel, build_ensemble

__all__ = ["EnsembleModel", "build_ensemble"]
