"""Environments processed in chunks of similar length (nn/chunks.py): the plan
covers every atom and edge once within the token budget, and chunking changes the
cost, never the energies, forces or training gradients."""

import pytest
import torch
from metatomic.torch import ModelOutput

from metatrain_pet.nn.chunks import plan_chunks
from metatrain_pet.runtime import set_max_tokens
from pet_helpers import energy_and_forces, energy_model, system_from_atoms


def test_plan_covers_every_atom_and_edge_once_within_the_budget():
    generator = torch.Generator().manual_seed(0)
    n_atoms, max_tokens = 50, 40
    counts = torch.randint(0, 12, (n_atoms,), generator=generator)
    centers = torch.repeat_interleave(torch.arange(n_atoms), counts)
    chunks = plan_chunks(centers, n_atoms, max_tokens)

    assert len(chunks.atoms) > 3
    assert sorted(torch.cat(chunks.atoms).tolist()) == list(range(n_atoms))
    assert sorted(torch.cat(chunks.edges).tolist()) == list(range(centers.shape[0]))
    order = torch.cat(chunks.atoms)
    assert torch.equal(order[chunks.atom_rank], torch.arange(n_atoms))
    assert torch.equal(
        torch.cat(chunks.edges)[chunks.edge_rank], torch.arange(len(centers))
    )
    sorted_counts = counts[order]
    assert bool(torch.all(sorted_counts[1:] >= sorted_counts[:-1]))
    for atoms, edges, rows, length in zip(
        chunks.atoms, chunks.edges, chunks.rows, chunks.lengths
    ):
        assert length == int(counts[atoms].max()) + 1
        assert atoms.shape[0] * length <= max_tokens
        assert torch.equal(atoms[rows], centers[edges])


@pytest.mark.parametrize("max_tokens", [30, 200, 1000])
def test_chunked_energies_and_forces_equal_one_padded_tensor(slab, max_tokens):
    model = energy_model([1, 8])
    assert set_max_tokens(model, 10**9) == 2
    energy, forces = energy_and_forces(model, slab)
    set_max_tokens(model, max_tokens)
    chunked_energy, chunked_forces = energy_and_forces(model, slab)

    assert chunked_energy == pytest.approx(energy, rel=1e-12)
    torch.testing.assert_close(chunked_forces, forces, rtol=1e-11, atol=1e-12)


def test_chunked_training_gradients_equal_one_padded_tensor(slab):
    """The double backward of a force loss goes through the chunks unchanged."""
    model = energy_model([1, 8])
    network = model.network
    network.train()
    gradients = []
    for max_tokens in (10**9, 100):
        set_max_tokens(model, max_tokens)
        system = system_from_atoms(model, slab)
        positions = system.positions.requires_grad_(True)
        outputs = {"energy": ModelOutput(sample_kind="system")}
        energy = network([system], outputs)["energy"].block().values.sum()
        (force,) = torch.autograd.grad(energy, positions, create_graph=True)
        loss = energy**2 + force.square().sum()
        gradients.append(torch.autograd.grad(loss, list(network.parameters())))
    for chunked, whole in zip(gradients[1], gradients[0]):
        torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-12)


def _network_energy_and_forces(network, system):
    system.positions.requires_grad_(True)
    outputs = {"energy": ModelOutput(sample_kind="system")}
    value = network([system], outputs)["energy"].block().values.sum()
    (gradient,) = torch.autograd.grad(value, system.positions)
    return value.item(), -gradient


def test_chunks_in_the_scripted_model(slab):
    model = energy_model([1, 8])
    scripted = torch.jit.script(model.network)
    results = []
    for max_tokens in (10**9, 150):
        assert set_max_tokens(scripted, max_tokens) == 2
        system = system_from_atoms(model, slab)
        results.append(_network_energy_and_forces(scripted, system))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-12)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-11, atol=1e-12)
