"""Lean forces (``set_lean_forces``, ``PETNetwork._lean_energies``): energies for
forces and stress evaluated without the graph of the blocks, the gradients carried
back block by block and chunk by chunk; and lean forces through the last block only
(``PETNetwork._lean_last_block_energies``), the graph of the other blocks kept. The
energies and their gradients with respect to positions and cell are those of the
full graph."""

import ase.io
import numpy
import pytest
import torch
from metatomic.torch import ModelOutput

from metatrain_pet.pet.network import LEAN_FORCES_ABOVE, LEAN_LAST_BLOCK_ABOVE
from metatrain_pet.runtime import set_lean_forces, set_max_tokens
from metatrain_pet.systems.batch import longest_environment
from pet_helpers import LEAN_MODES, energy_model, system_from_atoms

ENERGY = {"energy": ModelOutput(sample_kind="system")}

VARIANTS = {
    "defaults": {},
    "paper": {
        "transformer_type": "PostLN",
        "species_as_first_message": False,
        "radial_basis": 0,
    },
    "last block, averaged bonds, carried centre": {
        "readout": "last_block",
        "bond_aggregation": "average",
        "carry_central_token": True,
        "num_gnn_layers": 3,
    },
    "one block": {"num_gnn_layers": 1},
}


def _energy_and_gradients(network, systems):
    """Total energy and its gradients with respect to every system's positions
    and cell."""
    inputs = []
    for system in systems:
        inputs += [system.positions.requires_grad_(True), system.cell]
        system.cell.requires_grad_(True)
    energy = network(systems, ENERGY)["energy"].block().values
    gradients = torch.autograd.grad(energy.sum(), inputs, allow_unused=True)
    return energy.detach(), [
        torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gradients)
    ]


@pytest.mark.parametrize("mode", list(LEAN_MODES))
@pytest.mark.parametrize("variant", list(VARIANTS), ids=list(VARIANTS))
def test_lean_energies_forces_and_stress_equal_the_full_graph(slab, variant, mode):
    model = energy_model([1, 8], **VARIANTS[variant])
    set_max_tokens(model, 300)
    calls = {"lean": 0, "last block": 0}
    _count_calls(model.network, "_lean_energies", calls, "lean")
    _count_calls(model.network, "_lean_last_block_energies", calls, "last block")
    results = []
    for lean in (False, True):
        assert set_lean_forces(model, *(LEAN_MODES[mode] if lean else (-1,))) == 1
        results.append(
            _energy_and_gradients(model.network, [system_from_atoms(model, slab)])
        )
    one_block = VARIANTS[variant].get("num_gnn_layers") == 1
    expected = {"lean": 0, "last block": 0}
    expected[mode] = int(mode == "lean" or not one_block)
    assert calls == expected
    (energy, gradients), (lean_energy, lean_gradients) = results
    torch.testing.assert_close(lean_energy, energy, rtol=1e-13, atol=0.0)
    assert float(gradients[0].abs().max()) > 1e-3
    for lean_gradient, gradient in zip(lean_gradients, gradients):
        torch.testing.assert_close(lean_gradient, gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", list(LEAN_MODES))
def test_lean_gradient_of_one_structure_of_a_batch(slab, mode):
    """The gradient of one structure's energy leaves the others' atoms alone:
    the linear term that carries the gradients is split by structure."""
    model = energy_model([1, 8])
    set_lean_forces(model, *LEAN_MODES[mode])
    systems = [system_from_atoms(model, slab), system_from_atoms(model, slab[:30])]
    for system in systems:
        system.positions.requires_grad_(True)
    energies = model.network(systems, ENERGY)["energy"].block().values
    first, second = torch.autograd.grad(energies[1, 0], [s.positions for s in systems])
    set_lean_forces(model, -1)
    alone = system_from_atoms(model, slab[:30])
    _, (expected, _) = _energy_and_gradients(model.network, [alone])
    assert float(first.abs().max()) == 0.0
    torch.testing.assert_close(second, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", list(LEAN_MODES))
def test_lean_batches_with_empty_and_lonely_environments(slab, mode):
    """A batch of an empty box, one atom, a molecule in vacuum with a hydrogen far
    from it, and the film: systems and atoms with no edges, in chunks of their
    own, give the full graph's energies and position and cell gradients, and
    none on a lonely atom."""
    model = energy_model([1, 8], carry_central_token=True)
    set_max_tokens(model, 300)
    calls = {"lean": 0, "last block": 0}
    _count_calls(model.network, "_lean_energies", calls, "lean")
    _count_calls(model.network, "_lean_last_block_energies", calls, "last block")
    batch = [
        ase.Atoms(cell=[5.0, 5.0, 5.0], pbc=True),
        ase.Atoms("O", cell=[10.0, 10.0, 10.0], pbc=True),
        ase.Atoms("OHH", positions=[[0.0, 0.0, 0.0], [0.97, 0.0, 0.0], [20.0, 0, 0]]),
        slab,
    ]
    results = []
    for lean in (False, True):
        set_lean_forces(model, *(LEAN_MODES[mode] if lean else (-1,)))
        systems = [system_from_atoms(model, atoms) for atoms in batch]
        results.append(_energy_and_gradients(model.network, systems))
    assert calls[mode] == 1
    (energies, gradients), (lean_energies, lean_gradients) = results
    torch.testing.assert_close(lean_energies, energies, rtol=1e-13, atol=1e-14)
    for lean_gradient, gradient in zip(lean_gradients, gradients):
        torch.testing.assert_close(lean_gradient, gradient, rtol=1e-10, atol=1e-12)
    molecule = lean_gradients[4]  # positions of the third system
    assert float(molecule[-1].abs().max()) == 0.0
    assert float(molecule[:-1].abs().max()) > 0.0


@pytest.mark.parametrize("mode", list(LEAN_MODES))
def test_lean_forces_in_the_scripted_network(slab, mode):
    model = energy_model([1, 8])
    scripted = torch.jit.script(model.network)
    set_max_tokens(scripted, 300)
    results = []
    for lean in (False, True):
        assert set_lean_forces(scripted, *(LEAN_MODES[mode] if lean else (-1,))) == 1
        system = system_from_atoms(model, slab)
        results.append(_energy_and_gradients(scripted, [system]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-13, atol=0.0)
    for lean_gradient, gradient in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(lean_gradient, gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", list(LEAN_MODES))
def test_training_and_other_outputs_keep_the_full_graph(slab, mode):
    """Lean forces never change training (double backward) nor per-atom
    outputs, whose gradients the linear term could not carry."""
    model = energy_model([1, 8])
    set_lean_forces(model, *LEAN_MODES[mode])
    per_atom = {"energy": ModelOutput(sample_kind="atom")}
    system = system_from_atoms(model, slab)
    positions = system.positions.requires_grad_(True)
    energies = model.network([system], per_atom)["energy"].block().values
    (gradient,) = torch.autograd.grad(energies[0, 0], positions)
    set_lean_forces(model, -1)
    reference = model.network([system], per_atom)["energy"].block().values
    (expected,) = torch.autograd.grad(reference[0, 0], positions)
    torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-14)

    set_lean_forces(model, *LEAN_MODES[mode])
    model.network.train()
    energy = model.network([system], ENERGY)["energy"].block().values.sum()
    (force,) = torch.autograd.grad(energy, positions, create_graph=True)
    assert force.requires_grad


@pytest.mark.parametrize("blocks", [2, 1])
def test_lean_forces_count_the_graph_the_evaluation_would_keep(slab, blocks):
    """Lean forces switch on where the graph the evaluation would keep otherwise
    holds more than ``lean_forces_above`` tokens: with lean forces through the
    last block, half of the two blocks' graph (rounded up); with one block, or
    that mode off, all of it."""
    model = energy_model([1, 8], num_gnn_layers=blocks)
    network = model.network
    system = system_from_atoms(model, slab)
    width = longest_environment(system, network.neighbor_list_options)
    tokens = network.graph_tokens(len(system) * width, width, system.positions)
    calls = {"lean": 0, "last block": 0}
    _count_calls(network, "_lean_energies", calls, "lean")
    _count_calls(network, "_lean_last_block_energies", calls, "last block")
    half = (tokens + 1) // 2
    settings = [(half, 0), (half - 1, 0), (tokens - 1, -1), (tokens, -1)]
    modes = []
    for above, last_block_above in settings:
        set_lean_forces(model, above, last_block_above)
        before = dict(calls)
        _energy_and_gradients(network, [system_from_atoms(model, slab)])
        modes.append([key for key in calls if calls[key] > before[key]])
    if blocks == 2:
        assert modes == [["last block"], ["lean"], ["lean"], []]
    else:
        assert modes == [["lean"], ["lean"], ["lean"], []]


def _hessian_times(network, system, direction):
    """H v by double backward: the derivative of the forces along ``direction``."""
    positions = system.positions.requires_grad_(True)
    energy = network([system], ENERGY)["energy"].block().values.sum()
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=True)
    (product,) = torch.autograd.grad((gradient * direction).sum(), positions)
    return product


def test_below_the_threshold_the_full_graph_gives_hessians(slab):
    """Up to ``lean_forces_above`` tokens the graph is kept, and the Hessian by
    double backward equals finite differences of the gradient; above it (lean),
    the double backward misses the blocks' curvature, as documented. Tokens count
    in units of graph memory (``PETNetwork.graph_tokens``): the threshold is set
    at this batch's count exactly, and one below it."""
    model = energy_model([1, 8])
    atoms = slab[:24]
    system = system_from_atoms(model, atoms)
    generator = torch.Generator().manual_seed(0)
    direction = torch.randn(
        system.positions.shape, dtype=torch.float64, generator=generator
    )
    step = 1e-5
    gradients = []
    for sign in (1.0, -1.0):
        shifted = atoms.copy()
        shifted.positions += sign * step * direction.numpy()
        moved = system_from_atoms(model, shifted)
        gradients.append(_energy_and_gradients(model.network, [moved])[1][0])
    finite_difference = (gradients[0] - gradients[1]) / (2 * step)

    counted = _graph_tokens(model, atoms, rows_per_atom=1)
    for kept in ((counted,), (-1, counted)):
        set_lean_forces(model, *kept)
        system = system_from_atoms(model, atoms)
        product = _hessian_times(model.network, system, direction)
        torch.testing.assert_close(product, finite_difference, rtol=0.0, atol=1e-6)
    for lean in ((0,), (counted - 1,), (-1, 0), (-1, counted - 1)):
        set_lean_forces(model, *lean)
        system = system_from_atoms(model, atoms)
        product = _hessian_times(model.network, system, direction)
        assert float((product - finite_difference).abs().max()) > 1e-2


LAYERWISE = {
    "enable": True,
    "mode": "layerwise",
    "fallback": "adaptive",
    "beta": 10.0,
    "beta_w": 10.0,
    "prune_threshold": 0.5,
    "prune_width": 0.2,
}


def _layerwise_energy_and_gradients(model, eager, atoms):
    system = system_from_atoms(eager, atoms)
    positions = system.positions.requires_grad_(True)
    system.cell.requires_grad_(True)
    energy = model([system], ENERGY)["energy"].block().values
    gradients = torch.autograd.grad(energy.sum(), [positions, system.cell])
    return energy.detach(), gradients


def _graph_tokens(model, atoms, rows_per_atom: int) -> int:
    """``rows_per_atom`` rows per atom times the longest environment (central
    token included), counted by ``PETNetwork.graph_tokens`` for this model and
    dtype."""
    from metatrain_pet.systems.batch import longest_environment

    system = system_from_atoms(model, atoms)
    width = longest_environment(system, model.network.neighbor_list_options)
    tokens = rows_per_atom * len(atoms) * width
    return model.network.graph_tokens(tokens, width, system.positions)


def _certain_lean_bound(eager, atoms) -> int:
    """Tokens of two rows per atom: above it the frames are recomputed, below it
    they keep their graph (``PETNetwork.lean_frames_target``)."""
    return _graph_tokens(eager, atoms, rows_per_atom=2)


def _count_calls(module, method: str, calls: dict, key: str) -> None:
    original = getattr(module, method)

    def counted(*args):
        calls[key] += 1
        return original(*args)

    setattr(module, method, counted)


@pytest.mark.parametrize(
    "variant, scripted, frames",
    [
        ("defaults", True, "recomputed"),
        ("defaults", False, "with their graph"),
        ("last block, averaged bonds, carried centre", False, "recomputed"),
        ("one block", True, "with their graph"),
    ],
)
def test_lean_forces_through_layerwise_ecse(slab, variant, scripted, frames):
    """With layer-wise ECSE the gradients also flow through the frames: the
    rotated geometry and the weight of every (atom, frame) row, either through
    the graph of the frames or, when lean forces are certain, through frames
    rebuilt chunk by chunk (a few pairs per chunk here)."""
    eager = energy_model([1, 8], ecse=LAYERWISE, **VARIANTS[variant])
    eager.symmetrizer.frame_builder.max_pairs = 200
    model = torch.jit.script(eager) if scripted else eager
    set_max_tokens(model, 300)
    atoms = slab[:48]
    threshold = 0 if frames == "recomputed" else _certain_lean_bound(eager, atoms)
    calls = {"frames": 0, "network": 0}
    if not scripted:
        _count_calls(eager.symmetrizer, "atom_frames_linear_term", calls, "frames")
        _count_calls(eager.network, "_lean_energies", calls, "network")
    results = []
    for lean in (False, True):
        assert set_lean_forces(model, threshold if lean else -1) == 1
        results.append(_layerwise_energy_and_gradients(model, eager, atoms))
    if not scripted:
        assert calls == {"frames": int(frames == "recomputed"), "network": 1}
    (energy, gradients), (lean_energy, lean_gradients) = results
    torch.testing.assert_close(lean_energy, energy, rtol=1e-13, atol=0.0)
    assert float(gradients[0].abs().max()) > 1e-3
    for lean_gradient, gradient in zip(lean_gradients, gradients):
        torch.testing.assert_close(lean_gradient, gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layerwise", [False, True], ids=["raw", "layer-wise ECSE"])
def test_the_last_block_runs_once(slab, layerwise):
    """The last block is not run without autograd before its pullback: it runs
    once, chunk by chunk with its heads (on the (atom, frame) rows with
    layer-wise ECSE); the other blocks run once without autograd and once more
    in their pullback."""
    ecse = {"ecse": LAYERWISE} if layerwise else {}
    model = energy_model([1, 8], num_gnn_layers=3, **ecse)
    set_max_tokens(model, 300)
    set_lean_forces(model, 0)
    blocks = model.network.message_passing.blocks
    calls = {f"{method} {k}": 0 for k in range(3) for method in ("run", "chunk")}
    for k, block in enumerate(blocks):
        _count_calls(block, "forward", calls, f"run {k}")
        _count_calls(block, "chunk_outputs", calls, f"chunk {k}")
    if layerwise:
        _layerwise_energy_and_gradients(model, model, slab[:48])
    else:
        _energy_and_gradients(model.network, [system_from_atoms(model, slab)])
    assert calls["run 0"] == calls["run 1"] == 1
    assert calls["run 2"] == 0
    assert calls["chunk 0"] == calls["chunk 1"] == calls["chunk 2"] > 1


@pytest.mark.parametrize("layerwise", [False, True], ids=["raw", "layer-wise ECSE"])
def test_lean_last_block_keeps_the_graph_of_the_others(slab, layerwise):
    """Through the last block only, every block runs once: the others with their
    graph, the last chunk by chunk with its heads; with layer-wise ECSE (frames)
    the mode does not apply and the full graph is kept."""
    ecse = {"ecse": LAYERWISE} if layerwise else {}
    model = energy_model([1, 8], num_gnn_layers=3, **ecse)
    set_max_tokens(model, 300)
    set_lean_forces(model, -1, 0)
    blocks = model.network.message_passing.blocks
    calls = {f"{method} {k}": 0 for k in range(3) for method in ("run", "chunk")}
    for k, block in enumerate(blocks):
        _count_calls(block, "forward", calls, f"run {k}")
        _count_calls(block, "chunk_outputs", calls, f"chunk {k}")
    if layerwise:
        _layerwise_energy_and_gradients(model, model, slab[:48])
        assert calls["run 0"] == calls["run 1"] == calls["run 2"] == 1
        assert calls["chunk 0"] == calls["chunk 1"] == calls["chunk 2"] == 0
        return
    _energy_and_gradients(model.network, [system_from_atoms(model, slab)])
    assert calls["run 0"] == calls["run 1"] == 1
    assert calls["run 2"] == 0
    assert calls["chunk 0"] == calls["chunk 1"] == 0 < calls["chunk 2"]


@pytest.mark.parametrize("value", ["a", 1.5, True, -2, 2**63])
def test_run_time_settings_reject_what_is_not_a_count(value):
    """A clear error, before any module is changed, instead of a comparison that
    fails at the next evaluation (eager) or a pybind11 cast error (TorchScript)."""
    model = energy_model([1, 8])
    with pytest.raises(ValueError, match="above_tokens must be an integer"):
        set_lean_forces(model, value)
    with pytest.raises(ValueError, match="last_block_above must be an integer"):
        set_lean_forces(model, 0, value)
    with pytest.raises(ValueError, match="max_tokens must be an integer"):
        set_max_tokens(model, value)
    assert model.network.lean_forces_above == LEAN_FORCES_ABOVE
    assert model.network.lean_last_block_above == LEAN_LAST_BLOCK_ABOVE
    assert set_lean_forces(model, numpy.int64(7)) == 1
    assert model.network.lean_forces_above == 7


def test_networks_exported_before_the_last_block_mode_still_take_settings():
    """A network without ``lean_last_block_above`` (exported before it existed)
    takes ``set_lean_forces`` as before, instead of growing an attribute that it
    would never read."""

    class PETNetwork(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lean_forces_above = LEAN_FORCES_ABOVE

    older = PETNetwork()
    assert set_lean_forces(older, 5, 0) == 1
    assert older.lean_forces_above == 5
    assert not hasattr(older, "lean_last_block_above")
