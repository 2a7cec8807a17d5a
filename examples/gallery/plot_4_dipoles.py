"""
Dipoles: a Cartesian target, made exactly covariant by ECSE
===========================================================

PET predicts a molecule's dipole as the sum of atomic vectors. Trained with
rotational augmentation, it is only approximately covariant: rotating the molecule
does not quite rotate the prediction. ECSE predicts the vector in every local frame,
rotates it back and averages, which makes it covariant to rounding. This example
trains a small dipole model on 30 QM7-X molecules shipped with the repository,
exports it, wraps it with ECSE, and measures the norm of μ(R x) − R μ(x) over random
rotations R for both.
"""

# %%
# Training a dipole model (``options/dipoles.yaml`` is the full-size version):
# the target ``mtt::dipole`` is a per-structure Cartesian vector.

import subprocess
import sys
import tempfile
from pathlib import Path

import ase.io
import matplotlib.pyplot as plt
import numpy as np
from metatomic.torch import ModelOutput, load_atomistic_model
from metatomic_ase import MetatomicCalculator
from scipy.spatial.transform import Rotation

from metatrain_pet.ecse import symmetrize

folder = Path.cwd().resolve()  # the repository, from wherever the example runs
while not (folder / "tests" / "data").is_dir():
    folder = folder.parent
data = folder / "tests" / "data" / "qm7x_30_mu.xyz"

work = Path(tempfile.mkdtemp(prefix="pet-dipoles-"))
(work / "options.yaml").write_text(
    f"""
seed: 0
base_precision: 64
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.5
    d_pet: 16
    d_feedforward: 32
    d_readout: 16
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 2
  training:
    num_epochs: 20
    batch_size: 5
    learning_rate: 3.0e-3
    augmentation: structure
    per_atom_energy_loss: false
training_set:
  systems:
    read_from: {data}
    length_unit: angstrom
  targets:
    mtt::dipole:
      key: mu
      unit: ""
      type:
        cartesian:
          rank: 1
      sample_kind: system
      forces: false
      stress: false
      virial: false
validation_set: 0.2
test_set: 0.0
"""
)
mtt = Path(sys.executable).parent / "mtt"
subprocess.run(
    [str(mtt), "train", "options.yaml", "-o", "dipoles.pt"],
    cwd=work,
    check=True,
    capture_output=True,
)

# %%
# The exported model, and its ECSE wrapper (``metatrain-pet ecse dipoles.pt -o
# dipoles-ecse.pt`` on the command line).

raw = load_atomistic_model(str(work / "dipoles.pt"))
models = {"raw PET": raw, "ECSE": symmetrize(raw)}
OUTPUTS = {"mtt::dipole": ModelOutput(per_atom=False)}


def dipole(calculator, atoms):
    values = calculator.run_model(atoms, OUTPUTS)["mtt::dipole"].block().values
    return values.detach().numpy().reshape(3)


# %%
# Covariance error over 20 random rotations of 5 molecules.

molecules = ase.io.read(data, ":5")
rotations = Rotation.random(20, random_state=0).as_matrix()
errors = {}
for name, model in models.items():
    calculator = MetatomicCalculator(model)
    values = []
    for atoms in molecules:
        reference = dipole(calculator, atoms)
        for matrix in rotations:
            rotated = atoms.copy()
            rotated.positions = atoms.positions @ matrix.T
            values.append(
                np.linalg.norm(dipole(calculator, rotated) - matrix @ reference)
            )
    errors[name] = np.array(values)
    print(f"{name}: largest |mu(Rx) - R mu(x)| = {errors[name].max():.2e}")

# %%
# The raw model's error is of the size of what it has not learned about rotations;
# ECSE's is rounding (float64).

figure, axis = plt.subplots(figsize=(6, 3.5))
for name, values in errors.items():
    axis.semilogy(np.maximum(values, 1e-17), ".", label=name)
axis.set_xlabel("molecule × rotation")
axis.set_ylabel("|μ(R x) - R μ(x)|")
axis.legend()
figure.tight_layout()
plt.show()
