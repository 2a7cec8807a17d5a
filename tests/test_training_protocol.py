"""The training protocol of App. B and C of the paper: the Eq. 8 loss normalisation,
the learning-rate schedules (warm-up, StepLR, fast decay), early stopping, exact
restarts, per-environment rotational augmentation (App. F.10), and the checks that
refuse bad options before training starts."""

import copy
import logging

import ase.io
import pytest
import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput
from metatrain.cli.train import train_model
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo, get_atomic_types, get_dataset
from metatrain.utils.data.target_info import get_generic_target_info
from metatrain.utils.omegaconf import expand_dataset_config
from omegaconf import OmegaConf

from metatrain_pet.geometry.rotations import (
    cartesian_rank,
    random_rotations,
    rotate_back,
)
from metatrain_pet.pet.model import PET
from metatrain_pet.training.loss import NormalizedLoss
from metatrain_pet.training.schedule import learning_rate_factor
from metatrain_pet.training.trainer import Trainer, check_trainer_hypers
from pet_helpers import DATA, energy_model, system_from_atoms, tiny_hypers


def trainer_hypers(**overrides) -> dict:
    hypers = copy.deepcopy(get_default_hypers("experimental.pet_ecse")["training"])
    hypers.update(batch_size=4, learning_rate=1e-3, checkpoint_interval=1000)
    hypers.update(overrides)
    return hypers


def ethanol_data(n_train: int = 8, n_val: int = 4):
    conf = expand_dataset_config(
        OmegaConf.create(
            {
                "systems": {
                    "read_from": str(DATA / "ethanol_40.xyz"),
                    "length_unit": "angstrom",
                },
                "targets": {
                    "energy": {
                        "key": "energy",
                        "unit": "eV",
                        "forces": {"key": "forces"},
                    }
                },
            }
        )
    )
    dataset, targets, _ = get_dataset(conf[0])
    info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=get_atomic_types(dataset),
        targets=targets,
    )
    train = torch.utils.data.Subset(dataset, range(n_train))
    val = torch.utils.data.Subset(dataset, range(n_train, n_train + n_val))
    return info, train, val


def train(trainer, model, data, tmp_path):
    _, train_set, val_set = data
    trainer.train(
        model=model,
        dtype=torch.float64,
        devices=[torch.device("cpu")],
        train_datasets=[train_set],
        val_datasets=[val_set],
        checkpoint_dir=str(tmp_path),
    )


# ---------------------------------------------------------------- schedules


def test_warmup_is_linear_then_step_lr():
    factors = [
        learning_rate_factor(s, 4, 2, 3, 0.5, None, 10) for s in range(0, 8 * 4, 4)
    ]
    # warm-up over 2 epochs of 4 steps: (s + 1) / 8 at the start of epochs 0, 1
    assert factors[:2] == pytest.approx([1 / 8, 5 / 8])
    # StepLR: a factor 0.5 every 3 epochs, counted from the start of training
    assert factors[2:] == pytest.approx([1.0, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_cosine_decays_from_the_end_of_warmup_to_zero_at_the_last_step():
    def factor(step):
        # 10 epochs of 4 steps, 1 warm-up epoch: the cosine spans steps 4 to 40
        return learning_rate_factor(step, 4, 1, 3, 0.5, None, 10, cosine_epochs=10)

    assert [factor(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factor(4) == pytest.approx(1.0)
    assert factor(22) == pytest.approx(0.5)
    assert factor(40) == pytest.approx(0.0, abs=1e-12)
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    # monotonic after the warm-up
    values = [factor(s) for s in range(4, 41)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_fast_decay_freezes_step_lr_and_falls_linearly_to_zero():
    def factor(epoch):
        return learning_rate_factor(epoch * 10, 10, 0, 4, 0.5, 5, 4)

    # StepLR is 0.5 at the decay start (epoch 5), then stays frozen
    assert [factor(e) for e in range(5, 10)] == pytest.approx(
        [0.5, 0.375, 0.25, 0.125, 0.0]
    )
    assert learning_rate_factor(55, 10, 0, 4, 0.5, 5, 4) == pytest.approx(0.4375)


def test_fast_decay_starts_after_patience_from_the_best_epoch():
    trainer = Trainer(trainer_hypers(scheduler="fast_decay", fast_decay_patience=3))
    trainer.best_epoch = 4
    assert not trainer._should_stop(6)
    assert trainer.fast_decay_start is None
    assert not trainer._should_stop(7)
    assert trainer.fast_decay_start == 8
    # early stopping does not cut the decay short
    trainer.hypers["early_stopping_patience"] = 1
    assert not trainer._should_stop(20)


def test_early_stopping_patience():
    trainer = Trainer(trainer_hypers(early_stopping_patience=2))
    trainer.best_epoch = 3
    assert not trainer._should_stop(4)
    assert trainer._should_stop(5)
    trainer.hypers["early_stopping_patience"] = 0
    assert not trainer._should_stop(500)


# ---------------------------------------------------------------- Eq. 8


class _Term:
    def __init__(self, target, weight, value):
        self.target = target
        self.weight = weight
        self.value = torch.tensor(value)

    def compute(self, predictions, targets, extra_data):
        return self.value


class _Aggregator:
    def __init__(self, terms):
        self.losses = terms


def test_eq8_divides_every_term_by_its_validation_mse():
    terms = {
        "energy": _Term("energy", 0.1, 4.0),
        "energy_grad_positions": _Term("energy", 1.0, 2.0),
    }
    normalization = {}
    loss = NormalizedLoss(_Aggregator(terms), normalization)
    hypers = {"loss_normalization": "validation_ema", "loss_ema_alpha": 0.25}
    predictions = {"energy": None}

    total, values = loss(predictions, {}, {})
    assert total.item() == pytest.approx(0.1 * 4.0 + 2.0)
    assert values == {"energy": 4.0, "energy_grad_positions": 2.0}

    loss.update_normalization(
        {"energy": 8.0, "energy_grad_positions": 0.5}, hypers, True
    )
    assert normalization == {"energy": 8.0, "energy_grad_positions": 0.5}
    total, _ = loss(predictions, {}, {})
    assert total.item() == pytest.approx(0.1 * 4.0 / 8.0 + 2.0 / 0.5)

    loss.update_normalization(
        {"energy": 4.0, "energy_grad_positions": 1.5}, hypers, False
    )
    assert normalization["energy"] == pytest.approx(0.75 * 8.0 + 0.25 * 4.0)
    assert normalization["energy_grad_positions"] == pytest.approx(0.75 * 0.5 + 0.375)


def test_no_normalization_leaves_the_terms_alone():
    normalization = {}
    loss = NormalizedLoss(
        _Aggregator({"energy": _Term("energy", 1.0, 3.0)}), normalization
    )
    loss.update_normalization({"energy": 9.0}, {"loss_normalization": "none"}, True)
    assert normalization == {}
    assert loss({"energy": None}, {}, {})[0].item() == pytest.approx(3.0)


def test_ema_is_updated_once_per_epoch_and_continues_after_restart(tmp_path):
    data = ethanol_data()
    hypers = trainer_hypers(
        num_epochs=2,
        loss_normalization="validation_ema",
        loss_ema_alpha=0.5,
        warmup_epochs=10,
    )
    updates = []
    original = NormalizedLoss.update_normalization

    def spy(self, validation_terms, hypers, first):
        before = dict(self.normalization)
        original(self, validation_terms, hypers, first)
        updates.append((before, dict(validation_terms), dict(self.normalization)))

    NormalizedLoss.update_normalization = spy
    try:
        torch.manual_seed(0)
        model = PET(tiny_hypers(), data[0])
        trainer = Trainer(hypers)
        train(trainer, model, data, tmp_path)
        trainer.save_checkpoint(model, tmp_path / "model.ckpt")
        # one seed from the untrained model, then one update per epoch
        assert len(updates) == 3
        assert updates[0][0] == {}
        assert set(updates[0][2]) == {"energy", "energy_grad_positions"}
        assert updates[0][2] == updates[0][1]
        saved = dict(trainer.loss_normalization)
        saved_lr = trainer.optimizer_state_dict["param_groups"][0]["lr"]

        checkpoint = torch.load(tmp_path / "model.ckpt", weights_only=False)
        restarted_model = PET.load_checkpoint(checkpoint, "restart")
        restarted = Trainer.load_checkpoint(
            checkpoint, trainer_hypers(**{**hypers, "num_epochs": 3}), "restart"
        )
        assert restarted.epoch == 1
        assert restarted.loss_normalization == saved
        train(restarted, restarted_model, data, tmp_path)
    finally:
        NormalizedLoss.update_normalization = original

    # the restart continues the moving averages: no second seed
    assert len(updates) == 4
    before, value, after = updates[3]
    assert before == saved
    for name in saved:
        assert after[name] == pytest.approx(0.5 * saved[name] + 0.5 * value[name])
    assert restarted.epoch == 2
    # warm-up over 10 epochs of 2 steps: the step counter continued, 6 steps done
    assert restarted.step == 6
    assert saved_lr == pytest.approx(1e-3 * 4 / 20)
    assert restarted.optimizer_state_dict["param_groups"][0]["lr"] == pytest.approx(
        1e-3 * 6 / 20
    )


# ---------------------------------------------------------------- training runs


def test_early_stopping_keeps_the_best_model(tmp_path):
    data = ethanol_data()
    torch.manual_seed(0)
    model = PET(tiny_hypers(), data[0])
    # with a zero learning rate the validation error never improves after epoch 0
    trainer = Trainer(
        trainer_hypers(num_epochs=20, learning_rate=0.0, early_stopping_patience=2)
    )
    train(trainer, model, data, tmp_path)
    assert trainer.best_epoch == 0
    assert trainer.epoch == 2


def test_fast_decay_restores_the_best_model_and_then_stops(tmp_path, caplog):
    data = ethanol_data()
    torch.manual_seed(0)
    model = PET(tiny_hypers(), data[0])
    trainer = Trainer(
        trainer_hypers(
            num_epochs=50,
            scheduler="fast_decay",
            fast_decay_patience=0,
            fast_decay_epochs=2,
        )
    )
    with caplog.at_level(logging.INFO):
        train(trainer, model, data, tmp_path)
    # the decay starts after epoch 0 and runs for epochs 1 and 2
    assert trainer.fast_decay_start == 1
    assert trainer.epoch == 2
    assert "starts from the model of epoch 0" in caplog.text
    assert "fast learning-rate decay is over" in caplog.text
    # the last step of the decay has a learning rate close to zero
    assert trainer.optimizer_state_dict["param_groups"][0]["lr"] < 1e-3 / 2


def test_one_summary_line_per_epoch(tmp_path, caplog):
    data = ethanol_data()
    torch.manual_seed(0)
    model = PET(tiny_hypers(), data[0])
    trainer = Trainer(trainer_hypers(num_epochs=3, progress_bar=True))
    with caplog.at_level(logging.INFO):
        train(trainer, model, data, tmp_path)
    summaries = [r.message for r in caplog.records if r.message.startswith("Epoch:")]
    assert len(summaries) == 3
    assert all("validation energy RMSE" in line for line in summaries)
    assert all("\n" not in line for line in summaries)


# ---------------------------------------------------------------- App. F.10


def test_laboratory_frame_rotation_of_vectors_and_rank_2_tensors():
    torch.manual_seed(0)
    rotations = random_rotations(5, True, torch.float64, torch.device("cpu"))
    assert torch.allclose(
        rotations @ rotations.transpose(1, 2),
        torch.eye(3, dtype=torch.float64).expand(5, 3, 3),
    )
    vectors = torch.randn(5, 3, 2, dtype=torch.float64)
    tensors = torch.randn(5, 3, 3, 1, dtype=torch.float64)
    scalars = torch.randn(5, 1, dtype=torch.float64)
    expected_vectors = torch.einsum("iba,ibp->iap", rotations, vectors)
    expected_tensors = torch.einsum("iba,ibdp,idc->iacp", rotations, tensors, rotations)
    assert torch.equal(rotate_back(scalars, rotations, 0), scalars)
    assert torch.allclose(rotate_back(vectors, rotations, 1), expected_vectors)
    assert torch.allclose(rotate_back(tensors, rotations, 2), expected_tensors)
    assert cartesian_rank(["xyz"], "dipole", "test") == 1
    assert cartesian_rank(["xyz_1", "xyz_2"], "polarizability", "test") == 2


def test_spherical_components_are_refused():
    with pytest.raises(ValueError, match="cannot rotate output 'spherical' back"):
        cartesian_rank(["o3_mu"], "spherical", "per-environment augmentation")


def test_environment_rotation_only_acts_in_training_mode():
    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    model = energy_model([1, 6, 8])
    model.network.rotate_environments = True
    system = system_from_atoms(model, atoms)
    outputs = {"energy": ModelOutput(sample_kind="system")}

    def energy():
        return model([system], outputs)["energy"].block().values.item()

    reference = energy()
    assert energy() == reference
    model.network.rotate_environments = False
    assert energy() == reference

    model.train()
    model.network.rotate_environments = False
    unrotated = energy()
    assert energy() == pytest.approx(unrotated, abs=1e-12)
    model.network.rotate_environments = True
    first, second = energy(), energy()
    assert abs(first - second) > 1e-8
    assert abs(first - unrotated) > 1e-8


def test_per_atom_vectors_follow_the_environment_rotations():
    """With one message-passing block, atom i's vector in training mode is
    R_i^T f(R_i A_i), where f(R_i A_i) is what the evaluation-mode model predicts
    for atom i of the whole structure rotated by R_i."""
    atoms = ase.io.read(DATA / "qm7x_30_mu.xyz", 0)
    torch.manual_seed(0)
    target = get_generic_target_info(
        "mtt::dipole",
        {
            "quantity": "",
            "unit": "",
            "type": {"cartesian": {"rank": 1}},
            "num_subtargets": 1,
            "sample_kind": "atom",
        },
    )
    info = DatasetInfo("angstrom", [1, 6, 7, 8], {"mtt::dipole": target})
    model = PET(tiny_hypers(num_gnn_layers=1), info).to(torch.float64)
    model.network.rotate_environments = True
    outputs = {"mtt::dipole": ModelOutput(sample_kind="atom")}

    model.train()
    torch.manual_seed(7)
    rotations = random_rotations(len(atoms), False, torch.float64, torch.device("cpu"))
    torch.manual_seed(7)
    system = system_from_atoms(model, atoms)
    trained_frame = model.network([system], outputs)["mtt::dipole"].block().values

    model.eval()
    for i, rotation in enumerate(rotations):
        rotated = atoms.copy()
        rotated.positions = atoms.positions @ rotation.numpy().T
        values = model.network([system_from_atoms(model, rotated)], outputs)
        vector = values["mtt::dipole"].block().values[i, :, 0]
        assert torch.allclose(
            trained_frame[i, :, 0], rotation.T @ vector, atol=1e-10
        ), f"atom {i}"


def test_training_with_environment_augmentation(tmp_path):
    data = ethanol_data()
    torch.manual_seed(0)
    model = PET(tiny_hypers(), data[0])
    trainer = Trainer(trainer_hypers(num_epochs=2, augmentation="environment"))
    train(trainer, model, data, tmp_path)
    # switched off after training; the exported model is deterministic
    assert not model.network.rotate_environments
    exported = model.export()
    atoms = ase.io.read(DATA / "ethanol_40.xyz", 30)
    system = system_from_atoms(model, atoms)
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={"energy": ModelOutput(sample_kind="system")}
    )
    first = exported([system], options, check_consistency=True)["energy"]
    second = exported([system], options, check_consistency=True)["energy"]
    assert torch.isfinite(first.block().values).all()
    assert torch.equal(first.block().values, second.block().values)


def environment_rotation_spread(model, atoms_list) -> float:
    """Mean standard deviation (eV) of the energy of each structure over eight
    evaluations with fresh per-environment rotations."""
    model.train()
    model.network.rotate_environments = True
    systems = [system_from_atoms(model, atoms) for atoms in atoms_list]
    outputs = {"energy": ModelOutput(sample_kind="system")}
    with torch.no_grad():
        energies = torch.stack(
            [model(systems, outputs)["energy"].block().values[:, 0] for _ in range(8)]
        )
    model.network.rotate_environments = False
    model.eval()
    return energies.std(dim=0).mean().item()


def test_invariance_penalty_makes_the_model_closer_to_invariant(tmp_path):
    """Same data, initial weights and steps: the penalty on the disagreement
    between two per-environment rotations (``invariance_weight``) must leave a
    model whose energies depend far less on those rotations than training on
    the targets alone does. A penalty that compared two identical evaluations
    (no fresh rotations) would be zero and leave both models alike."""
    data = ethanol_data()
    atoms_list = ase.io.read(DATA / "ethanol_40.xyz", "30:36")
    spreads = {}
    for weight in (0.0, 100.0):
        torch.manual_seed(0)
        model = PET(tiny_hypers(), data[0])
        hypers = trainer_hypers(
            num_epochs=20, augmentation="environment", invariance_weight=weight
        )
        train(Trainer(hypers), model, data, tmp_path)
        spreads[weight] = environment_rotation_spread(model, atoms_list)
    assert spreads[100.0] < 0.5 * spreads[0.0], spreads


def test_invariance_penalty_refuses_distributed_training(tmp_path, monkeypatch):
    from metatrain_pet.training import trainer as trainer_module
    from metatrain_pet.training.distributed import Processes

    def two_processes(*args):
        return Processes(0, 2, torch.device("cpu"))

    monkeypatch.setattr(trainer_module.distributed, "start", two_processes)
    data = ethanol_data()
    model = PET(tiny_hypers(), data[0])
    hypers = trainer_hypers(augmentation="environment", invariance_weight=1.0)
    with pytest.raises(ValueError, match="does not work in distributed training"):
        train(Trainer(hypers), model, data, tmp_path)


# ---------------------------------------------------------------- bad options


OPTIONS = {
    "seed": 0,
    "base_precision": 64,
    "architecture": {
        "name": "experimental.pet_ecse",
        "model": {
            "d_pet": 8,
            "d_feedforward": 8,
            "d_readout": 8,
            "num_heads": 1,
            "num_attention_layers": 1,
            "num_gnn_layers": 1,
        },
        "training": {"num_epochs": 1, "batch_size": 4},
    },
    "training_set": {
        "systems": {"read_from": str(DATA / "qm7x_30_mu.xyz"), "length_unit": "A"},
        "targets": {
            "mtt::dipole": {
                "key": "mu",
                "type": {"cartesian": {"rank": 1}},
                "sample_kind": "system",
            }
        },
    },
    "validation_set": 0.2,
    "test_set": 0.0,
}


def options_with(path, value):
    options = copy.deepcopy(OPTIONS)
    *parents, last = path
    node = options
    for key in parents:
        node = node[key]
    node[last] = value
    return OmegaConf.create(options)


def started_training(caplog):
    return any("Starting training at epoch" in r.message for r in caplog.records)


@pytest.mark.parametrize(
    "path, value, message",
    [
        (
            ("training_set", "targets", "mtt::dipole", "key"),
            "not_in_the_file",
            "not_in_the_file",
        ),
        (
            ("architecture", "training", "scheduler"),
            "exponential",
            "scheduler",
        ),
        (
            ("architecture", "training", "augmentation"),
            "environment",
            "does not support spherical targets",
        ),
        (
            ("architecture", "training", "loss"),
            {"energy": "mse"},
            "Invalid top-level loss entry 'energy'",
        ),
    ],
    ids=["missing-key", "unknown-scheduler", "spherical-environment", "loss-name"],
)
def test_bad_options_stop_before_training(
    path, value, message, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    options = options_with(path, value)
    if path[-1] == "augmentation":
        options.training_set.targets["mtt::dipole"].type = {
            "spherical": {"irreps": [{"o3_lambda": 1, "o3_sigma": 1}]}
        }
    with caplog.at_level(logging.INFO), pytest.raises(Exception) as error:
        train_model(options)
    assert message in str(error.value) + str(error.value.__cause__)
    assert not started_training(caplog)


def test_trainer_checks_its_options_on_the_python_api():
    info, _, _ = ethanol_data()
    with pytest.raises(ValueError, match="`log_interval` must be >= 1"):
        check_trainer_hypers(trainer_hypers(log_interval=0), info.targets)
    with pytest.raises(ValueError, match="not among the training targets"):
        check_trainer_hypers(trainer_hypers(loss={"mtt::dipole": "mse"}), info.targets)
    with pytest.raises(ValueError, match="`energy_weight` must be >= 0"):
        check_trainer_hypers(trainer_hypers(energy_weight=-1.0), info.targets)
    with pytest.raises(ValueError, match="`loss_ema_alpha` must be in"):
        check_trainer_hypers(trainer_hypers(loss_ema_alpha=0.0), info.targets)
    with pytest.raises(ValueError, match="`invariance_weight` must be >= 0"):
        check_trainer_hypers(trainer_hypers(invariance_weight=-1.0), info.targets)
    with pytest.raises(ValueError, match="needs `augmentation: environment`"):
        check_trainer_hypers(trainer_hypers(invariance_weight=1.0), info.targets)
    check_trainer_hypers(trainer_hypers(augmentation="environment"), info.targets)
    check_trainer_hypers(
        trainer_hypers(augmentation="environment", invariance_weight=1.0),
        info.targets,
    )


def test_wrong_shape_of_a_vector_target(tmp_path, monkeypatch, caplog):
    frames = ase.io.read(DATA / "qm7x_30_mu.xyz", ":8")
    for frame in frames:
        frame.info["mu"] = frame.info["mu"][:2]
    ase.io.write(tmp_path / "bad.xyz", frames)
    monkeypatch.chdir(tmp_path)
    options = options_with(("training_set", "systems", "read_from"), "bad.xyz")
    with caplog.at_level(logging.INFO), pytest.raises(Exception) as error:
        train_model(options)
    # metatrain's reader refuses it; its message names neither target nor file
    assert "invalid for input of size 2" in str(error.value)
    assert not started_training(caplog)


def test_without_validation_data_the_last_epoch_is_kept(tmp_path, caplog):
    """An empty validation set used to make epoch 0 the 'best' model and throw
    the training away; now the last epoch is kept, and the log says so."""
    data = ethanol_data(n_val=0)
    torch.manual_seed(0)
    model = PET(tiny_hypers(), data[0])
    trainer = Trainer(trainer_hypers(num_epochs=3))
    with caplog.at_level(logging.WARNING):
        train(trainer, model, data, tmp_path)
    assert trainer.best_epoch == 2
    assert any("validation set is empty" in r.message for r in caplog.records)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(trainer.best_model_state_dict[name], value)


def test_zero_epochs_are_reported(tmp_path, caplog):
    data = ethanol_data()
    model = PET(tiny_hypers(), data[0])
    with caplog.at_level(logging.WARNING):
        train(Trainer(trainer_hypers(num_epochs=0)), model, data, tmp_path)
    assert any("no epoch will be trained" in r.message for r in caplog.records)


def test_non_finite_energies_are_named_before_training(tmp_path, monkeypatch, caplog):
    """metatrain reads a NaN label as a missing one, but its composition fit turns
    one NaN energy into NaN baselines: every energy target became NaN, the energy
    loss silently zero, and the first epoch ended in a ZeroDivisionError."""
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":16")
    for frame in frames:
        frame.info["energy"] = frame.get_potential_energy()
        frame.arrays["forces"] = frame.get_forces()
        frame.calc = None
    frames[2].info["energy"] = float("nan")
    frames[7].info["energy"] = float("inf")
    ase.io.write(tmp_path / "train.xyz", frames[:12])
    ase.io.write(tmp_path / "val.xyz", frames[12:])
    monkeypatch.chdir(tmp_path)
    targets = {"energy": {"key": "energy", "unit": "eV", "forces": {"key": "forces"}}}
    options = copy.deepcopy(OPTIONS)
    options["training_set"] = {
        "systems": {"read_from": "train.xyz", "length_unit": "A"},
        "targets": targets,
    }
    options["validation_set"] = {
        "systems": {"read_from": "val.xyz", "length_unit": "A"},
        "targets": targets,
    }
    with caplog.at_level(logging.INFO), pytest.raises(Exception) as error:
        train_model(OmegaConf.create(options))
    message = str(error.value) + str(error.value.__cause__)
    assert "composition baseline of target 'energy' is not finite" in message
    assert "structures 2, 7 of the data read for training set 0" in message
    assert not started_training(caplog)
