"""``selected_atoms``: PET processes only the atoms that can reach the selected ones
(:mod:`metatrain_pet.nn.receptive_field`), and its predictions, features and
forces on the selected atoms are those of the full evaluation."""

import ase.io
import numpy as np
import pytest
import torch
from metatensor.torch import Labels
from metatomic.torch import ModelOutput, systems_to_torch
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.nn.receptive_field import atoms_needed_per_block
from pet_helpers import DATA, energy_model


def _systems(model):
    frames = [
        ase.io.read(DATA / "water64_2.xyz", 0),
        ase.io.read(DATA / "ethanol_40.xyz", 3),
    ]
    systems = systems_to_torch(
        frames, dtype=torch.float64, positions_requires_grad=True
    )
    return [
        get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
        for system in systems
    ]


def _selection(systems, fraction=0.1, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for index, system in enumerate(systems):
        n = len(system)
        chosen = np.sort(rng.choice(n, max(1, int(fraction * n)), replace=False))
        rows += [[index, int(atom)] for atom in chosen]
    return Labels(["system", "atom"], torch.tensor(rows, dtype=torch.int32))


def _per_atom(model, systems, names, selected_atoms=None):
    outputs = {name: ModelOutput(sample_kind="atom") for name in names}
    return model(systems, outputs, selected_atoms=selected_atoms)


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_gnn_layers": 1},
        {"num_gnn_layers": 2},
        {"num_gnn_layers": 3, "species_as_first_message": True},
        {"num_gnn_layers": 3, "carry_central_token": True, "readout": "last_block"},
    ],
)
def test_selected_atoms_match_the_full_evaluation(overrides):
    model = energy_model([1, 6, 8], **overrides)
    systems = _systems(model)
    selected = _selection(systems)
    names = ["energy", "feature", "mtt::aux::energy_last_layer_features"]

    full = _per_atom(model, systems, names)
    subset = _per_atom(model, systems, names, selected)
    for name in names:
        block = subset[name].block()
        assert block.samples == selected
        expected = (
            full[name]
            .block()
            .values[
                [
                    int(full[name].block().samples.position(row))
                    for row in selected.values
                ]
            ]
        )
        torch.testing.assert_close(block.values, expected, rtol=1e-12, atol=1e-12)

    positions = [system.positions for system in systems]
    selected_sum = subset["energy"].block().values.sum()
    gradients = torch.autograd.grad(selected_sum, positions)
    full_values = full["energy"].block().values
    rows = [
        int(full["energy"].block().samples.position(row)) for row in selected.values
    ]
    expected_gradients = torch.autograd.grad(full_values[rows].sum(), positions)
    for gradient, expected in zip(gradients, expected_gradients):
        torch.testing.assert_close(gradient, expected, rtol=1e-10, atol=1e-12)


def test_needed_atoms_are_those_within_the_receptive_field():
    """Block k needs the atoms within (n_blocks - 1 - k) neighbour hops of a
    selected atom, here on a chain 0-1-2-...-9 with edges both ways."""
    first = torch.arange(9)
    centers = torch.cat([first, first + 1])
    neighbors = torch.cat([first + 1, first])
    order = torch.argsort(centers, stable=True)
    selected = torch.zeros(10, dtype=torch.bool)
    selected[4] = True
    needed = atoms_needed_per_block(selected, centers[order], neighbors[order], 3)
    assert [atoms.tolist() for atoms in needed] == [[2, 3, 4, 5, 6], [3, 4, 5], [4]]


def test_only_the_receptive_field_is_processed():
    model = energy_model([1, 6, 8], num_gnn_layers=2)
    systems = _systems(model)
    selected = _selection(systems, fraction=0.05)
    processed = []
    for block in model.network.message_passing.blocks:
        block.register_forward_hook(
            lambda module, inputs, output: processed.append(
                inputs[0].center_species.shape[0]
            )
        )
    _per_atom(model, systems, ["energy"], selected)
    n_atoms = sum(len(system) for system in systems)
    assert processed[1] == len(selected)
    assert len(selected) < processed[0] < n_atoms


def test_system_outputs_sum_the_selected_atoms():
    model = energy_model([1, 6, 8])
    systems = _systems(model)
    selected = _selection(systems, seed=1)
    per_atom = _per_atom(model, systems, ["energy"], selected)["energy"].block()
    total = model(
        systems, {"energy": ModelOutput(sample_kind="system")}, selected_atoms=selected
    )["energy"].block()
    for index in range(len(systems)):
        mine = per_atom.values[per_atom.samples.column("system") == index].sum()
        torch.testing.assert_close(total.values[index, 0], mine)
