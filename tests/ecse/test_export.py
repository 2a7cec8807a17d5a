"""Exported symmetrized models: TorchScript, save/load, ASE, the CLI, the wrapper
around plain modules, and clear errors for bad input."""

import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ecse_helpers import covariance_errors, evaluate, random_rotations
from ecse_toy_model import ToyModel
from metatensor.torch import Labels
from metatomic.torch import (
    ModelEvaluationOptions,
    ModelOutput,
    System,
    load_atomistic_model,
    systems_to_torch,
)
from metatomic_ase import MetatomicCalculator
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.cli import main
from metatrain_pet.ecse import ECSEModel, symmetrize
from metatrain_pet.ecse.wrapper import NUM_FRAMES_OUTPUT

DATA = __file__.rsplit("/", 3)[0] + "/tests/data"


def ethanol():
    return ase.io.read(f"{DATA}/ethanol_40.xyz", 0)


def test_capabilities_of_the_symmetrized_model(toy_model):
    model = symmetrize(toy_model, mode="per_atom", preset="tight")
    capabilities = model.capabilities()
    assert NUM_FRAMES_OUTPUT in capabilities.outputs
    for name in ["energy", "mtt::dipole", "mtt::polarizability"]:
        assert (
            capabilities.outputs[name].unit
            == toy_model.capabilities().outputs[name].unit
        )
    assert capabilities.length_unit == "angstrom" and capabilities.dtype == "float64"
    # frames need neighbours up to R_out + T(β) + Δ_Rc
    assert capabilities.interaction_range == pytest.approx(5.0 + 0.27846454 / 10 + 0.5)
    assert symmetrize(toy_model).capabilities().interaction_range == float("inf")
    cutoffs = sorted(options.cutoff for options in model.requested_neighbor_lists())
    assert cutoffs == pytest.approx([4.0, 5.0 + 0.27846454 / 10 + 0.5])


def test_save_load_and_ase_calculator(toy_model, tmp_path):
    path = str(tmp_path / "ecse.pt")
    model = symmetrize(toy_model, preset="tight")
    model.save(path)
    loaded = load_atomistic_model(path)
    atoms = ethanol()
    direct = evaluate(model, atoms)
    assert evaluate(loaded, atoms)["energy"] == pytest.approx(
        direct["energy"], rel=1e-14
    )

    atoms.calc = MetatomicCalculator(path, check_consistency=True)
    assert atoms.get_potential_energy() == pytest.approx(direct["energy"], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), direct["forces"], atol=1e-10)
    rotation = random_rotations(1, seed=5)[0]
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.calc = MetatomicCalculator(path)
    assert rotated.get_potential_energy() == pytest.approx(direct["energy"], rel=1e-12)


def test_cli_end_to_end(toy_model, aux_model, tmp_path):
    raw = str(tmp_path / "raw.pt")
    aux = str(tmp_path / "aux.pt")
    output = str(tmp_path / "symmetrized.pt")
    toy_model.save(raw)
    aux_model.save(aux)
    arguments = [
        "ecse",
        raw,
        "-o",
        output,
        "--preset",
        "tight",
        "--mode",
        "per_atom",
        "--r-out",
        "4.5",
        "--aux",
        aux,
        "--inversion",
        "--extra-rotations",
        "1",
    ]
    assert main(arguments) == 0
    loaded = load_atomistic_model(output)
    co2 = ase.build.molecule("CO2")
    co2.calc = MetatomicCalculator(output)
    aux_energy = evaluate(aux_model, co2)["energy"]
    assert co2.get_potential_energy() == pytest.approx(aux_energy, rel=1e-12)
    errors = covariance_errors(loaded, ethanol(), random_rotations(3))
    assert max(errors.values()) < 1e-12

    assert main(["ecse", raw, "-o", output, "--fallback", "aux"]) == 1
    assert main(["ecse", raw, "-o", output, "--fallback", "adaptive"]) == 0

    assert main(["ecse", raw, "-o", output, "--frame-types", "6", "8"]) == 0
    heavy_frames = _num_frames(load_atomistic_model(output))
    assert 0 < heavy_frames < _num_frames(symmetrize(toy_model))

    # a smaller β than the tight preset's keeps more frames (smoother R_in)
    assert main(["ecse", raw, "-o", output, "--preset", "tight", "--beta", "5"]) == 0
    tight_frames = _num_frames(symmetrize(toy_model, preset="tight"))
    assert _num_frames(load_atomistic_model(output)) > tight_frames


def _num_frames(model) -> float:
    frames = "mtt::aux::ecse_num_frames"
    return evaluate(model, ethanol(), (frames,))[frames][0]


def test_wrapper_around_a_plain_module_is_scriptable(toy_model):
    """The form the PET architecture uses: ECSEModel(module, hypers_dict)."""
    module = toy_model.module
    hypers = {"enable": True, "mode": "global", "r_out": 4.5, "fallback": "adaptive"}
    wrapper = ECSEModel(module, hypers)
    scripted = torch.jit.script(wrapper)
    system = systems_to_torch(ethanol(), dtype=torch.float64)
    system = get_system_with_neighbor_lists(system, wrapper.requested_neighbor_lists())
    outputs = {"energy": ModelOutput(sample_kind="atom")}
    eager = wrapper([system], outputs, None)["energy"].block()
    script = scripted([system], outputs, None)["energy"].block()
    assert script.samples == eager.samples
    assert torch.allclose(script.values, eager.values, rtol=1e-13)
    total = wrapper([system], {"energy": ModelOutput()}, None)["energy"].block()
    assert torch.allclose(total.values.sum(), eager.values.sum(), rtol=1e-13)


def test_selected_atoms_and_per_atom_outputs(toy_model):
    atoms = ethanol()
    selected = Labels(["system", "atom"], torch.tensor([[0, 1], [0, 4], [0, 7]]))
    for mode in ["global", "per_atom"]:
        model = symmetrize(toy_model, mode=mode, preset="tight")
        system = systems_to_torch(atoms, dtype=torch.float64)
        system = get_system_with_neighbor_lists(
            system, model.requested_neighbor_lists()
        )
        per_atom = {"energy": ModelOutput(sample_kind="atom")}
        full = model(
            [system],
            ModelEvaluationOptions(length_unit="angstrom", outputs=per_atom),
            check_consistency=True,
        )["energy"].block()
        subset = model(
            [system],
            ModelEvaluationOptions(
                length_unit="angstrom", outputs=per_atom, selected_atoms=selected
            ),
            check_consistency=True,
        )["energy"].block()
        assert subset.samples.values.tolist() == [[0, 1], [0, 4], [0, 7]]
        if mode == "per_atom":
            assert torch.allclose(subset.values, full.values[[1, 4, 7]], rtol=1e-13)


def test_pet_module_inside_the_wrapper_is_scriptable(pet_model):
    wrapper = ECSEModel(pet_model.module, {"r_out": 4.5}, preset="tight")
    torch.jit.script(wrapper)


def test_symmetrized_pet_saves_and_runs_in_ase(pet_model, tmp_path):
    path = str(tmp_path / "pet-ecse.pt")
    model = symmetrize(pet_model, mode="per_atom", preset="tight")
    model.save(path)
    atoms = ethanol()
    atoms.calc = MetatomicCalculator(path, check_consistency=True)
    direct = evaluate(model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(direct["energy"], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), direct["forces"], atol=1e-10)


def test_bad_parameters_raise_clear_errors(toy_model, aux_model):
    with pytest.raises(ValueError, match="unknown ECSE parameter 'beta_typo'"):
        symmetrize(toy_model, beta_typo=3.0)
    with pytest.raises(ValueError, match="'mode' must be one of"):
        symmetrize(toy_model, mode="sideways")
    with pytest.raises(ValueError, match="'r_out' must be > 0"):
        symmetrize(toy_model, r_out=-1.0)
    with pytest.raises(ValueError, match="pass aux_model="):
        symmetrize(toy_model, fallback="aux")
    with pytest.raises(ValueError, match="set fallback='aux'"):
        symmetrize(toy_model, aux_model=aux_model, fallback="adaptive")
    with pytest.raises(ValueError, match="unknown ECSE preset"):
        symmetrize(toy_model, preset="medium")
    with pytest.raises(TypeError, match="AtomisticModel"):
        symmetrize(toy_model.module)


def test_training_through_ecse_double_backward():
    """A force loss can be differentiated with respect to the wrapped model's
    parameters (double backward through frames and weights)."""
    module = ToyModel(cutoff=4.0, invariant=False)
    wrapper = ECSEModel(module, {"mode": "per_atom"}, preset="tight")
    atoms = ethanol()
    positions = torch.tensor(atoms.positions, requires_grad=True)
    system = System(
        types=torch.tensor(atoms.numbers, dtype=torch.int32),
        positions=positions,
        cell=torch.zeros(3, 3, dtype=torch.float64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )
    system = get_system_with_neighbor_lists(system, wrapper.requested_neighbor_lists())
    energy = wrapper([system], {"energy": ModelOutput()}, None)["energy"].block().values
    (forces,) = torch.autograd.grad(-energy.sum(), positions, create_graph=True)
    loss = (forces**2).sum()
    parameters = [module.hidden.weight, module.hidden.bias, module.heads.weight]
    gradients = torch.autograd.grad(loss, parameters)
    assert all(torch.all(torch.isfinite(gradient)) for gradient in gradients)
    assert any(torch.any(gradient != 0.0) for gradient in gradients)


def test_an_ecse_model_is_not_wrapped_twice(toy_model):
    with pytest.raises(ValueError, match="already ECSE-symmetrized"):
        symmetrize(symmetrize(toy_model))


def test_outputs_are_written_atomically_and_never_over_the_input(
    toy_model, tmp_path, monkeypatch
):
    """`-o` equal to the input is refused; a write that fails half-way (a kill, a
    full disk) leaves the previous output intact and no temporary file."""
    from metatomic.torch import AtomisticModel

    raw = str(tmp_path / "raw.pt")
    toy_model.save(raw)
    before = (tmp_path / "raw.pt").read_bytes()
    assert main(["ecse", raw, "-o", raw]) == 1
    assert main(["average", raw, "-o", raw, "--order", "1"]) == 1
    assert (tmp_path / "raw.pt").read_bytes() == before

    output = tmp_path / "ecse.pt"
    assert main(["ecse", raw, "-o", str(output)]) == 0
    good = output.read_bytes()

    def interrupted(self, path, collect_extensions=None):
        with open(path, "wb") as file:
            file.write(good[: len(good) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(AtomisticModel, "save", interrupted)
    assert main(["ecse", raw, "-o", str(output)]) == 1
    assert output.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ecse.pt", "raw.pt"]
