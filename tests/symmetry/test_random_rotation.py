"""On-the-fly random rotations (Supp. Sec. V of Langer et al. 2024)."""

import numpy as np
import pytest
import torch
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import load_atomistic_model

from metatrain_pet.geometry.rotations import quaternions_to_matrices
from metatrain_pet.symmetry.diagnostics import predict, rotated
from metatrain_pet.symmetry.grid import grid_average
from metatrain_pet.symmetry.random_rotation import (
    RandomRotationModel,
    random_rotation_average,
    rotate_back_by_system,
)

N_CALLS = 80


@pytest.fixture(scope="module")
def seeded_path(raw_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("random") / "random.pt"
    random_rotation_average(raw_model, seed=7).save(str(path))
    return path


def test_energy_changes_between_calls(raw_model, ethanol_frames):
    model = random_rotation_average(raw_model)
    energies = {predict(model, ethanol_frames[:1])[0].energy for _ in range(3)}
    assert len(energies) == 3
    # each system of a batch gets its own rotation
    batch = predict(model, [ethanol_frames[0]] * 3)
    assert len({prediction.energy for prediction in batch}) == 3


def test_seeded_sequence_restarts_when_loaded(seeded_path, ethanol_frames):
    sequences = []
    for _ in range(2):
        model = load_atomistic_model(str(seeded_path))
        energies = [predict(model, ethanol_frames[:1])[0].energy for _ in range(3)]
        sequences.append(energies)
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0])) == 3


def test_outputs_are_covariant_on_average(raw_model, ethanol_frames):
    """The mean over many calls is the O(3) average, in every input orientation."""
    atoms = ethanol_frames[0]
    matrix = quaternions_to_matrices(torch.tensor([[0.3, -0.5, 0.7, 0.2]]))[0]
    matrix = -matrix.numpy()
    model = random_rotation_average(raw_model, seed=0)
    reference = predict(grid_average(raw_model, 3, batch_size=64), [atoms])[0]

    for orientation in (np.eye(3), matrix):
        samples = predict(
            model, [rotated(atoms, orientation)] * N_CALLS, batch_size=N_CALLS
        )
        energies = np.array([sample.energy for sample in samples])
        forces = np.stack([sample.forces @ orientation for sample in samples])

        energy_error = np.std(energies) / np.sqrt(N_CALLS)
        assert abs(energies.mean() - reference.energy) < 5 * energy_error
        force_error = forces.std(axis=0) / np.sqrt(N_CALLS)
        assert np.all(np.abs(forces.mean(axis=0) - reference.forces) < 5 * force_error)


def test_inversion_flag_controls_improper_rotations(raw_model):
    for inversion, expected in ((True, {-1.0, 1.0}), (False, {1.0})):
        model = RandomRotationModel(raw_model.module, seed=3, inversion=inversion)
        matrices = model.sample_rotations(64, torch.float64, torch.device("cpu"))
        identity = torch.eye(3, dtype=torch.float64).expand(64, 3, 3)
        assert torch.allclose(matrices @ matrices.transpose(1, 2), identity)
        determinants = set(torch.linalg.det(matrices).round().tolist())
        assert determinants == expected


def _block(values, component_names):
    n_samples = values.shape[0]
    samples = Labels(
        ["system", "atom"],
        torch.stack(
            [torch.tensor([0, 1] * (n_samples // 2)), torch.arange(n_samples)]
        ).T,
    )
    components = [
        Labels([name], torch.arange(3).reshape(-1, 1)) for name in component_names
    ]
    return TensorBlock(values, samples, components, Labels.range("p", 1))


def test_vectors_and_tensors_are_rotated_back():
    generator = torch.Generator().manual_seed(0)
    rotations = quaternions_to_matrices(
        torch.randn(2, 4, dtype=torch.float64, generator=generator)
    )
    rotations[1] *= -1
    per_sample = rotations[torch.tensor([0, 1, 0, 1])]

    vectors = torch.randn(4, 3, 1, dtype=torch.float64, generator=generator)
    rotated_vectors = torch.einsum("sij,sjp->sip", per_sample, vectors)
    back = rotate_back_by_system("force", _block(rotated_vectors, ["xyz"]), rotations)
    assert torch.allclose(back.values, vectors)

    tensors = torch.randn(4, 3, 3, 1, dtype=torch.float64, generator=generator)
    rotated_tensors = torch.einsum(
        "sij,sjkp,slk->silp", per_sample, tensors, per_sample
    )
    back = rotate_back_by_system(
        "stress", _block(rotated_tensors, ["xyz_1", "xyz_2"]), rotations
    )
    assert torch.allclose(back.values, tensors)

    with pytest.raises(ValueError, match="cannot rotate output 'dipole' back"):
        rotate_back_by_system("dipole", _block(vectors, ["o3_mu"]), rotations)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_invalid_seed_is_refused(raw_model, seed):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        random_rotation_average(raw_model, seed=seed)
