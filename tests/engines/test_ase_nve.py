"""NVE molecular dynamics of exported models through ``metatomic_ase``.

Velocity Verlet conserves a shadow Hamiltonian, so with forces that are the exact
gradient of a smooth energy the total energy fluctuates with an amplitude
proportional to dt^2 and shows no systematic drift. The tests check both, for a
molecule and a periodic liquid, for the raw and the ECSE-wrapped model.

The ECSE-wrapped *untrained* model has a much larger energy error than the raw
one at the same time step (x100-1000, see docs/engines/ase.md): an untrained model
is far from rotation invariant, so the frame weights' gradients multiply large
differences between frames. The tests therefore check what ECSE must guarantee
for any model, exact forces and a smooth energy, through the dt^2 scaling.
"""

import numpy as np
import pytest
from metatomic_ase import MetatomicCalculator
from nve_helpers import (
    drift_per_atom_step,
    energy_error_per_atom,
    nve_total_energies,
    thermalize,
)

from conftest import PRIMARY_FAMILY

# Total energy of the tiny untrained model at 300 K, dt = 0.5 fs, measured on both
# systems: |drift| ~ 1e-7 eV/atom/step, RMS error ~ 1e-5 eV/atom. The bounds leave
# a factor ~10 of margin and still catch forces that are not -dE/dx (a 1% force
# error gives a drift of ~1e-5 eV/atom/step).
MAX_DRIFT = 2e-6
MAX_ERROR = 1e-4


def run_nve(atoms, model_path, device, timestep_fs, n_steps):
    atoms.calc = MetatomicCalculator(str(model_path), device=device)
    thermalize(atoms)
    return nve_total_energies(atoms, timestep_fs, n_steps)


@pytest.mark.parametrize(
    "system, n_steps", [("ethanol", 20), ("water", 8)], ids=["ethanol", "water"]
)
def test_raw_model_conserves_energy(request, exported_model, device, system, n_steps):
    atoms = request.getfixturevalue(system)
    energies = run_nve(
        atoms, exported_model(PRIMARY_FAMILY, "raw"), device, 0.5, n_steps
    )

    assert np.all(np.isfinite(energies))
    assert abs(drift_per_atom_step(energies, len(atoms))) < MAX_DRIFT
    assert energy_error_per_atom(energies, len(atoms)) < MAX_ERROR


@pytest.mark.parametrize("variant, n_steps", [("raw", 24), ("ecse", 10)])
def test_energy_error_scales_as_timestep_squared(
    exported_model, ethanol, variant, n_steps
):
    """Halving dt over the same simulated time divides the energy error by ~4.
    Forces that were not the gradient of the energy, or an energy with kinks (e.g.
    from ECSE frames switching on and off), would leave an error that does not
    shrink as dt^2."""
    model = exported_model(PRIMARY_FAMILY, variant)
    coarse = run_nve(ethanol.copy(), model, "cpu", 0.5, n_steps)
    fine = run_nve(ethanol.copy(), model, "cpu", 0.25, 2 * n_steps)

    ratio = energy_error_per_atom(coarse, len(ethanol)) / energy_error_per_atom(
        fine, len(ethanol)
    )
    assert 3.0 < ratio < 5.5


def test_float32_model_runs(exported_model, device, ethanol):
    """A float32 export agrees with the float64 one and runs MD."""
    float64 = MetatomicCalculator(
        str(exported_model(PRIMARY_FAMILY, "raw", "float64")), device=device
    )
    float32_path = exported_model(PRIMARY_FAMILY, "raw", "float32")
    float32 = MetatomicCalculator(str(float32_path), device=device)
    assert float32.get_potential_energy(ethanol) == pytest.approx(
        float64.get_potential_energy(ethanol), rel=1e-5, abs=1e-5
    )

    energies = run_nve(ethanol, float32_path, device, 0.5, 10)

    assert np.all(np.isfinite(energies))
    assert energy_error_per_atom(energies, len(ethanol)) < MAX_ERROR
