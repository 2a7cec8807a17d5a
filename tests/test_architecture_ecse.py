"""ECSE inside the architecture: ``ecse.enable`` symmetrizes PET's forward pass, and
fine-tuning a trained checkpoint may switch it on (App. F.7)."""

import copy
import warnings

import ase.io
import pytest
import torch
from metatomic.torch import ModelOutput

from metatrain_pet.ecse.hypers import TIGHT_PRESET
from metatrain_pet.pet.model import PET
from pet_helpers import (
    DATA,
    energy_and_forces,
    energy_model,
    system_from_atoms,
    tiny_hypers,
)

ECSE = {"enable": True, "mode": "per_atom", "fallback": "adaptive", **TIGHT_PRESET}


@pytest.fixture(scope="module")
def ethanol():
    return ase.io.read(DATA / "ethanol_40.xyz", "0")


def rotated(atoms, seed):
    rotation = torch.linalg.qr(
        torch.randn(
            3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
    )[0]
    if torch.det(rotation) < 0:
        rotation = -rotation
    copy_ = atoms.copy()
    copy_.positions = atoms.positions @ rotation.numpy().T
    return copy_, rotation


def test_symmetrized_architecture_is_exactly_invariant(ethanol):
    model = energy_model([1, 6, 8], num_gnn_layers=1, ecse=ECSE)
    energy, forces = energy_and_forces(model, ethanol)
    for seed in range(3):
        atoms, rotation = rotated(ethanol, seed)
        rotated_energy, rotated_forces = energy_and_forces(model, atoms)
        assert rotated_energy == pytest.approx(energy, rel=1e-12)
        torch.testing.assert_close(rotated_forces, forces @ rotation.T)

    system = system_from_atoms(model, ethanol)
    frames = model(
        [system], {"mtt::aux::ecse_num_frames": ModelOutput(sample_kind="system")}
    )["mtt::aux::ecse_num_frames"]
    assert frames.block().values.item() >= 1


@pytest.mark.parametrize("mode", ["per_atom", "layerwise"])
def test_export_keeps_the_symmetrization(ethanol, tmp_path, mode):
    ecse = dict(ECSE, mode=mode)
    model = energy_model([1, 6, 8], num_gnn_layers=1, dtype=torch.float64, ecse=ecse)
    model.export().save(str(tmp_path / "model.pt"))
    from metatomic_ase import MetatomicCalculator

    calculator = MetatomicCalculator(str(tmp_path / "model.pt"))
    energies = []
    for seed in range(2):
        atoms, _ = rotated(ethanol, seed)
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], rel=1e-10)
    assert "mtt::aux::ecse_num_frames" in model.export().capabilities().outputs


def test_finetuning_may_switch_ecse_on_but_restart_may_not(ethanol):
    raw = energy_model([1, 6, 8], num_gnn_layers=1)
    checkpoint = raw.get_checkpoint()
    hypers = copy.deepcopy(raw.hypers)
    hypers["ecse"] = dict(ECSE)

    restarted = PET.load_checkpoint(copy.deepcopy(checkpoint), "restart")
    with pytest.raises(ValueError):
        restarted.restart(raw.dataset_info, model_hypers=hypers)

    finetuned = PET.load_checkpoint(copy.deepcopy(checkpoint), "finetune")
    finetuned = finetuned.restart(raw.dataset_info, model_hypers=hypers)
    finetuned = finetuned.to(torch.float64).eval()
    assert finetuned.symmetrizer is not None
    energy, _ = energy_and_forces(finetuned, ethanol)
    atoms, _ = rotated(ethanol, 7)
    assert energy_and_forces(finetuned, atoms)[0] == pytest.approx(energy, rel=1e-12)
    # the weights come from the checkpoint
    for name, value in raw.network.state_dict().items():
        torch.testing.assert_close(finetuned.network.state_dict()[name], value)


def test_auxiliary_fallback_is_a_clear_error_inside_the_architecture():
    with pytest.raises(ValueError, match="auxiliary model"):
        energy_model([1, 6, 8], ecse={"enable": True, "fallback": "aux"})


def _energy_across_the_cut_out_sphere(model):
    """ECSE per_atom energies with the farthest pair of ethanol at 4.0 Å ∓ 1e-7
    (the cut-out radius is the PET cutoff, 4 Å)."""
    from metatrain_pet.symmetry.diagnostics import predict

    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    distances = atoms.get_all_distances()
    i, k = divmod(int(distances.argmax()), len(atoms))
    direction = (atoms.positions[k] - atoms.positions[i]) / distances[i, k]
    structures = []
    for distance in (4.0 - 1e-7, 4.0 + 1e-7):
        moved = atoms.copy()
        moved.positions[k] = atoms.positions[i] + distance * direction
        structures.append(moved)
    below, above = predict(model, structures, forces=False)
    return above.energy - below.energy


def test_per_atom_mode_warns_when_it_truncates_message_passing():
    """One block: the cut-out environment holds everything the centre sees, and the
    energy is continuous as an atom crosses the cut-out sphere. Two blocks: it
    jumps there, and symmetrize (and the architecture) warn."""
    from metatrain_pet.ecse import symmetrize

    local = energy_model([1, 6, 8], num_gnn_layers=1).export()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        continuous = symmetrize(local, mode="per_atom")
        symmetrize(energy_model([1, 6, 8]).export(), mode="global")
    assert abs(_energy_across_the_cut_out_sphere(continuous)) < 1e-6

    two_blocks = energy_model([1, 6, 8], num_gnn_layers=2).export()
    with pytest.warns(UserWarning, match="per_atom mode cuts environments"):
        truncated = symmetrize(two_blocks, mode="per_atom")
    assert abs(_energy_across_the_cut_out_sphere(truncated)) > 1e-4

    ecse = dict(tiny_hypers()["ecse"], enable=True, mode="per_atom")
    with pytest.warns(UserWarning, match="per_atom mode cuts environments"):
        energy_model([1, 6, 8], num_gnn_layers=2, ecse=ecse)


LAYERWISE = {
    "enable": True,
    "mode": "layerwise",
    "fallback": "adaptive",
    **TIGHT_PRESET,
}


def test_layerwise_mode_keeps_message_passing_continuous():
    """Layer-wise ECSE on a two-block PET: no cut-out sphere, so nothing happens
    where ``per_atom`` jumps (the test above)."""
    model = energy_model([1, 6, 8], num_gnn_layers=2, ecse=LAYERWISE).export()
    assert abs(_energy_across_the_cut_out_sphere(model)) < 1e-6


def test_layerwise_mode_needs_the_adaptive_fallback():
    with pytest.raises(ValueError, match="needs ecse.fallback 'adaptive'"):
        energy_model([1, 6, 8], ecse=dict(LAYERWISE, fallback="none"))


def test_training_with_layerwise_ecse_from_the_first_step(ethanol, tmp_path):
    """Layer-wise ECSE on during training: the loss decreases, and the trained
    model exports exactly invariant."""
    from metatrain_pet.training.trainer import Trainer
    from test_training_protocol import ethanol_data, train, trainer_hypers

    data = ethanol_data()
    torch.manual_seed(0)
    hypers = tiny_hypers(num_gnn_layers=2, ecse=LAYERWISE)
    model = PET(hypers, data[0])
    trainer = Trainer(trainer_hypers(num_epochs=3, augmentation="environment"))
    train(trainer, model, data, tmp_path)
    assert trainer.best_epoch is not None and trainer.best_metric < float("inf")
    exported = PET.load_checkpoint(model.get_checkpoint(), "export").export()
    exported.save(str(tmp_path / "layerwise.pt"))
    from metatomic.torch import load_atomistic_model

    from metatrain_pet.symmetry.diagnostics import predict

    loaded = load_atomistic_model(str(tmp_path / "layerwise.pt"))
    first, second = predict(loaded, [ethanol, rotated(ethanol, 3)[0]], forces=False)
    assert second.energy == pytest.approx(first.energy, rel=1e-12)
