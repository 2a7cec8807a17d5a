"""Fine-tuning strategies through ``mtt train`` (issue 16): ``heads`` changes only the
heads, ``lora`` leaves every base weight as it was and its adapters merge back into
an equal model, and fine-tuning on data of a new "level of theory" improves on it.

The new level of theory is synthetic: the reference energies shifted by 1 eV (as a
method with another reference energy would; the composition baseline, already
fitted on the base data, is kept when fine-tuning) and the forces scaled by 1.02."""

import ase.io
import numpy as np
import pytest
import torch
from metatomic_ase import MetatomicCalculator
from metatrain.utils.io import model_from_checkpoint

from metatrain_pet.pet import finetuning
from pet_helpers import DATA, energy_and_forces
from test_end_to_end import OPTIONS, mtt

FINETUNE = """
  training:
    num_epochs: 20
    batch_size: 4
    learning_rate: 1.0e-2
    finetune:
      read_from: base.ckpt
      method: {method}
      config: {config}
training_set:
  systems:
    read_from: new.xyz
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
      forces:
        key: forces
validation_set: 0.25
test_set: 0.0
"""


def _new_level_of_theory(frames):
    scaled = []
    for original in frames:
        energy, forces = original.get_potential_energy(), original.get_forces()
        atoms = original.copy()
        atoms.info["energy"] = energy + 1.0
        atoms.arrays["forces"] = 1.02 * forces
        scaled.append(atoms)
    return scaled


def _options(method: str, config: str) -> str:
    """The base options (same model) with the fine-tuning sections instead."""
    model_part = OPTIONS.split("  training:")[0]
    return model_part + FINETUNE.format(method=method, config=config)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A base PET trained on 16 ethanol frames, and 8 frames of the new data."""
    folder = tmp_path_factory.mktemp("finetune")
    frames = ase.io.read(DATA / "ethanol_40.xyz", ":24")
    ase.io.write(folder / "data.xyz", frames[:16])
    ase.io.write(folder / "new.xyz", _new_level_of_theory(frames[16:]))
    (folder / "base.yaml").write_text(OPTIONS.format(epochs=3, data="data.xyz"))
    mtt("train", "base.yaml", "-o", "base.pt", cwd=folder)
    return folder


def _finetune(folder, method: str, config: str = "{}"):
    (folder / f"{method}.yaml").write_text(_options(method, config))
    mtt("train", f"{method}.yaml", "-o", f"{method}.pt", cwd=folder)
    return _state(folder / f"{method}.ckpt")


BASELINES = ("additive_models.", "scaler.")
"""State entries fitted again on the new data (composition baseline, scales)."""


def _state(path):
    """The checkpoint and the network's weights of its best model."""
    checkpoint = torch.load(path, weights_only=False)
    weights = checkpoint["best_model_state_dict"] or checkpoint["model_state_dict"]
    network = {k: v for k, v in weights.items() if not k.startswith(BASELINES)}
    return checkpoint, network


def _energy_error(model_path, frames) -> float:
    calculator = MetatomicCalculator(str(model_path))
    errors = []
    for atoms in frames:
        reference = atoms.get_potential_energy()
        atoms = atoms.copy()
        atoms.calc = calculator
        errors.append(abs(atoms.get_potential_energy() - reference))
    return float(np.mean(errors))


def test_heads_changes_only_the_heads(folder):
    _, base = _state(folder / "base.ckpt")
    checkpoint, tuned = _finetune(folder, "heads")
    assert checkpoint["model_data"]["finetune_config"]["method"] == "heads"
    changed = {name for name in base if not torch.equal(base[name], tuned[name])}
    assert changed and all(name.startswith("network.heads.") for name in changed)


def test_lora_keeps_the_base_weights_and_merges_back(folder):
    _, base = _state(folder / "base.ckpt")
    checkpoint, tuned = _finetune(folder, "lora", "{rank: 2, alpha: 4.0}")
    adapters = [name for name in tuned if "lora_" in name]
    assert adapters
    for name, value in base.items():
        lora_name = name.replace(".weight", ".linear.weight").replace(
            ".bias", ".linear.bias"
        )
        key = lora_name if lora_name in tuned else name
        torch.testing.assert_close(tuned[key], value, rtol=0, atol=0)

    # the checkpoint reloads (adapters re-injected), and the merged export is the
    # same function as the model with its adapters
    model = model_from_checkpoint(checkpoint, context="export").to(torch.float64)
    merged = finetuning.merged_lora(model)
    assert not any("lora_" in name for name in merged.state_dict())
    for atoms in ase.io.read(folder / "new.xyz", ":2"):
        e_model, f_model = energy_and_forces(model, atoms)
        e_merged, f_merged = energy_and_forces(merged, atoms)
        assert e_merged == pytest.approx(e_model, abs=1e-10)
        torch.testing.assert_close(f_merged, f_model, atol=1e-10, rtol=0)


def test_finetuning_improves_on_the_new_data(folder):
    _finetune(folder, "full")
    frames = ase.io.read(folder / "new.xyz", ":")
    before = _energy_error(folder / "base.pt", frames)
    after = _energy_error(folder / "full.pt", frames)
    assert after < 0.5 * before


def test_inherit_heads_copies_the_heads_of_an_existing_target(folder):
    """A new target fine-tuned with ``inherit_heads`` starts from the heads of the
    named target (zero epochs: the checkpoint is the starting point). The new data
    carry the new target only, the usual case of a new level of theory."""
    options = _options("heads", "{}").replace("num_epochs: 20", "num_epochs: 0")
    options = options.replace("    energy:\n      key: energy", "    mtt::energy_copy:"
                              "\n      key: energy")  # fmt: skip
    options = options.replace(
        "      method: heads",
        "      method: heads\n      inherit_heads:\n        mtt::energy_copy: energy",
    )
    (folder / "inherit.yaml").write_text(options)
    mtt("train", "inherit.yaml", "-o", "inherit.pt", cwd=folder)
    _, weights = _state(folder / "inherit.ckpt")
    copied = [name for name in weights if ".mtt::energy_copy." in name]
    assert copied
    for name in copied:
        source = name.replace(".mtt::energy_copy.", ".energy.")
        torch.testing.assert_close(weights[name], weights[source], rtol=0, atol=0)
