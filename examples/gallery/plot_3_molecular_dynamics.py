"""
Molecular dynamics with and without ECSE
========================================

A raw PET is not rotationally invariant, so its forces carry a net torque that
makes an isolated molecule spin up; ECSE makes the energy exactly invariant, and
with it the angular momentum a conserved quantity. This example runs the same
NVE trajectory of an ethanol molecule in ASE with the raw model and with its ECSE
wrapper, and plots the total energy and the angular momentum against time. The
same models then run in i-PI; ``metatrain-pet plot conservation md.log -o e.png``
draws such energy curves from ASE or i-PI logs.

An untrained PET keeps the run short; ``docs/engines/ase.md`` has the drift of
trained models over nanoseconds.
"""

# %%
# A tiny untrained PET, exported, and its ECSE wrapper.

import os
import tempfile
import time
from pathlib import Path

import ase.io
import matplotlib.pyplot as plt
import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import (
    MaxwellBoltzmannDistribution,
    Stationary,
    ZeroRotation,
)
from ase.md.verlet import VelocityVerlet
from ipi.scripting import InteractiveSimulation, forcefield_xml, simulation_xml
from metatomic_ase import MetatomicCalculator

from metatrain_pet.ecse import symmetrize
from metatrain_pet.pet.untrained import untrained_energy_model

torch.manual_seed(0)
raw = untrained_energy_model(
    dtype=torch.float64, d_pet=8, d_readout=8, d_feedforward=16, num_heads=1,
    num_attention_layers=1, num_gnn_layers=1, cutoff=4.0,
).export()  # fmt: skip
models = {"raw": raw, "ecse": symmetrize(raw)}

folder = Path.cwd().resolve()  # the repository, from wherever the example runs
while not (folder / "tests" / "data").is_dir():
    folder = folder.parent
start = ase.io.read(folder / "tests" / "data" / "ethanol_40.xyz", index=0)

# %%
# 400 steps of 0.5 fs from the same velocities (300 K, no net momentum and no
# angular momentum), recording the total energy and the angular momentum about
# the centre of mass at full precision.


def run(model, steps=400):
    atoms = start.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    Stationary(atoms)
    ZeroRotation(atoms)
    atoms.calc = MetatomicCalculator(model)
    dynamics = VelocityVerlet(atoms, timestep=0.5 * units.fs)
    energy, spin = [], []

    def record():
        energy.append(atoms.get_total_energy())
        arm = atoms.positions - atoms.get_center_of_mass()
        spin.append(np.linalg.norm(np.cross(arm, atoms.get_momenta()).sum(axis=0)))

    dynamics.attach(record, interval=1)
    begin = time.perf_counter()
    dynamics.run(steps)
    print(f"{1000 * (time.perf_counter() - begin) / steps:.1f} ms per step")
    return 1000 * (np.array(energy) - energy[0]), np.array(spin)


results = {name: run(model) for name, model in models.items()}
for name, (energy, spin) in results.items():
    print(f"{name}: largest energy deviation {np.abs(energy).max():.3f} meV, "
          f"final |L| {spin[-1]:.2e} (amu Å² / ASE time)")  # fmt: skip

# %%
# Over this short run both models keep the total energy within a fraction of a
# meV (Velocity Verlet's fluctuations of order dt²). The difference is in the
# angular momentum: a rotationally invariant energy exerts no net torque, so L
# stays at zero with ECSE, while the raw model's forces spin the molecule up, the
# effect of Fig. 1 of Langer, Pozdnyakov and Ceriotti (2024).

figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
for name, (energy, spin) in results.items():
    time_ps = 0.5e-3 * np.arange(len(energy))
    left.plot(time_ps, energy, label=name)
    right.plot(time_ps, spin, label=name)
left.set_xlabel("time (ps)")
left.set_ylabel("total energy - initial (meV)")
right.set_xlabel("time (ps)")
right.set_ylabel("|angular momentum|")
right.legend()
figure.tight_layout()
plt.show()

# %%
# The same models in i-PI, through its in-process metatomic driver
# (``<ffdirect><pes>metatomic</pes>``, ``docs/engines/ipi.md``): 200 NVE steps of
# 0.5 fs at 300 K, the molecule in a 30 Å box (i-PI treats every cell as periodic;
# no image comes within the model's range). i-PI's conserved quantity is its total
# energy.

work = Path(tempfile.mkdtemp(prefix="pet-ipi-"))
boxed = start.copy()
boxed.cell = np.eye(3) * 30.0
boxed.pbc = True
boxed.center()
ase.io.write(work / "template.xyz", boxed)
motion = """<motion mode='dynamics'><dynamics mode='nve'>
  <timestep units='femtosecond'> 0.5 </timestep></dynamics></motion>"""
conserved = {}
for name, model in models.items():
    model.save(str(work / f"{name}.pt"))
    forcefield = forcefield_xml(
        name, mode="direct", pes="metatomic",
        parameters={"template": str(work / "template.xyz"),
                    "model": str(work / f"{name}.pt")},
    )  # fmt: skip
    xml = simulation_xml(boxed, forcefield, motion, temperature=300)
    here = os.getcwd()
    os.chdir(work)  # i-PI writes its output and RESTART files in the current folder
    try:
        simulation = InteractiveSimulation(xml)
        values = []
        for _ in range(200):
            simulation.run(1, write_outputs=False)
            values.append(simulation.properties("conserved"))
    finally:
        os.chdir(here)
    conserved[name] = 1000 * (np.array(values) - values[0]) / len(boxed)
    print(
        f"i-PI {name}: largest deviation {np.abs(conserved[name]).max():.4f} meV/atom"
    )

figure, axis = plt.subplots(figsize=(6, 3.5))
for name, values in conserved.items():
    axis.plot(0.5e-3 * np.arange(1, len(values) + 1), values, label=f"i-PI, {name}")
axis.set_xlabel("time (ps)")
axis.set_ylabel("conserved energy - initial (meV/atom)")
axis.legend()
figure.tight_layout()
plt.show()
