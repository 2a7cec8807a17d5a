"""Exported models through metatomic's C++ API, the path of LAMMPS'
``pair_style metatomic``.

``examples/cpp`` is built once per session against the CMake packages of the
installed wheels. The program computes the neighbour lists itself, in C++, and
its energy, forces and virial must equal the Python (ASE) results to 1e-8 in
float64.
"""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from metatomic_ase import MetatomicCalculator

from conftest import PRIMARY_FAMILY

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cpp"

TOLERANCE = 1e-8


def cmake_prefix_path():
    """CMake package folders of torch, metatensor, metatensor-torch and
    metatomic-torch, as shipped in their wheels."""
    import metatensor.torch.utils
    import metatensor.utils
    import metatomic.torch.utils
    import torch.utils

    return ";".join(
        [
            torch.utils.cmake_prefix_path,
            metatensor.utils.cmake_prefix_path,
            metatensor.torch.utils.cmake_prefix_path,
            metatomic.torch.utils.cmake_prefix_path,
        ]
    )


def run_checked(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} failed with code {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result.stdout


@pytest.fixture(scope="session")
def evaluate_program(tmp_path_factory):
    """Path of the built ``metatomic-evaluate``; built once per test session."""
    cmake = shutil.which("cmake")
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cmake is None or compiler is None:
        pytest.skip("the C++ loading test needs cmake and a C++ compiler")

    build = tmp_path_factory.mktemp("metatomic-evaluate-build")
    run_checked(
        [
            cmake,
            "-S",
            EXAMPLE,
            "-B",
            build,
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_PREFIX_PATH={cmake_prefix_path()}",
        ]
    )
    run_checked([cmake, "--build", build, "--parallel", "2"])
    return build / "metatomic-evaluate"


def write_structure(atoms, path):
    """The plain-text structure format read by ``metatomic-evaluate``."""
    lines = [str(len(atoms))]
    lines.append(" ".join(f"{value!r}" for value in atoms.cell.array.ravel().tolist()))
    lines.append(" ".join(str(int(periodic)) for periodic in atoms.pbc))
    for number, position in zip(atoms.numbers.tolist(), atoms.positions.tolist()):
        lines.append(f"{number} {position[0]!r} {position[1]!r} {position[2]!r}")
    path.write_text("\n".join(lines) + "\n")


def parse_output(output, n_atoms):
    lines = output.splitlines()
    energy_line = next(i for i, line in enumerate(lines) if line.startswith("energy "))
    energy = float(lines[energy_line].split()[1])
    forces_start = lines.index("forces") + 1
    forces = np.loadtxt(lines[forces_start : forces_start + n_atoms], ndmin=2)
    virial_start = lines.index("virial") + 1
    virial = np.loadtxt(lines[virial_start : virial_start + 3])
    return energy, forces, virial


def evaluate_in_cpp(program, model_path, atoms, device, directory):
    structure = directory / "structure.txt"
    write_structure(atoms, structure)
    output = run_checked(
        [program, model_path, structure, "--device", device, "--check-consistency"],
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    return parse_output(output, len(atoms))


@pytest.mark.parametrize(
    "family, variant, system",
    [
        (PRIMARY_FAMILY, "raw", "ethanol"),
        (PRIMARY_FAMILY, "raw", "water"),
        (PRIMARY_FAMILY, "ecse", "ethanol"),
        (PRIMARY_FAMILY, "layerwise", "water"),
        ("metatrain_pet", "raw", "ethanol"),
    ],
    ids=lambda value: str(value),
)
def test_cpp_matches_python(
    request, tmp_path, evaluate_program, exported_model, device, family, variant, system
):
    model_path = exported_model(family, variant)
    atoms = request.getfixturevalue(system)

    energy, forces, virial = evaluate_in_cpp(
        evaluate_program, model_path, atoms, device, tmp_path
    )

    atoms.calc = MetatomicCalculator(str(model_path), device=device)
    assert energy == pytest.approx(atoms.get_potential_energy(), abs=TOLERANCE)
    np.testing.assert_allclose(forces, atoms.get_forces(), rtol=0, atol=TOLERANCE)
    if atoms.pbc.all():
        # ASE symmetrizes the stress; compare the symmetric part of the virial
        stress_virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
        np.testing.assert_allclose(
            0.5 * (virial + virial.T), stress_virial, rtol=0, atol=TOLERANCE
        )
    if variant in ("ecse", "layerwise"):
        # an exactly rotation-invariant energy has a symmetric virial
        np.testing.assert_allclose(virial, virial.T, rtol=0, atol=TOLERANCE)
