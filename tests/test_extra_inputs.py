"""Extra inputs (issue 17): per-atom scalars such as collinear spins (App. C.3) and
the total charge and spin multiplicity of a structure (system conditioning), from
the dataset's ``extra_data`` through ``mtt train`` to ASE.

The data are synthetic: ethanol structures whose energy has an added term that
positions cannot tell, ``0.5 eV × Σ_i s_i`` with random spins s_i in {-1, 0, 1}, or
``1 eV × Q`` with a random charge Q. Only a model that is given the spins (or the
charge) can learn it."""

import copy

import ase.io
import numpy as np
import pytest
import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    ModelEvaluationOptions,
    ModelOutput,
    load_atomistic_model,
    systems_to_torch,
)
from metatomic_ase import MetatomicCalculator
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from scipy.spatial.transform import Rotation

from metatrain_pet.nn.inputs import InputFeatures, discretized_spins
from pet_helpers import DATA, energy_model, system_from_atoms, tiny_hypers
from test_end_to_end import mtt

OPTIONS = """
seed: 0
base_precision: 64
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.0
    d_pet: 16
    d_feedforward: 16
    d_readout: 16
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 1
{model}
  training:
    num_epochs: 60
    batch_size: 8
    learning_rate: 3.0e-3
training_set:
  systems: train.xyz
  targets:
    energy:
      key: energy
{extra_data}
validation_set:
  systems: validation.xyz
  targets:
    energy:
      key: energy
{extra_data}
test_set: 0.0
"""

SPINS = """    atomic_inputs: ["ase::initial_magmoms"]
    discretize_atomic_inputs: true"""
SPIN_DATA = """  extra_data:
    initial_magmoms:
      key: initial_magmoms
      sample_kind: atom"""
CHARGES = """    system_conditioning: true
    max_charge: 2
    max_spin_multiplicity: 3"""
CHARGE_DATA = """  extra_data:
    charge:
      key: charge
    spin_multiplicity:
      key: spin_multiplicity"""


def _frames(kind: str) -> list:
    """40 ethanol structures with the synthetic energy term of ``kind``."""
    generator = np.random.default_rng(0)
    frames = []
    for original in ase.io.read(DATA / "ethanol_40.xyz", ":"):
        atoms = ase.Atoms(original.numbers, original.positions)
        energy = original.get_potential_energy()
        if kind == "spins":
            # spins around -1, 0, 1 with noise, rounded by the model (App. C.3)
            spins = generator.integers(-1, 2, len(atoms)).astype(float)
            atoms.set_initial_magnetic_moments(
                spins * 1.8 + generator.uniform(-0.1, 0.1, len(atoms))
            )
            energy += 0.5 * spins.sum()
        else:
            charge = int(generator.integers(-1, 2))
            atoms.info.update(charge=charge, spin_multiplicity=1 + abs(charge))
            energy += 1.0 * charge
        atoms.info["energy"] = energy
        frames.append(atoms)
    return frames


def _train(folder, model: str, extra_data: str) -> None:
    options = OPTIONS.format(model=model, extra_data=extra_data)
    (folder / "options.yaml").write_text(options)
    mtt("train", "options.yaml", "-o", "model.pt", cwd=folder)


def _validation_mae(folder) -> float:
    calculator = MetatomicCalculator(str(folder / "model.pt"))
    errors = []
    for atoms in ase.io.read(folder / "validation.xyz", ":"):
        reference = atoms.get_potential_energy()  # ASE reads it into a calculator
        atoms.calc = calculator
        errors.append(abs(atoms.get_potential_energy() - reference))
    return float(np.mean(errors))


@pytest.fixture(scope="module", params=["spins", "charges"])
def trained(request, tmp_path_factory):
    """For each kind, a model given the extra inputs and one that is not."""
    kind = request.param
    frames = _frames(kind)
    model, data = (SPINS, SPIN_DATA) if kind == "spins" else (CHARGES, CHARGE_DATA)
    folders = {}
    for given in (True, False):
        folder = tmp_path_factory.mktemp(f"{kind}_{given}")
        ase.io.write(folder / "train.xyz", frames[:32])
        ase.io.write(folder / "validation.xyz", frames[32:])
        _train(folder, model if given else "", data if given else "")
        folders[given] = folder
    return kind, folders


@pytest.mark.slow
def test_the_extra_energy_is_learned_only_with_the_inputs(trained):
    kind, folders = trained
    with_inputs, without = (
        _validation_mae(folders[True]),
        _validation_mae(folders[False]),
    )
    # the term's spread is 0.5 eV × 2.4 (spins) or 1 eV × 0.8 (charges)
    assert without > 0.4, (kind, without)
    assert with_inputs < 0.25 * without, (kind, with_inputs, without)


@pytest.mark.slow
def test_the_exported_model_declares_its_inputs_and_names_a_missing_one(trained):
    kind, folders = trained
    model = load_atomistic_model(str(folders[True] / "model.pt"))
    requested = model.requested_inputs(use_new_names=True)
    expected = (
        {"ase::initial_magmoms": "atom"}
        if kind == "spins"
        else {"charge": "system", "spin_multiplicity": "system"}
    )
    assert {name: o.sample_kind for name, o in requested.items()} == expected

    # an engine that gives positions and neighbour lists only
    atoms = ase.io.read(folders[True] / "validation.xyz", "0")
    system = get_system_with_neighbor_lists(
        systems_to_torch(atoms, dtype=torch.float64),
        model.requested_neighbor_lists(),
    )
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={"energy": ModelOutput(per_atom=False)}
    )
    with pytest.raises(Exception, match=f"needs the input '{list(expected)[0]}'"):
        model([system], options, check_consistency=False)


def test_spins_are_discretized_as_in_the_paper():
    values = torch.tensor([-2.0, -0.25, -0.2, 0.0, 0.2, 0.25, 1.9])
    expected = torch.tensor([-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    assert torch.equal(discretized_spins(values), expected)


def test_charges_outside_the_trained_range_are_refused():
    features = InputFeatures(0, False, True, max_charge=1, max_multiplicity=2)
    atomic = torch.zeros((2, 0))
    structure = torch.tensor([0, 0])
    codes = features(atomic, torch.tensor([1]), torch.tensor([2]), structure)
    assert codes.shape == (2, 3 + 2)
    assert codes[0].tolist() == [0.0, 0.0, 1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="charge.*\\[-1, 1\\]"):
        features(atomic, torch.tensor([2]), torch.tensor([1]), structure)


def _with_spins(model, atoms, spins, rotation=None):
    """``atoms`` (rotated by ``rotation``) as a system carrying ``spins``."""
    atoms = atoms.copy()
    if rotation is not None:
        atoms.positions = atoms.positions @ rotation.T
    system = system_from_atoms(model, atoms)
    values = torch.tensor(spins, dtype=torch.float64).reshape(-1, 1)
    samples = Labels(
        ["system", "atom"],
        torch.tensor([[0, i] for i in range(len(atoms))], dtype=torch.int32),
    )
    block = TensorBlock(values, samples, [], Labels.range("magnetic_moment", 1))
    system.add_data("ase::initial_magmoms", TensorMap(Labels.single(), [block]))
    return system


def _energy(model, system) -> float:
    outputs = {"energy": ModelOutput(sample_kind="system")}
    return model([system], outputs)["energy"].block().values.item()


@pytest.mark.parametrize("mode", ["global", "layerwise"])
def test_ecse_of_a_model_with_spins_is_exact(mode):
    ecse = copy.deepcopy(tiny_hypers()["ecse"])
    ecse.update(enable=True, mode=mode, fallback="adaptive")
    model = energy_model([1, 6, 8], atomic_inputs=["ase::initial_magmoms"], ecse=ecse)
    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    spins = [1.0, -1.0, 0.0, 1.0, 1.0, -1.0, 0.0, 0.0, 1.0]
    reference = _energy(model, _with_spins(model, atoms, spins))
    rotation = Rotation.random(random_state=1).as_matrix()
    rotated = _energy(model, _with_spins(model, atoms, spins, rotation))
    assert abs(rotated - reference) < 1e-10
    flipped = _energy(model, _with_spins(model, atoms, [-s for s in spins]))
    assert abs(flipped - reference) > 1e-4  # the spins are used


def test_per_atom_ecse_refuses_extra_inputs():
    ecse = copy.deepcopy(tiny_hypers()["ecse"])
    ecse.update(enable=True, mode="per_atom")
    model = energy_model([1, 6, 8], atomic_inputs=["ase::initial_magmoms"], ecse=ecse)
    atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
    system = _with_spins(model, atoms, [0.0] * len(atoms))
    with pytest.raises(Exception, match="'per_atom' cuts environments out"):
        _energy(model, system)
