"""metatrain-pet: the Point Edge Transformer and ECSE for metatrain/metatomic.

The architecture is reached by metatrain as ``experimental.pet_ecse``. Imports are
lazy: metatrain loads ``documentation.py`` by file path and must not pay for torch.
"""

from .pet.checkpoints import ARCHITECTURE_NAME

__version__ = "0.1.0"

__authors__ = [("metatrain-pet developers", "@metatrain-pet")]
__maintainers__ = [("metatrain-pet developers", "@metatrain-pet")]

__all__ = ["ARCHITECTURE_NAME"]


def __getattr__(name: str):
    if name == "__model__":
        from .pet.model import PET

        return PET
    if name == "__trainer__":
        from .training.trainer import Trainer

        return Trainer
    if name == "__capabilities__":
        from .pet.model import PET

        return {
            "supported_devices": PET.__supported_devices__,
            "supported_dtypes": PET.__supported_dtypes__,
        }
    raise AttributeError(f"module 'metatrain_pet' has no attribute {name!r}")
