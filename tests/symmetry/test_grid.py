"""Grid averaging through metatomic's SymmetrizedModel."""

import numpy as np
import pytest
import torch
from metatomic.torch import (
    ModelEvaluationOptions,
    ModelOutput,
    load_atomistic_model,
    systems_to_torch,
)
from metatomic.torch.o3 import SymmetrizedModel
from scipy.integrate import lebedev_rule
from vesin.metatomic import neighbor_lists_for_model

from metatrain_pet.symmetry.diagnostics import (
    random_orthogonal_matrices,
    symmetry_errors,
)
from metatrain_pet.symmetry.grid import (
    EULER_GRID_ROTATIONS,
    LEBEDEV_POINTS,
    grid_average,
    grid_evaluation_count,
    grid_rotation_count,
)


class CountingModel(torch.nn.Module):
    """Forward to a model, counting the systems it is evaluated on."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n_systems = 0

    def forward(self, systems, outputs, selected_atoms):
        self.n_systems += len(systems)
        return self.model(systems, outputs, selected_atoms)


def test_lebedev_table_matches_scipy():
    for degree, n_points in LEBEDEV_POINTS.items():
        assert lebedev_rule(degree)[0].shape[1] == n_points


def test_evaluation_counts_of_documented_orders():
    counts = {order: grid_evaluation_count(order) for order in (2, 3, 5, 7)}
    assert counts == {2: 36, 3: 48, 5: 168, 7: 416}
    # the order-2 grid has as many evaluations as the paper's 2i Euler grid
    assert counts[2] == EULER_GRID_ROTATIONS["2i"]
    assert grid_rotation_count(3) == 24


@pytest.mark.parametrize("order", [1, 3])
def test_evaluation_count_is_what_symmetrized_model_runs(
    raw_model, ethanol_frames, order
):
    counting = CountingModel(raw_model.module)
    averaged = SymmetrizedModel(
        counting, max_angular_momentum_target=0, max_angular_momentum_grid=order
    )
    system = systems_to_torch(ethanol_frames[0], dtype=torch.float64)
    for calculator in neighbor_lists_for_model("Angstrom", raw_model):
        calculator.add_neighbor_list(system)
    averaged([system], {"energy": ModelOutput(sample_kind="system")}, None)
    assert counting.n_systems == grid_evaluation_count(order)


@pytest.mark.parametrize("order", [-1, 132, 2.5, True])
def test_invalid_orders_are_refused(raw_model, order):
    with pytest.raises(ValueError, match="grid order"):
        grid_average(raw_model, order)


def test_symmetry_error_falls_with_order(raw_model, ethanol_frames):
    rotations = random_orthogonal_matrices(3, seed=1)
    atoms = ethanol_frames[0]
    errors = [symmetry_errors(raw_model, atoms, rotations)]
    # orders 2 and 3 share one Lebedev sphere (6 points) and differ only in the
    # in-plane rotations, so their order depends on the rotations drawn: compare
    # grids of distinct sphere degrees
    for order in (1, 3, 5):
        averaged = grid_average(raw_model, order, batch_size=64)
        errors.append(symmetry_errors(averaged, atoms, rotations, batch_size=1))

    for kind in ("energy", "forces"):
        spreads = [getattr(error, kind) for error in errors]
        assert spreads[0] > 1e-3
        assert all(np.diff(spreads) < 0), (kind, spreads)
        assert spreads[-1] < 1e-2 * spreads[0], (kind, spreads)


def test_averaged_model_saves_loads_and_reports_variance(
    raw_model, ethanol_frames, tmp_path
):
    path = tmp_path / "averaged.pt"
    grid_average(raw_model, 2).save(str(path))
    averaged = load_atomistic_model(str(path))

    outputs = averaged.capabilities().outputs
    assert "energy" in outputs
    assert "o3::variance::energy" in outputs

    system = systems_to_torch(ethanol_frames[0], dtype=torch.float64)
    for calculator in neighbor_lists_for_model("Angstrom", averaged):
        calculator.add_neighbor_list(system)
    options = ModelEvaluationOptions(
        length_unit="Angstrom",
        outputs={
            "energy": ModelOutput(unit="eV", sample_kind="system"),
            "o3::variance::energy": ModelOutput(sample_kind="system"),
        },
    )
    results = averaged([system], options, check_consistency=True)
    variance = results["o3::variance::energy"].block().values.item()
    # the untrained model is far from invariant: its energy varies over the grid
    assert variance > 1e-8
