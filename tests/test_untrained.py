"""The builder of untrained energy models shared by tests, examples and benchmarks."""

import pytest
import torch

from metatrain_pet.pet.untrained import TINY_SIZES, untrained_energy_model


@pytest.mark.parametrize("architecture", ["experimental.pet_ecse", "pet"])
def test_builds_both_architectures(architecture):
    model = untrained_energy_model(architecture, dtype=torch.float32, **TINY_SIZES)
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert model.hypers["d_pet"] == TINY_SIZES["d_pet"]
    assert list(model.dataset_info.targets) == ["energy"]


def test_same_seed_same_weights():
    first, second = (untrained_energy_model(seed=3, **TINY_SIZES) for _ in range(2))
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unknown_hyper_is_named():
    with pytest.raises(ValueError, match="d_petz"):
        untrained_energy_model(d_petz=8)
