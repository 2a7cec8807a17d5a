"""Per-structure Cartesian dipoles end to end: PET trained on 24 QM7-X molecules
(``mu``, a copy of 30 molecules in tests/data) predicts atomic vectors summed over
atoms (App. C.8 of the paper), is exported, evaluated on held-out molecules, and
made exactly covariant by ECSE (Sec. 5)."""

import copy
import os

import ase.io
import numpy as np
import pytest
import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput, System
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo, get_atomic_types, get_dataset
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from metatrain.utils.omegaconf import expand_dataset_config
from omegaconf import OmegaConf
from scipy.spatial.transform import Rotation

from metatrain_pet.pet.model import PET
from metatrain_pet.training.trainer import Trainer
from pet_helpers import DATA, tiny_hypers

pytestmark = pytest.mark.slow

DIPOLES = DATA / "qm7x_30_mu.xyz"
N_TRAIN = 24


def predict(model, frames):
    """Per-structure dipoles of an exported model, shape ``(len(frames), 3)``."""
    options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={"mtt::dipole": ModelOutput(sample_kind="system")},
    )
    dipoles = []
    for atoms in frames:
        system = System(
            types=torch.tensor(atoms.numbers, dtype=torch.int32),
            positions=torch.tensor(atoms.positions, dtype=torch.float64),
            cell=torch.zeros((3, 3), dtype=torch.float64),
            pbc=torch.tensor([False, False, False]),
        )
        system = get_system_with_neighbor_lists(
            system, model.requested_neighbor_lists()
        )
        values = model([system], options, check_consistency=True)["mtt::dipole"]
        assert values.block().values.shape == (1, 3, 1)
        dipoles.append(values.block().values.detach()[0, :, 0].numpy())
    return np.stack(dipoles)


def rotated(atoms, rotation):
    copy = atoms.copy()
    copy.positions = atoms.positions @ rotation.T
    return copy


def train_dipole_model(num_epochs: int):
    conf = expand_dataset_config(
        OmegaConf.create(
            {
                "systems": {"read_from": str(DIPOLES), "length_unit": "angstrom"},
                "targets": {
                    "mtt::dipole": {
                        "key": "mu",
                        "type": {"cartesian": {"rank": 1}},
                        "sample_kind": "system",
                    }
                },
            }
        )
    )
    dataset, targets, _ = get_dataset(conf[0])
    info = DatasetInfo("angstrom", get_atomic_types(dataset), targets)
    torch.manual_seed(0)
    model = PET(tiny_hypers(), info).to(torch.float64)
    hypers = copy.deepcopy(get_default_hypers("experimental.pet_ecse")["training"])
    hypers.update(
        num_epochs=num_epochs,
        batch_size=4,
        learning_rate=2e-3,
        per_atom_energy_loss=False,
        checkpoint_interval=1000,
    )
    trainer = Trainer(hypers)
    untrained = copy.deepcopy(model)
    trainer.train(
        model=model,
        dtype=torch.float64,
        devices=[torch.device("cpu")],
        train_datasets=[torch.utils.data.Subset(dataset, range(N_TRAIN))],
        val_datasets=[torch.utils.data.Subset(dataset, range(N_TRAIN, 30))],
        checkpoint_dir=".",
    )
    return untrained, model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("dipoles"))
    try:
        untrained, trained = train_dipole_model(num_epochs=8)
    finally:
        os.chdir(cwd)
    return untrained.export(), trained.export()


@pytest.fixture(scope="module")
def held_out():
    frames = ase.io.read(DIPOLES, ":")[N_TRAIN:]
    return frames, np.stack([atoms.info["mu"] for atoms in frames])


def test_trained_dipoles_beat_the_untrained_model(models, held_out):
    untrained, trained = models
    frames, reference = held_out
    trained_mae = np.abs(predict(trained, frames) - reference).mean()
    untrained_mae = np.abs(predict(untrained, frames) - reference).mean()
    assert trained_mae < untrained_mae


def test_raw_dipoles_are_only_approximately_covariant(models, held_out):
    _, trained = models
    atoms = held_out[0][0]
    rotation = Rotation.random(random_state=1).as_matrix()
    direct = predict(trained, [atoms])[0]
    turned = predict(trained, [rotated(atoms, rotation)])[0]
    error = np.abs(turned - rotation @ direct).max()
    assert error > 1e-9


def test_ecse_dipoles_are_exactly_covariant(models, held_out):
    ecse = pytest.importorskip("metatrain_pet.ecse")
    _, trained = models
    symmetrized = ecse.symmetrize(trained)
    frames, reference = held_out
    for atoms in frames[:2]:
        direct = predict(symmetrized, [atoms])[0]
        for seed in range(2):
            rotation = Rotation.random(random_state=seed).as_matrix()
            turned = predict(symmetrized, [rotated(atoms, rotation)])[0]
            assert np.allclose(turned, rotation @ direct, atol=1e-9, rtol=0.0)
    # symmetrizing a nearly covariant model changes its accuracy only a little
    raw_mae = np.abs(predict(trained, frames) - reference).mean()
    ecse_mae = np.abs(predict(symmetrized, frames) - reference).mean()
    assert ecse_mae < 2.0 * raw_mae
