"""Velocity-Verlet NVE runs with ASE and the measures of energy conservation used
by the engine tests."""

import numpy as np
from ase import units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet


def thermalize(atoms, temperature_K=300.0, seed=0):
    """Maxwell-Boltzmann velocities, without centre-of-mass motion."""
    thermalize_momenta(atoms, temperature_K, rng=np.random.default_rng(seed))
    Stationary(atoms)


def nve_total_energies(atoms, timestep_fs, n_steps):
    """Total energy (eV) before and after each of ``n_steps`` velocity-Verlet steps
    of ``atoms`` with its attached calculator and current momenta."""
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    energies = []
    # ASE also calls observers once before the first step
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()), interval=1)
    dynamics.run(n_steps)
    return np.array(energies)


def drift_per_atom_step(energies, n_atoms):
    """Slope of a least-squares line through the total energy, in eV/atom/step."""
    steps = np.arange(len(energies))
    return np.polyfit(steps, energies, 1)[0] / n_atoms


def energy_error_per_atom(energies, n_atoms):
    """Root mean square deviation of the total energy from its initial value, in
    eV/atom: fluctuations and drift together."""
    return np.sqrt(np.mean((energies - energies[0]) ** 2)) / n_atoms
