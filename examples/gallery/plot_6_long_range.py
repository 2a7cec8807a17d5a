"""
Long-range electrostatics: a charged dimer pulled apart
=======================================================

A local model sees nothing beyond its cutoff: two ions 6 Å apart are, for a PET
with R_c = 4 Å, two isolated atoms, and its energy stays flat however far they
move. With ``long_range: {enable: true}`` PET predicts latent charges from its
tokens, and ``torch-pme`` sums their Coulomb interaction beyond the cutoff (App.
F.9); the energy then follows the 1/r of the reference. This example trains both
on Na⁺Cl⁻ dimers from 1.8 to 12 Å, with ``mtt train``, and plots their curves.
"""

# %%
# The dimers: Coulomb attraction -14.4 eV Å / r plus a short-range repulsion,
# each along a random direction.

import subprocess
import sys
import tempfile
from pathlib import Path

import ase
import ase.io
import matplotlib.pyplot as plt
import numpy as np
from metatomic_ase import MetatomicCalculator
from scipy.spatial.transform import Rotation

COULOMB = 14.3996  # eV Å


def dimer(distance: float) -> ase.Atoms:
    direction = Rotation.random(random_state=int(distance * 1000)).apply([1, 0, 0])
    atoms = ase.Atoms("NaCl", positions=[[0, 0, 0], distance * direction])
    atoms.info["energy"] = -COULOMB / distance + 20.0 * np.exp(-2.0 * distance)
    return atoms


work = Path(tempfile.mkdtemp(prefix="pet-long-range-"))
ase.io.write(work / "dimers.xyz", [dimer(r) for r in np.linspace(1.8, 12.0, 80)])

# %%
# The same small PET twice, without and with the long-range part (only
# ``long_range.enable`` differs).

OPTIONS = """
seed: 0
base_precision: 64
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.0
    d_pet: 16
    d_feedforward: 32
    d_readout: 16
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 1
    long_range:
      enable: {enable}
  training:
    num_epochs: 80
    batch_size: 16
    learning_rate: 3.0e-3
training_set: dimers.xyz
validation_set: 0.1
test_set: 0.0
"""

mtt = Path(sys.executable).parent / "mtt"
for enable in ("false", "true"):
    (work / f"{enable}.yaml").write_text(OPTIONS.format(enable=enable))
    subprocess.run(
        [str(mtt), "train", f"{enable}.yaml", "-o", f"long_range_{enable}.pt"],
        cwd=work,
        check=True,
        capture_output=True,
    )

# %%
# The energy curves in ASE, relative to their value at 12 Å.

distances = np.linspace(2.0, 12.0, 60)
figure, axis = plt.subplots(figsize=(6, 4))
reference = np.array([dimer(r).info["energy"] for r in distances])
axis.plot(distances, reference - reference[-1], "k-", label="reference")
for enable, label in (("false", "short range"), ("true", "long range")):
    calculator = MetatomicCalculator(str(work / f"long_range_{enable}.pt"))
    energies = []
    for distance in distances:
        atoms = dimer(distance)
        atoms.calc = calculator
        energies.append(atoms.get_potential_energy())
    energies = np.array(energies)
    axis.plot(distances, energies - energies[-1], "--", label=f"PET, {label}")
axis.axvline(4.0, color="grey", lw=0.8)
axis.set_xlabel("Na–Cl distance (Å); cutoff at 4 Å")
axis.set_ylabel("energy − energy at 12 Å (eV)")
axis.set_ylim(-8, 1)
axis.legend()
figure.tight_layout()
plt.show()
