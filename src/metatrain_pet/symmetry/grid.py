"""Rotational averaging over a fixed quadrature grid.

Implements the inference-time symmetrisation of Eq. (1) of Langer, Pozdnyakov and
Ceriotti, "Probing the effects of broken symmetries in machine learning" (2024):
the prediction is averaged over a grid of rotated (and inverted) copies of the
structure, and becomes exactly invariant as the grid is refined. The averaging itself
is :py:class:`metatomic.torch.o3.SymmetrizedModel`; this module only chooses its grid
and counts what it costs.

SymmetrizedModel combines a Lebedev rule of degree ``order`` on the sphere with
``order + 1`` in-plane rotations, and always evaluates the improper copy ``-R`` of
every rotation ``R`` as well (the equivalent of the paper's ``N[i]`` grids).
"""

from metatomic.torch import AtomisticModel
from metatomic.torch.o3 import SymmetrizedModel

MAX_GRID_ORDER = 131

# Lebedev rule degree -> number of points on the sphere, for the degrees that
# SymmetrizedModel uses (it picks the smallest degree not below the requested order)
LEBEDEV_POINTS = {
    3: 6,
    5: 14,
    7: 26,
    9: 38,
    11: 50,
    13: 74,
    15: 86,
    17: 110,
    19: 146,
    21: 170,
    23: 194,
    25: 230,
    27: 266,
    29: 302,
    31: 350,
    35: 434,
    41: 590,
    47: 770,
    53: 974,
    59: 1202,
    65: 1454,
    71: 1730,
    77: 2030,
    83: 2354,
    89: 2702,
    95: 3074,
    101: 3470,
    107: 3890,
    113: 4334,
    119: 4802,
    125: 5294,
    131: 5810,
}

# Number of rotations in the Euler-angle grids N[i] of Langer et al. (2024), main text
EULER_GRID_ROTATIONS = {"2": 18, "2i": 36, "3": 75, "3i": 150}


def validate_grid_order(order: int) -> int:
    """Check that ``order`` is a quadrature degree SymmetrizedModel accepts."""
    if isinstance(order, bool) or not isinstance(order, int):
        raise ValueError(f"the grid order must be an integer, got {order!r}")
    if order < 0 or order > MAX_GRID_ORDER:
        raise ValueError(
            f"the grid order must be between 0 and {MAX_GRID_ORDER}, got {order}"
        )
    return order


def grid_rotation_count(order: int) -> int:
    """Number of proper rotations in the grid of degree ``order``."""
    validate_grid_order(order)
    lebedev_degree = min(degree for degree in LEBEDEV_POINTS if degree >= order)
    return LEBEDEV_POINTS[lebedev_degree] * (order + 1)


def grid_evaluation_count(order: int) -> int:
    """Number of evaluations of the wrapped model per structure.

    Every proper rotation is also evaluated composed with the inversion.
    """
    return 2 * grid_rotation_count(order)


def grid_average(
    model: AtomisticModel, order: int, batch_size: int = 32
) -> AtomisticModel:
    """Wrap ``model`` so that every output is averaged over the grid of ``order``.

    The returned model keeps the outputs of ``model`` under their names (now the
    O(3) averages; conservative forces follow from the averaged energy through
    autograd) and adds one ``o3::variance::<name>`` diagnostic output per output.

    :param model: exported model to average
    :param order: quadrature degree; spherical harmonics up to this degree are
        integrated exactly
    :param batch_size: number of rotated copies evaluated in one call of ``model``
    """
    validate_grid_order(order)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return SymmetrizedModel.wrap(
        model, max_angular_momentum_grid=order, batch_size=batch_size
    )
