"""A structure without atoms has zero energy, raw and ECSE alike, alone or in a
batch with others (issue 18). The trained reference checkpoint carries a
composition baseline (metatrain gives an empty structure no sample for it), which
must not be broadcast onto the other structures of the batch."""

import gzip
import io
from pathlib import Path

import ase.io
import pytest
import torch
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import (
    ModelEvaluationOptions,
    ModelOutput,
    System,
    systems_to_torch,
)
from metatrain.utils.io import model_from_checkpoint
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.ecse import symmetrize

TESTS = Path(__file__).parent
CHECKPOINT = TESTS / "checkpoints" / "model-v4_trainer-v2.ckpt.gz"


@pytest.fixture(scope="module")
def exported():
    with gzip.open(CHECKPOINT) as file:
        checkpoint = torch.load(io.BytesIO(file.read()), weights_only=False)
    model = model_from_checkpoint(checkpoint, context="export").to(torch.float64)
    raw = model.export()
    return {"raw": raw, "ecse": symmetrize(raw, fallback="adaptive")}


def _empty_system(model) -> System:
    """A system with no atoms and empty neighbour lists (vesin, which builds them
    in the engines, refuses zero points)."""
    system = System(
        types=torch.zeros(0, dtype=torch.int32),
        positions=torch.zeros((0, 3), dtype=torch.float64, requires_grad=True),
        cell=torch.zeros((3, 3), dtype=torch.float64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )
    names = ["first_atom", "second_atom", "cell_shift_a", "cell_shift_b"]
    samples = Labels(names + ["cell_shift_c"], torch.zeros((0, 5), dtype=torch.int32))
    for options in model.requested_neighbor_lists():
        pairs = TensorBlock(
            torch.zeros((0, 3, 1), dtype=torch.float64),
            samples,
            [Labels.range("xyz", 3)],
            Labels.range("distance", 1),
        )
        system.add_neighbor_list(options, pairs)
    return system


def _energies(model, systems):
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={"energy": ModelOutput(unit="eV")}
    )
    result = model(systems, options, check_consistency=True)
    return result["energy"].block().values[:, 0]


@pytest.mark.parametrize("kind", ["raw", "ecse"])
def test_empty_structure_has_zero_energy_alone_and_in_a_batch(exported, kind):
    model = exported[kind]
    ethanol = ase.io.read(TESTS / "data" / "ethanol_40.xyz", index="0")

    molecule = get_system_with_neighbor_lists(
        systems_to_torch(ethanol, dtype=torch.float64),
        model.requested_neighbor_lists(),
    )
    alone = _energies(model, [molecule])
    assert abs(float(alone[0])) > 1.0  # the composition baseline is there
    assert _energies(model, [_empty_system(model)]).tolist() == [0.0]
    batch = _energies(model, [_empty_system(model), molecule, _empty_system(model)])
    torch.testing.assert_close(
        batch, torch.stack([alone[0] * 0, alone[0], alone[0] * 0])
    )
