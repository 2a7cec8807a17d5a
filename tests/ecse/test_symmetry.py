"""Exact invariance of energies and covariance of forces, vectors and rank-2 tensors
of ECSE-symmetrized models, while the wrapped model itself is not equivariant."""

import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ecse_helpers import covariance_errors, evaluate, random_rotations
from ecse_toy_model import export_toy_model

from metatrain_pet.ecse import symmetrize

DATA = __file__.rsplit("/", 3)[0] + "/tests/data"
ALL_OUTPUTS = ("energy", "mtt::dipole", "mtt::polarizability")


def ethanol():
    return ase.io.read(f"{DATA}/ethanol_40.xyz", 0)


def carbon_chain():
    return Atoms("C5", positions=[[1.28 * i, 0.0, 0.0] for i in range(5)])


COLLINEAR = {
    "H2": lambda: ase.build.molecule("H2"),
    "CO2": lambda: ase.build.molecule("CO2"),
    "HCN": lambda: ase.build.molecule("HCN"),
    "C5": carbon_chain,
}


def check_exact(model, raw_model, atoms, n_rotations, tolerance, **kwargs):
    rotations = random_rotations(n_rotations, seed=len(atoms))
    errors = covariance_errors(model, atoms, rotations, **kwargs)
    assert max(errors.values()) <= tolerance, errors
    raw_errors = covariance_errors(raw_model, atoms, rotations, **kwargs)
    assert raw_errors["energy"] > 1e-3, raw_errors
    return errors


@pytest.mark.parametrize("mode", ["global", "per_atom"])
def test_ethanol_is_exactly_equivariant(toy_model, mode):
    model = symmetrize(toy_model, mode=mode)
    check_exact(model, toy_model, ethanol(), 20, 1e-12, outputs=ALL_OUTPUTS)


def test_planar_molecule_is_exactly_equivariant(toy_model):
    model = symmetrize(toy_model, preset="tight")
    benzene = ase.build.molecule("C6H6")
    check_exact(model, toy_model, benzene, 20, 1e-12, outputs=ALL_OUTPUTS)


def test_float32_model_is_equivariant_to_single_precision():
    raw = export_toy_model(dtype=torch.float32)
    model = symmetrize(raw)
    check_exact(
        model, raw, ethanol(), 20, 1e-5, outputs=ALL_OUTPUTS, dtype=torch.float32
    )


@pytest.mark.parametrize("name", sorted(COLLINEAR))
def test_collinear_molecules_with_aux_fallback(toy_model, aux_model, name):
    model = symmetrize(toy_model, aux_model=aux_model)
    atoms = COLLINEAR[name]()
    check_exact(model, toy_model, atoms, 20, 1e-12, outputs=ALL_OUTPUTS)
    # fully collinear: Eq. 19 falls back to the auxiliary model alone
    assert evaluate(model, atoms)["energy"] == pytest.approx(
        evaluate(aux_model, atoms)["energy"], rel=1e-14
    )


@pytest.mark.parametrize("name", sorted(COLLINEAR))
def test_collinear_molecules_with_adaptive_fallback(toy_model, name):
    model = symmetrize(toy_model, fallback="adaptive")
    check_exact(model, toy_model, COLLINEAR[name](), 20, 1e-12, outputs=ALL_OUTPUTS)


@pytest.mark.parametrize("name", sorted(COLLINEAR))
def test_collinear_molecules_without_fallback_raise(toy_model, name):
    model = symmetrize(toy_model)
    with pytest.raises(Exception, match="fallback='adaptive'"):
        evaluate(model, COLLINEAR[name]())


def test_isolated_atom_is_finite_and_invariant(toy_model):
    model = symmetrize(toy_model)
    atoms = Atoms("O", positions=[[0.3, 0.2, 0.1]])
    values = evaluate(
        model, atoms, ("energy", "mtt::dipole", "mtt::aux::ecse_num_frames")
    )
    assert np.isfinite(values["energy"])
    assert values["mtt::aux::ecse_num_frames"][0] == 24
    np.testing.assert_allclose(values["mtt::dipole"], 0.0, atol=1e-14)


def test_inversion_gives_o3_symmetry(toy_model):
    atoms = ethanol()
    inverted = atoms.copy()
    inverted.positions = -atoms.positions
    so3 = symmetrize(toy_model)
    o3 = symmetrize(toy_model, inversion=True)
    energies = [evaluate(m, a)["energy"] for m in (so3, o3) for a in (atoms, inverted)]
    assert abs(energies[0] - energies[1]) > 1e-3 * abs(energies[0])
    assert energies[2] == pytest.approx(energies[3], rel=1e-12)
    check_exact(o3, toy_model, atoms, 5, 1e-12)


@pytest.mark.parametrize("wrapped", ["toy_model", "pet_model"])
def test_inversion_gives_exact_improper_covariance(request, wrapped):
    """With ``inversion=True``, every output is exactly covariant under improper
    rotations (a rotation times the inversion), for the toy model's vector and
    rank-2 outputs as for metatrain's PET."""
    model = request.getfixturevalue(wrapped)
    outputs = ALL_OUTPUTS if wrapped == "toy_model" else ("energy",)
    improper = -random_rotations(4, seed=3)
    errors = covariance_errors(
        symmetrize(model, inversion=True), ethanol(), improper, outputs=outputs
    )
    assert max(errors.values()) <= 1e-12, errors
    so3_errors = covariance_errors(symmetrize(model), ethanol(), improper)
    assert so3_errors["energy"] > 1e-6, so3_errors


def test_extra_rotations_keep_exactness(toy_model):
    model = symmetrize(toy_model, preset="tight", num_extra_rotations=3)
    errors = check_exact(model, toy_model, ethanol(), 5, 1e-12, outputs=ALL_OUTPUTS)
    assert errors
    frames = evaluate(model, ethanol(), ("mtt::aux::ecse_num_frames",))
    plain = evaluate(
        symmetrize(toy_model, preset="tight"), ethanol(), ("mtt::aux::ecse_num_frames",)
    )
    assert (
        frames["mtt::aux::ecse_num_frames"][0]
        == 4 * plain["mtt::aux::ecse_num_frames"][0]
    )


def test_periodic_water_box(toy_model):
    """192-atom periodic water, per_atom mode, tight preset and R_out = 3.5 Å to keep
    the test cheap (a few seconds per evaluation); energy, forces and stress, over 3
    random rotations of positions and cell."""
    atoms = ase.io.read(f"{DATA}/water64_2.xyz", 0)
    model = symmetrize(toy_model, mode="per_atom", preset="tight", r_out=3.5)
    check_exact(model, toy_model, atoms, 3, 1e-12, stress=True)


@pytest.mark.parametrize("mode", ["global", "per_atom"])
def test_frames_from_chosen_types_only(toy_model, mode):
    """App. F.5: frames from the C and O neighbours of ethanol alone. Still exact,
    with fewer frames; with a type ethanol lacks (N), no frame: the clear error."""
    model = symmetrize(toy_model, mode=mode, frame_types=[6, 8])
    check_exact(model, toy_model, ethanol(), 3, 1e-12, outputs=ALL_OUTPUTS)
    name = "mtt::aux::ecse_num_frames"
    heavy = evaluate(model, ethanol(), (name,))[name][0]
    every = evaluate(symmetrize(toy_model, mode=mode), ethanol(), (name,))[name][0]
    assert 0 < heavy < every

    nitrogen = symmetrize(toy_model, mode=mode, frame_types=[7])
    with pytest.raises(ValueError, match="non-collinear neighbours"):
        evaluate(nitrogen, ethanol(), ("energy",))


def test_frame_types_must_be_atomic_numbers(toy_model):
    with pytest.raises(ValueError, match="frame_types"):
        symmetrize(toy_model, frame_types="O")


def test_metatrain_pet_is_exactly_equivariant(pet_model):
    model = symmetrize(pet_model)
    check_exact(model, pet_model, ethanol(), 10, 1e-12)


def test_global_mode_stops_before_running_out_of_memory(toy_model):
    """The 192-atom water box in global mode would need thousands of evaluations
    of the whole box: a clear error names the modes that fit, before any of them
    is made; a small molecule is unaffected, and the limit can be raised."""
    water = ase.io.read(f"{DATA}/water64_2.xyz", 0)
    with pytest.raises(ValueError, match="mode='per_atom'.*mode='layerwise'"):
        evaluate(symmetrize(toy_model, preset="tight"), water)
    evaluate(symmetrize(toy_model, preset="tight"), ethanol())
    with pytest.raises(ValueError, match="max_evaluated_pairs"):
        symmetrize(toy_model, max_evaluated_pairs=-1)


def test_float32_averages_differences_not_totals():
    """With a composition-like offset (-470 eV per atom, -4230 eV for ethanol), the
    single-precision average must not round the totals: the ECSE forces stay
    within 2e-4 (relative) of float64 (they were 3.5e-4 when totals were
    averaged; the raw model's are 2e-7, the per-frame totals' own rounding is
    what remains)."""
    atoms = ethanol()
    forces = {}
    for dtype in (torch.float32, torch.float64):
        raw = export_toy_model(dtype=dtype, energy_offset=-470.0)
        model = symmetrize(raw, preset="tight")
        forces[dtype] = evaluate(model, atoms, dtype=dtype)["forces"]
    error = np.abs(forces[torch.float32] - forces[torch.float64]).max()
    assert error < 2e-4 * np.abs(forces[torch.float64]).max(), error
