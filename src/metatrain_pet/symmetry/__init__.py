"""Approximate rotational symmetrization and symmetry diagnostics.

Grid averaging and on-the-fly random rotations follow Langer, Pozdnyakov and Ceriotti,
"Probing the effects of broken symmetries in machine learning" (2024); see
``docs/symmetry.md`` for usage.
"""

from .grid import grid_average, grid_evaluation_count, grid_rotation_count
from .random_rotation import RandomRotationModel, random_rotation_average
from .report import build_report, format_summary
from .variants import OutputVariantModel, with_symmetrized_variant

__all__ = [
    "OutputVariantModel",
    "RandomRotationModel",
    "build_report",
    "format_summary",
    "grid_average",
    "grid_evaluation_count",
    "grid_rotation_count",
    "random_rotation_average",
    "with_symmetrized_variant",
]
