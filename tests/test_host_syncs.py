"""Host synchronisations (metatrain_pet/host_syncs.py): on a GPU every operator
whose result the host reads waits for the kernels queued before it, so an energy +
forces step must make a fixed number of them, whatever the number of atoms, of
chunks of environments and of lean-forces passes. Counted on CPU."""

import pytest
import torch

from metatrain_pet.host_syncs import count_host_syncs
from metatrain_pet.runtime import set_lean_forces, set_max_tokens
from pet_helpers import LEAN_MODES, energy_and_forces, energy_model

MODES = {"full graph": (-1,), **LEAN_MODES}
"""``set_lean_forces`` arguments of each mode."""


def test_the_counter_sees_scalars_lists_masks_and_data_dependent_sizes():
    values = torch.tensor([1.0, -2.0, 3.0])

    def run():
        total = int(values.sum())
        positive = values[values > 0]
        listed = values.tolist()
        counts = torch.bincount(torch.tensor([0, 2, 2]))
        return total, positive, listed, counts

    (total, positive, listed, counts), syncs = count_host_syncs(run)
    assert (total, listed, counts.tolist()) == (2, [1.0, -2.0, 3.0], [1, 0, 2])
    assert torch.equal(positive, torch.tensor([1.0, 3.0]))
    assert syncs == {
        "aten::_local_scalar_dense": 1,
        "aten::index": 1,
        "Tensor.tolist": 1,
        "aten::bincount": 1,
    }
    assert count_host_syncs(lambda: values * 2.0 + values[torch.tensor([0])])[1] == {}


@pytest.mark.parametrize("mode", list(MODES))
def test_host_syncs_per_step_do_not_grow_with_atoms_or_chunks(slab, mode):
    """192 and 384 atoms, in chunks of at most 300 and 100 tokens (~20 to ~130
    chunks per block): the same number of synchronisations per step."""
    model = energy_model([1, 8])
    set_lean_forces(model, *MODES[mode])
    totals = {}
    for atoms in (slab, slab.repeat((2, 1, 1))):
        for max_tokens in (300, 100):
            set_max_tokens(model, max_tokens)
            (_, forces), syncs = count_host_syncs(energy_and_forces, model, atoms)
            assert float(forces.abs().max()) > 0.0
            totals[(len(atoms), max_tokens)] = sum(syncs.values())
    assert len(set(totals.values())) == 1, totals
    assert 0 < totals[(192, 300)] <= 40
