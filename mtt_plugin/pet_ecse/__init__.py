"""Entry point that metatrain finds as ``experimental.pet_ecse``.

metatrain 2026.4 only discovers architectures inside its own package directory, so
the wheel installs this folder there. Everything lives in :mod:`metatrain_pet`.
"""

from metatrain_pet import (
    __authors__,
    __capabilities__,
    __maintainers__,
    __model__,
    __trainer__,
)

__all__ = [
    "__authors__",
    "__capabilities__",
    "__maintainers__",
    "__model__",
    "__trainer__",
]
