"""Physics of the raw PET: symmetries it has by construction, smoothness at the
cutoff, forces as exact gradients, and clear errors on bad input."""

import copy

import ase
import ase.io
import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput, System

from metatrain_pet.nn.environments import gaussian_basis
from pet_helpers import (
    DATA,
    energy_and_forces,
    energy_model,
    system_from_atoms,
    tiny_hypers,
)


@pytest.fixture(scope="module")
def ethanol():
    return ase.io.read(DATA / "ethanol_40.xyz", "0")


@pytest.fixture(scope="module")
def model():
    return energy_model([1, 6, 8])


def test_translation_invariance(model, ethanol):
    energy, forces = energy_and_forces(model, ethanol)
    shifted = ethanol.copy()
    shifted.positions += np.array([3.1, -7.2, 0.4])
    shifted_energy, shifted_forces = energy_and_forces(model, shifted)
    assert shifted_energy == pytest.approx(energy, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(shifted_forces, forces, rtol=1e-10, atol=1e-10)


def test_permutation_invariance(model, ethanol):
    energy, forces = energy_and_forces(model, ethanol)
    permutation = np.random.default_rng(1).permutation(len(ethanol))
    permuted = ethanol[permutation]
    permuted_energy, permuted_forces = energy_and_forces(model, permuted)
    assert permuted_energy == pytest.approx(energy, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(permuted_forces, forces[permutation])


def test_raw_pet_is_not_rotation_invariant(model, ethanol):
    """PET learns the rotational symmetry; untrained, it clearly lacks it."""
    energy, _ = energy_and_forces(model, ethanol)
    rotated = ethanol.copy()
    rotated.rotate(70, "x", center="COM")
    rotated_energy, _ = energy_and_forces(model, rotated)
    assert abs(rotated_energy - energy) > 1e-4


@pytest.mark.parametrize("radial_basis", [0, 8])
def test_only_lengths_is_rotation_and_inversion_invariant(ethanol, radial_basis):
    model = energy_model([1, 6, 8], use_only_lengths=True, radial_basis=radial_basis)
    energy, forces = energy_and_forces(model, ethanol)
    rotated = ethanol.copy()
    rotated.rotate(70, "x", center="COM")
    rotated.rotate(20, "z", center="COM")
    rotated_energy, rotated_forces = energy_and_forces(model, rotated)
    assert rotated_energy == pytest.approx(energy, rel=1e-12)
    rotation = torch.tensor(
        np.linalg.lstsq(
            ethanol.positions - ethanol.positions.mean(0),
            rotated.positions - rotated.positions.mean(0),
            rcond=None,
        )[0]
    )
    torch.testing.assert_close(forces @ rotation, rotated_forces)
    inverted = ethanol.copy()
    inverted.positions *= -1
    assert energy_and_forces(model, inverted)[0] == pytest.approx(energy, rel=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"bond_aggregation": "average"},
        {
            "transformer_type": "PreLN",
            "normalization": "RMSNorm",
            "activation": "SwiGLU",
            "attention_temperature": 2.0,
            "encode_length": True,
            "carry_central_token": True,
            "readout": "last_block",
        },
        {"radial_basis": 16},
    ],
)
def test_forces_are_gradients(ethanol, overrides):
    model = energy_model([1, 6, 8], **overrides)
    atoms = ethanol.copy()
    _, forces = energy_and_forces(model, atoms)
    delta = 1e-5
    for atom, axis in [(0, 0), (3, 1), (8, 2)]:
        energies = []
        for sign in (1, -1):
            displaced = atoms.copy()
            displaced.positions[atom, axis] += sign * delta
            energies.append(energy_and_forces(model, displaced)[0])
        finite_difference = -(energies[0] - energies[1]) / (2 * delta)
        assert finite_difference == pytest.approx(
            forces[atom, axis].item(), rel=1e-6, abs=1e-8
        )


def test_gaussian_basis_resolves_distances():
    distances = torch.tensor([[0.0], [0.95], [1.0], [4.0]], dtype=torch.float64)
    basis = gaussian_basis(distances, 9, 4.0)
    assert basis.shape == (4, 9)
    assert basis[0, 0] == 1.0 and basis[3, 8] == 1.0  # centres at 0 and R_c
    # 0.05 Å apart changes the features by a few percent of their size
    assert 0.02 < (basis[1] - basis[2]).abs().max() < 0.2


def test_layerwise_ecse_leaves_an_invariant_model_unchanged(ethanol):
    """With only lengths (and a radial basis) every block is invariant, so the
    frame average of layer-wise ECSE is the raw model: only r_ij columns rotate."""
    ecse = copy.deepcopy(tiny_hypers()["ecse"])
    ecse.update(enable=True, mode="layerwise", fallback="adaptive")
    overrides = {"use_only_lengths": True, "radial_basis": 4}
    raw = energy_model([1, 6, 8], **overrides)
    layerwise = energy_model([1, 6, 8], ecse=ecse, **overrides)
    assert energy_and_forces(layerwise, ethanol)[0] == pytest.approx(
        energy_and_forces(raw, ethanol)[0], rel=1e-12
    )


def test_smooth_when_a_neighbor_crosses_the_cutoff(model):
    """Energy and forces are continuous while an H atom leaves the cutoff sphere
    of a CO molecule: consecutive points of a fine scan differ by no more than the
    local slope allows."""
    cutoff = model.cutoff
    distances = np.linspace(cutoff - 1.2, cutoff + 0.3, 151)
    energies, forces = [], []
    for distance in distances:
        atoms = ase.Atoms(
            "COH", positions=[[0, 0, 0], [1.13, 0, 0], [0.3, distance, 0.2]]
        )
        energy, force = energy_and_forces(model, atoms)
        energies.append(energy)
        forces.append(force[2, 1].item())
    energies, forces = np.array(energies), np.array(forces)
    step = distances[1] - distances[0]
    jumps = np.abs(np.diff(energies))
    slopes = np.maximum(np.abs(forces[1:]), np.abs(forces[:-1]))
    assert np.all(jumps <= slopes * step * 1.5 + 1e-10)
    force_jumps = np.abs(np.diff(forces))
    neighbor_jumps = np.maximum(force_jumps[:-2], force_jumps[2:])
    assert np.all(force_jumps[1:-1] <= 3.0 * neighbor_jumps + 1e-8)
    beyond = distances > cutoff + 1e-9
    assert np.allclose(forces[beyond], 0.0, atol=1e-12)
    assert np.ptp(energies[beyond]) < 1e-12


def test_isolated_atom_and_empty_environments(model):
    atoms = ase.Atoms("CO", positions=[[0, 0, 0], [20.0, 0, 0]])
    energy, forces = energy_and_forces(model, atoms)
    assert np.isfinite(energy)
    assert torch.all(forces == 0.0)
    single = ase.Atoms("H", positions=[[0, 0, 0]])
    assert np.isfinite(energy_and_forces(model, single)[0])


def test_small_periodic_cell_sees_its_own_images():
    model = energy_model([6], use_only_lengths=True)
    atoms = ase.Atoms("C", positions=[[0, 0, 0]], cell=np.eye(3) * 1.7, pbc=True)
    energy, forces = energy_and_forces(model, atoms)
    assert np.isfinite(energy)
    torch.testing.assert_close(forces, torch.zeros_like(forces), atol=1e-10, rtol=0)
    bigger = atoms.repeat((2, 2, 2))
    assert energy_and_forces(model, bigger)[0] == pytest.approx(8 * energy, rel=1e-10)


def test_unknown_species_is_a_clear_error(model):
    atoms = ase.Atoms("CN", positions=[[0, 0, 0], [1.1, 0, 0]])
    with pytest.raises(ValueError, match=r"unknown atomic types \[7\]"):
        energy_and_forces(model, atoms)


@pytest.mark.parametrize(
    "cutoffs, message",
    [
        ((-1.0, 0.5), r"cutoff must be > 0 \(in Å\), got -1.0"),
        ((float("nan"), 0.5), r"cutoff must be > 0 \(in Å\), got nan"),
        ((3.0, 0.0), r"cutoff_width must be in \(0, cutoff\], got 0.0"),
        ((3.0, 3.5), r"cutoff_width must be in \(0, cutoff\], got 3.5"),
    ],
)
def test_bad_cutoffs_are_refused_by_name(cutoffs, message):
    with pytest.raises(ValueError, match=message):
        energy_model([6], cutoff=cutoffs[0], cutoff_width=cutoffs[1])


def test_nan_positions_are_a_clear_error(model):
    system = system_from_atoms(model, ase.Atoms("CO", positions=[[0, 0, 0], [1, 0, 0]]))
    nan_system = System(
        types=system.types,
        positions=system.positions * float("nan"),
        cell=system.cell,
        pbc=system.pbc,
    )
    for options in model.requested_neighbor_lists():
        nan_system.add_neighbor_list(options, system.get_neighbor_list(options))
    with pytest.raises(ValueError, match="NaN"):
        model([nan_system], {"energy": ModelOutput(sample_kind="system")})


def test_batched_equals_separate(model, ethanol):
    """A batch of structures gives the same energies as each structure alone."""
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":3")
    systems = [system_from_atoms(model, atoms) for atoms in frames]
    batched = model(systems, {"energy": ModelOutput(sample_kind="system")})
    separate = [
        model([system], {"energy": ModelOutput(sample_kind="system")})["energy"]
        .block()
        .values
        for system in systems
    ]
    torch.testing.assert_close(
        batched["energy"].block().values, torch.cat(separate), rtol=1e-12, atol=1e-12
    )


def test_training_and_evaluation_attention_agree(model, ethanol):
    """The explicit softmax (training, double-backward capable) and the fused
    attention kernel (evaluation) compute the same function."""
    system = system_from_atoms(model, ethanol)
    outputs = {"energy": ModelOutput(sample_kind="atom")}
    network = model.network
    try:
        network.train()
        training = network([system], outputs)["energy"].block().values
    finally:
        network.eval()
    evaluation = network([system], outputs)["energy"].block().values
    torch.testing.assert_close(training, evaluation, rtol=1e-10, atol=1e-10)


def test_zbl_repulsion_at_close_contact():
    """With ``zbl: true``, two atoms pushed to 0.3 Å get a large positive energy
    (the screened nuclear repulsion: ~60 eV for C-O) and forces pushing them apart;
    the untrained network alone gives neither."""
    pair = ase.Atoms("CO", positions=[[0, 0, 0], [0.3, 0, 0]])
    energies = {}
    for zbl in (False, True):
        model = energy_model([1, 6, 8], zbl=zbl)
        energy, forces = energy_and_forces(model, pair)
        energies[zbl] = energy
        if zbl:
            assert forces[0, 0] < -10.0 and forces[1, 0] > 10.0
    assert energies[True] - energies[False] > 20.0
    # the exported model asks the engine for ZBL's neighbour list too
    from metatomic_ase import MetatomicCalculator

    pair.calc = MetatomicCalculator(model.export(), check_consistency=True)
    assert pair.get_potential_energy() == pytest.approx(energies[True], rel=1e-10)
    far = ase.Atoms("CO", positions=[[0, 0, 0], [3.0, 0, 0]])
    close_contact_free = [energy_and_forces(energy_model([1, 6, 8], zbl=z), far)[0]
                          for z in (False, True)]  # fmt: skip
    assert close_contact_free[0] == pytest.approx(close_contact_free[1], abs=1e-12)


def test_scripted_network_equals_eager_in_float64(ethanol):
    """TorchScript keeps float64 constants (a cutoff width of 0.8 is not a float32
    number): the scripted network computes what the eager one does."""
    model = energy_model([1, 6, 8], cutoff=4.3, cutoff_width=0.7)
    outputs = {"energy": ModelOutput(sample_kind="atom")}
    scripted = torch.jit.script(model.network)
    eager = model.network([system_from_atoms(model, ethanol)], outputs)
    compiled = scripted([system_from_atoms(model, ethanol)], outputs)
    torch.testing.assert_close(
        compiled["energy"].block().values,
        eager["energy"].block().values,
        rtol=1e-14,
        atol=1e-14,
    )
