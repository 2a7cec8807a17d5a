"""The estimate of the graph memory that decides when lean forces switch on
(``metatrain_pet.nn.graph_memory``, ``PETNetwork.graph_tokens``): it follows the
bytes autograd really keeps for a forces evaluation, whatever the shape of the
model, so that one threshold means one amount of memory."""

import ase.io
import pytest
import torch
from metatomic.torch import ModelOutput
from metatrain.utils.architectures import get_default_hypers

from metatrain_pet.nn.graph_memory import (
    REFERENCE_FLOATS,
    REFERENCE_WIDTH,
    saved_bytes,
    token_floats,
)
from metatrain_pet.systems.batch import longest_environment
from pet_helpers import ARCHITECTURE_NAME, DATA, energy_model, system_from_atoms

ENERGY = {"energy": ModelOutput(sample_kind="system")}

BASE = {"d_pet": 32, "d_readout": 32, "d_feedforward": 64, "num_heads": 4}

SHAPES = {
    "small": {},
    "wide feed-forward": {"d_feedforward": 512},
    "16 heads": {"num_heads": 16},
    "3 x 3 layers": {"num_attention_layers": 3, "num_gnn_layers": 3},
    "SwiGLU": {"activation": "SwiGLU", "d_feedforward": 256},
    "wide": {"d_pet": 96, "d_readout": 96},
}


def test_the_unit_is_a_float32_token_of_the_default_model_in_water():
    fixed, per_width = token_floats(get_default_hypers(ARCHITECTURE_NAME)["model"])
    assert fixed + per_width * REFERENCE_WIDTH == REFERENCE_FLOATS


def _saved_bytes(model, system) -> int:
    """Bytes autograd keeps for the forces of ``system``."""
    positions = system.positions.requires_grad_(True)
    energy, kept = saved_bytes(lambda: model([system], ENERGY)["energy"], model)
    torch.autograd.grad(energy.block().values.sum(), positions)
    return kept


@pytest.mark.parametrize("shape", list(SHAPES), ids=list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_estimate_follows_the_saved_tensors(shape, dtype):
    """Estimated and measured bytes per token agree within 20 % for models whose
    memory is dominated by different terms (width, feed-forward, attention
    coefficients, depth, gated activation), in either precision."""
    hypers = dict(BASE, cutoff=5.0, **SHAPES[shape])
    model = energy_model([1, 8], dtype=dtype, **hypers)
    model.network.lean_forces_above = -1
    model.requires_grad_(False)  # as exported: no graph for the weights' gradients
    atoms = ase.io.read(DATA / "water64_2.xyz", "0")
    system = system_from_atoms(model, atoms, dtype)
    width = longest_environment(system, model.network.neighbor_list_options)
    tokens = len(atoms) * width
    units = model.network.graph_tokens(tokens, width, system.positions)
    estimated = units * 4 * REFERENCE_FLOATS
    measured = _saved_bytes(model, system)
    assert 0.8 < measured / estimated < 1.2, (measured / tokens, estimated / tokens)


def test_a_float64_token_counts_twice_and_a_wider_model_more():
    narrow = energy_model([1, 8], **BASE).network
    wide = energy_model([1, 8], **dict(BASE, d_pet=64, d_feedforward=128)).network
    single, double = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    tokens = 10**6
    count = narrow.graph_tokens(tokens, 40, single)
    assert narrow.graph_tokens(tokens, 40, double) in (2 * count, 2 * count + 1)
    assert wide.graph_tokens(tokens, 40, single) > 1.5 * count
    assert narrow.graph_tokens(tokens, 80, single) > count
