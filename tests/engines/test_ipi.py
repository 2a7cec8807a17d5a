"""NVE runs of exported models inside i-PI, through its in-process ``metatomic``
PES (``<ffdirect><pes>metatomic</pes>``), checked against the ASE calculator.

i-PI treats every non-zero cell as periodic, so the gas-phase molecule is placed
in a 30 Angstrom box: no periodic image comes within the model's interaction
range, and the results must equal the isolated molecule's.
"""

import signal

import ase.io
import numpy as np
import pytest
from metatomic_ase import MetatomicCalculator
from nve_helpers import nve_total_energies

from conftest import PRIMARY_FAMILY

ipi_scripting = pytest.importorskip("ipi.scripting")
from ipi.utils.depend import dstrip  # noqa: E402
from ipi.utils.units import unit_to_user  # noqa: E402

GAS_PHASE_BOX = 30.0

NVE_MOTION = """
<motion mode='dynamics'>
  <dynamics mode='nve'>
    <timestep units='femtosecond'> 0.5 </timestep>
  </dynamics>
</motion>
"""


IPI_SEED = 12345
"""Seed of i-PI's random numbers (its default is the clock), so that every run
starts from the same velocities."""


def ipi_simulation(atoms, model_path, device):
    """An i-PI NVE simulation at 300 K driven by the model, in the current
    directory, with initial velocities drawn from :data:`IPI_SEED`."""
    ase.io.write("template.xyz", atoms)
    forcefield = ipi_scripting.forcefield_xml(
        "metatomic",
        mode="direct",
        pes="metatomic",
        parameters={
            "template": "template.xyz",
            "model": str(model_path),
            "device": device,
        },
    )
    xml = ipi_scripting.simulation_xml(atoms, forcefield, NVE_MOTION, temperature=300)
    seeded = f"<prng><seed> {IPI_SEED} </seed></prng>\n</simulation>"
    return ipi_scripting.InteractiveSimulation(xml.replace("</simulation>", seeded))


def ipi_state(simulation):
    """Cell and positions (Angstrom), potential energy (eV) and forces (eV/Angstrom)
    of the only bead, converted with the units the metatomic PES itself uses (they
    differ from i-PI's "ase" units in the 7th digit)."""
    system = simulation.syslist[0]
    cell = unit_to_user("length", "angstrom", dstrip(system.cell.h)).T
    positions = unit_to_user("length", "angstrom", dstrip(system.beads.q[0]))
    energy = unit_to_user("energy", "electronvolt", dstrip(system.forces.pots[0]))
    forces = unit_to_user("force", "ev/ang", dstrip(system.forces.f[0]))
    return cell, positions.reshape(-1, 3), float(energy), forces.reshape(-1, 3)


def ase_twin(simulation, atoms, model_path, device):
    """``atoms`` in i-PI's current state (positions, masses, velocities) with the
    ASE calculator of the same model."""
    system = simulation.syslist[0]
    twin = atoms.copy()
    masses = dstrip(system.beads.m)
    momenta = dstrip(system.beads.p[0]).reshape(-1, 3)
    velocities = unit_to_user("velocity", "ase", momenta / masses[:, None])
    twin.positions = ipi_state(simulation)[1]
    twin.set_masses(unit_to_user("mass", "ase", masses))
    twin.set_velocities(velocities)
    twin.calc = MetatomicCalculator(str(model_path), device=device)
    return twin


def in_gas_phase_box(atoms):
    boxed = atoms.copy()
    boxed.cell = np.eye(3) * GAS_PHASE_BOX
    boxed.pbc = True
    boxed.center()
    return boxed


@pytest.mark.parametrize(
    "family, variant, system, n_steps",
    [
        (PRIMARY_FAMILY, "raw", "ethanol", 10),
        (PRIMARY_FAMILY, "raw", "water", 3),
        (PRIMARY_FAMILY, "ecse", "ethanol", 3),
        ("metatrain_pet", "raw", "ethanol", 3),
    ],
    ids=lambda value: str(value),
)
def test_ipi_matches_ase(
    request,
    tmp_path,
    monkeypatch,
    exported_model,
    device,
    family,
    variant,
    system,
    n_steps,
):
    """A few NVE steps: the final energy and forces equal the ASE calculator's at
    the same positions, and the trajectory and conserved energy are those of
    ASE's velocity Verlet started from i-PI's initial state. (An absolute bound on
    the conserved energy would test the model rather than the engine: with the
    ECSE-wrapped untrained model its change over three steps ranged from 1e-7 to
    6e-4 eV/atom over i-PI seeds 0-27, forces exact, its surface rough.)"""
    model_path = exported_model(family, variant)
    atoms = request.getfixturevalue(system)
    if not atoms.pbc.any():
        atoms = in_gas_phase_box(atoms)
    monkeypatch.chdir(tmp_path)

    simulation = ipi_simulation(atoms, model_path, device)
    twin = ase_twin(simulation, atoms, model_path, device)
    conserved = []
    for _ in range(n_steps):
        simulation.run(1)
        conserved.append(simulation.properties("conserved"))
    cell, positions, energy, forces = ipi_state(simulation)

    reference = request.getfixturevalue(system)
    reference.positions = positions
    if reference.pbc.all():
        reference.cell = cell
    reference.calc = MetatomicCalculator(str(model_path), device=device)
    assert energy == pytest.approx(reference.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(forces, reference.get_forces(), rtol=0, atol=1e-8)

    totals = nve_total_energies(twin, 0.5, n_steps)
    np.testing.assert_allclose(twin.positions, positions, rtol=0, atol=1e-6)
    ipi_change = np.array(conserved) - conserved[0]
    ase_change = totals[1:] - totals[1]
    np.testing.assert_allclose(ipi_change, ase_change, rtol=0, atol=1e-6 * len(atoms))


def test_signals_are_given_back_after_the_simulations():
    """Runs after the simulations above (file order): i-PI's handlers of SIGINT
    and SIGTERM, which write RESTART files into the current folder, must not
    outlive a test (``_ipi_signal_handlers`` in tests/conftest.py)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        module = getattr(signal.getsignal(number), "__module__", None) or ""
        assert not module.startswith("ipi."), f"{number!r} still goes to {module}"
