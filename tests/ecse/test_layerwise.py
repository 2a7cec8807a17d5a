"""Layer-wise ECSE inside PET (App. F.10): every block symmetrized over the frames
of its central atom. Exact invariance/covariance, smoothness across every cutoff,
forces and stress as derivatives, ``selected_atoms`` and export."""

import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ecse_helpers import (
    assert_continuous_scan,
    covariance_errors,
    evaluate,
    random_methane,
    random_rotations,
    stretched_methane,
)
from metatomic.torch import ModelOutput, load_atomistic_model, systems_to_torch
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import (
    get_energy_target_info,
    get_generic_target_info,
)
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.ecse import ECSEModel
from metatrain_pet.ecse.hypers import TIGHT_PRESET
from metatrain_pet.pet.model import PET

DATA = __file__.rsplit("/", 3)[0] + "/tests/data"
ALL_OUTPUTS = ("energy", "mtt::dipole", "mtt::polarizability")


def _cartesian(name, rank):
    return get_generic_target_info(
        name,
        {
            "quantity": "",
            "unit": "",
            "type": {"cartesian": {"rank": rank}},
            "num_subtargets": 1,
            "sample_kind": "system",
        },
    )


def pet(layerwise: bool, **ecse) -> PET:
    """A small untrained PET (2 blocks, R_c = 4 Å) with an energy, a vector and a
    rank-2 target, in float64."""
    hypers = get_default_hypers("experimental.pet_ecse")["model"]
    hypers.update(d_pet=16, d_feedforward=32, d_readout=16, num_heads=2, cutoff=4.0)
    hypers["num_attention_layers"] = 1
    hypers["ecse"].update(enable=layerwise, mode="layerwise", fallback="adaptive")
    hypers["ecse"].update(ecse)
    targets = {
        "energy": get_energy_target_info(
            "energy", {"quantity": "energy", "unit": "eV"}
        ),
        "mtt::dipole": _cartesian("mtt::dipole", 1),
        "mtt::polarizability": _cartesian("mtt::polarizability", 2),
    }
    torch.manual_seed(0)
    model = PET(hypers, DatasetInfo("angstrom", [1, 6, 7, 8], targets))
    return model.to(torch.float64).eval()


LAYERWISE_VARIANTS = {
    "layerwise": {},
    "tight": TIGHT_PRESET,
    "gradual": dict(gradual_onset=True, **TIGHT_PRESET),
    "extra_rotation": dict(num_extra_rotations=1, **TIGHT_PRESET),
    "near_collinear": dict(fallback="adaptive_near_collinear", beta=5.0),
    "unpruned": dict(
        TIGHT_PRESET, beta=5.0, pruning=False, fallback="adaptive_near_collinear"
    ),
}
"""ECSE parameters of the layer-wise models, all with the raw model's weights."""


@pytest.fixture(scope="module")
def models():
    raw = pet(False)
    exported = {"raw": raw.export()}
    for name, ecse in LAYERWISE_VARIANTS.items():
        model = pet(True, **ecse)
        model.load_state_dict(raw.state_dict(), strict=False)
        exported[name] = model.export()
    return exported


def ethanol():
    return ase.io.read(f"{DATA}/ethanol_40.xyz", 0)


def triclinic_carbon():
    atoms = ase.build.bulk("C", "diamond", a=3.57).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=3)
    return atoms


STRUCTURES = {
    "ethanol": (ethanol, "layerwise", ALL_OUTPUTS, False),
    "benzene": (lambda: ase.build.molecule("C6H6"), "layerwise", ALL_OUTPUTS, False),
    "ethanol_gradual_onset": (ethanol, "gradual", ALL_OUTPUTS, False),
    "ethanol_extra_rotation": (ethanol, "extra_rotation", ALL_OUTPUTS, False),
    "ethanol_unpruned": (ethanol, "unpruned", ALL_OUTPUTS, False),
    "benzene_near_collinear": (
        lambda: ase.build.molecule("C6H6"),
        "near_collinear",
        ALL_OUTPUTS,
        False,
    ),
    "water192": (
        lambda: ase.io.read(f"{DATA}/water64_2.xyz", 0),
        "tight",
        ("energy",),
        True,
    ),
    "triclinic": (triclinic_carbon, "tight", ALL_OUTPUTS, True),
}


@pytest.mark.parametrize("name", sorted(STRUCTURES))
def test_exactly_equivariant(models, name):
    make, model_name, outputs, stress = STRUCTURES[name]
    atoms = make()
    rotations = random_rotations(20 if len(atoms) < 100 else 4, seed=len(atoms))
    errors = covariance_errors(
        models[model_name], atoms, rotations, outputs=outputs, stress=stress
    )
    assert max(errors.values()) <= 1e-12, errors
    raw = covariance_errors(models["raw"], atoms, rotations[:2], outputs=("energy",))
    assert raw["energy"] > 1e-6, raw


def test_layerwise_differs_from_global_averaging(models):
    """The blocks are averaged one by one: close to, but not, the raw function."""
    atoms = ethanol()
    raw = evaluate(models["raw"], atoms)["energy"]
    layerwise = evaluate(models["layerwise"], atoms)["energy"]
    assert layerwise != raw and abs(layerwise - raw) < 0.5 * abs(raw)


@pytest.mark.parametrize(
    "model_name", ["tight", "gradual", "near_collinear", "unpruned"]
)
def test_forces_and_stress_are_derivatives(models, model_name):
    atoms = triclinic_carbon()
    model = models[model_name]
    reference = evaluate(model, atoms, stress=True)
    h = 1e-5
    for atom, axis in [(0, 0), (5, 2), (11, 1)]:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * h
            energies.append(evaluate(model, moved)["energy"])
        derivative = -(energies[0] - energies[1]) / (2 * h)
        assert derivative == pytest.approx(reference["forces"][atom, axis], rel=1e-6)
    strained = []
    for sign in (1, -1):
        deformed = atoms.copy()
        strain = np.eye(3)
        strain[0, 1] = strain[1, 0] = sign * h / 2
        deformed.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        strained.append(evaluate(model, deformed)["energy"])
    derivative = (strained[0] - strained[1]) / (2 * h) / atoms.get_volume()
    assert derivative == pytest.approx(reference["stress"][0, 1], rel=1e-6)


def test_atom_crossing_every_cutoff(models):
    """An N atom leaves ethanol along x, crossing R_c (4 Å) of both blocks, R_out
    (5 Å) and the frame search radius (5.59 Å): nothing jumps."""
    atoms = ethanol()
    anchor = atoms.positions[np.argmax(atoms.positions[:, 0])]

    def make_structure(distance):
        return atoms + ase.Atoms("N", positions=[anchor + [distance, 0.0, 0.0]])

    assert_continuous_scan(
        models["layerwise"], make_structure, np.arange(3.7, 6.0, 0.05)
    )


def test_closest_neighbours_swapping(models):
    assert_continuous_scan(
        models["tight"], stretched_methane, np.arange(-0.12, 0.12, 0.006)
    )


def test_small_noise_gives_small_changes_fig6(models):
    model = models["layerwise"]
    rng = np.random.default_rng(1)
    for atoms in random_methane(5):
        reference = evaluate(model, atoms)
        slope = np.linalg.norm(reference["forces"])
        for amplitude in (1e-3, 1e-5):
            noisy = atoms.copy()
            noisy.positions += amplitude * rng.normal(size=noisy.positions.shape)
            change = abs(evaluate(model, noisy)["energy"] - reference["energy"])
            assert change <= 3.0 * slope * amplitude * np.sqrt(15) + 50 * amplitude**2


def test_selected_atoms_match_the_full_structure(models):
    model = models["tight"]
    atoms = ase.io.read(f"{DATA}/water64_2.xyz", 0)
    system = systems_to_torch(atoms, dtype=torch.float64)
    system = get_system_with_neighbor_lists(system, model.requested_neighbor_lists())
    outputs = {"energy": ModelOutput(sample_kind="atom")}
    full = model.module([system], outputs, None)["energy"].block()
    chosen = torch.tensor([[0, 3], [0, 50], [0, 191]], dtype=torch.int32)
    from metatensor.torch import Labels

    subset = model.module([system], outputs, Labels(["system", "atom"], chosen))
    values = subset["energy"].block().values[:, 0]
    expected = full.values[chosen[:, 1].long(), 0]
    assert torch.allclose(values, expected, rtol=0, atol=1e-10)


def test_saved_model_reports_frames_and_range(models, tmp_path):
    path = str(tmp_path / "layerwise.pt")
    models["layerwise"].save(path)
    loaded = load_atomistic_model(path)
    atoms = ethanol()
    result = evaluate(loaded, atoms, ("energy", "mtt::aux::ecse_num_frames"))
    assert result["energy"] == pytest.approx(
        evaluate(models["layerwise"], atoms)["energy"], rel=1e-10
    )
    assert result["mtt::aux::ecse_num_frames"][0] >= len(atoms)
    # two blocks of R_c = 4 Å, the last one's frames reach R_out + T(β) + Δ_Rc
    assert loaded.capabilities().interaction_range == pytest.approx(
        4.0 + 5.0 + 0.2784645427610738 / 3.0 + 0.5
    )


def test_generic_wrapper_refuses_layerwise(models):
    with pytest.raises(ValueError, match="'global' or 'per_atom'"):
        ECSEModel(models["raw"], mode="layerwise")


def test_command_line_symmetrizes_a_checkpoint(models, tmp_path):
    """`metatrain-pet ecse MODEL.ckpt --mode layerwise` exports the checkpoint's
    network with layer-wise ECSE, by default with the md preset (the unpruned
    variant's parameters) and R_out at the model's cutoff, also with `--preset
    loose` (fallback adaptive), with `--preset tight --gradual-onset` and with
    `--no-pruning`; an exported .pt gets a clear error."""
    from metatrain_pet.cli import main

    raw = pet(False)
    checkpoint = raw.get_checkpoint()
    checkpoint.update(epoch=0, best_epoch=0)
    torch.save(checkpoint, tmp_path / "raw.ckpt")
    output = str(tmp_path / "layerwise.pt")
    arguments = ["ecse", str(tmp_path / "raw.ckpt"), "--mode", "layerwise"]
    atoms = ethanol()
    # R_out defaults to the checkpoint's cutoff (4 Å)
    assert main(arguments + ["-o", output]) == 0
    expected = pet(True, r_out=4.0, **LAYERWISE_VARIANTS["unpruned"])
    expected.load_state_dict(raw.state_dict(), strict=False)
    expected = evaluate(expected.export(), atoms)["energy"]
    result = evaluate(load_atomistic_model(output), atoms)["energy"]
    assert result == pytest.approx(expected, rel=1e-10)
    arguments += ["--r-out", "5"]
    unpruned = ["--preset", "tight", "--beta", "5", "--no-pruning"]
    options = [
        ("layerwise", ["--preset", "loose"]),
        ("unpruned", []),
        ("gradual", ["--preset", "tight", "--gradual-onset"]),
        ("unpruned", unpruned + ["--fallback", "adaptive_near_collinear"]),
    ]
    for name, extra in options:
        assert main(arguments + extra + ["-o", output]) == 0
        expected = evaluate(models[name], atoms)["energy"]
        result = evaluate(load_atomistic_model(output), atoms)["energy"]
        assert result == pytest.approx(expected, rel=1e-10)
    models["raw"].save(str(tmp_path / "raw.pt"))
    arguments = ["ecse", str(tmp_path / "raw.pt"), "--mode", "layerwise", "-o", output]
    assert main(arguments) == 1
    assert main(arguments + ["--dtype", "float64"]) == 1


def test_command_line_exports_a_checkpoint_in_another_precision(models, tmp_path):
    """`--dtype` converts a checkpoint before exporting it (float64 for MD)."""
    from metatrain_pet.cli import main

    raw = pet(False)
    checkpoint = raw.get_checkpoint()
    checkpoint.update(epoch=0, best_epoch=0)
    torch.save(checkpoint, tmp_path / "raw.ckpt")
    output = str(tmp_path / "layerwise32.pt")
    arguments = ["ecse", str(tmp_path / "raw.ckpt"), "--mode", "layerwise"]
    arguments += ["--r-out", "5"]
    assert main(arguments + ["--dtype", "float32", "-o", output]) == 0
    loaded = load_atomistic_model(output)
    assert loaded.capabilities().dtype == "float32"
    atoms = ethanol()
    expected = evaluate(models["unpruned"], atoms)["energy"]
    result = evaluate(loaded, atoms, dtype=torch.float32)
    assert result["energy"] == pytest.approx(expected, rel=1e-5)
