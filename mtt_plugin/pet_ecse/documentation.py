"""Hyper-parameters of ``experimental.pet_ecse``, re-exported from metatrain_pet."""

from metatrain_pet.documentation import ModelHypers, TrainerHypers
from metatrain_pet.documentation import __doc__ as _doc

__doc__ = _doc
__all__ = ["ModelHypers", "TrainerHypers"]
