"""Exported models in TorchSim through ``metatomic_torchsim.MetatomicModel``.

Optional: runs only where ``torch_sim`` and ``metatomic_torchsim`` import (see
docs/engines/torchsim.md for the versions that work with Python 3.11).
"""

import numpy as np
import pytest
import torch
from metatomic_ase import MetatomicCalculator

from conftest import PRIMARY_FAMILY

pytestmark = pytest.mark.torchsim

torch_sim = pytest.importorskip("torch_sim")
metatomic_torchsim = pytest.importorskip("metatomic_torchsim")

FEMTOSECOND = 1e-3 * torch_sim.units.MetalUnits.time
KELVIN = torch_sim.units.MetalUnits.temperature


def total_energy(state):
    kinetic = torch_sim.quantities.calc_kinetic_energy(
        masses=state.masses, momenta=state.momenta
    )
    return (state.energy + kinetic).item()


def test_torchsim_nve_matches_ase(exported_model, device, water):
    model_path = exported_model(PRIMARY_FAMILY, "raw")
    model = metatomic_torchsim.MetatomicModel(str(model_path), device=device)
    state = torch_sim.io.atoms_to_state(
        [water], device=torch.device(device), dtype=torch.float64
    )

    initialize, step = torch_sim.integrators.nve(
        model,
        dt=torch.tensor(0.5 * FEMTOSECOND),
        kT=torch.tensor(300.0 * KELVIN),
        seed=0,
    )
    state = initialize(state)
    energies = [total_energy(state)]
    for _ in range(5):
        state = step(state)
        energies.append(total_energy(state))

    reference = water.copy()
    reference.positions = state.positions.detach().cpu().numpy()
    reference.calc = MetatomicCalculator(str(model_path), device=device)
    assert state.energy.item() == pytest.approx(
        reference.get_potential_energy(), abs=1e-8
    )
    np.testing.assert_allclose(
        state.forces.detach().cpu().numpy(), reference.get_forces(), rtol=0, atol=1e-8
    )

    energies = np.array(energies)
    assert np.all(np.abs(energies - energies[0]) / len(water) < 1e-4)
