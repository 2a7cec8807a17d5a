"""
Train, export and evaluate a PET
================================

The whole path of a user, on the 40 ethanol frames shipped with the repository:
``mtt train`` with an options file, the exported ``model.pt``, the learning curve
from metatrain's training log and a parity plot of the exported model, both drawn
by ``metatrain-pet plot`` (here through the Python functions behind it).

The model and the budget are tiny so that this page builds in a minute on two CPU
cores: neither energies nor forces are learned in 30 epochs of 26 structures (PET
needs minutes of CPU before its force error leaves the data's spread, see the
learning curves of ``docs/training.md``). ``options/quickstart.yaml`` is the same run
with a larger model; ``docs/training.md`` has what real budgets reach.
"""

# %%
# The options: our architecture (``experimental.pet_ecse``) with a small model,
# energies and forces of the shipped frames, 20 % of them for validation.

import subprocess
import sys
import tempfile
from pathlib import Path

import ase.io
import matplotlib.pyplot as plt

from metatrain_pet.plots import learning_curve, parity

folder = Path.cwd().resolve()  # the repository, from wherever the example runs
while not (folder / "tests" / "data").is_dir():
    folder = folder.parent
frames = ase.io.read(folder / "tests" / "data" / "ethanol_40.xyz", ":")

work = Path(tempfile.mkdtemp(prefix="pet-tutorial-"))
ase.io.write(work / "train.xyz", frames[:32])
ase.io.write(work / "test.xyz", frames[32:])
(work / "options.yaml").write_text(
    """
seed: 0
architecture:
  name: experimental.pet_ecse
  model:
    cutoff: 4.0
    d_pet: 16
    d_feedforward: 32
    d_readout: 16
    num_heads: 2
    num_attention_layers: 1
    num_gnn_layers: 2
  training:
    num_epochs: 30
    batch_size: 8
    learning_rate: 3.0e-3
training_set:
  systems:
    read_from: train.xyz
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
      forces:
        key: forces
validation_set: 0.2
test_set: 0.0
"""
)

# %%
# Training and export, as on the command line (``mtt train options.yaml -o
# model.pt`` also writes ``model.ckpt``; ``mtt export model.ckpt`` would give the
# same ``model.pt``).

mtt = Path(sys.executable).parent / "mtt"
subprocess.run(
    [str(mtt), "train", "options.yaml", "-o", "model.pt"],
    cwd=work,
    check=True,
    capture_output=True,
)
(train_csv,) = work.glob("outputs/*/*/train.csv")
print("trained:", sorted(p.name for p in work.iterdir()))

# %%
# The learning curve: training and validation errors of the energy and the forces
# against the epoch (``metatrain-pet plot learning-curve
# outputs/<date>/<time>/train.csv -o curve.png``).

learning_curve(train_csv, work / "curve.png")
plt.show()

# %%
# The parity plot of the exported model on the 8 frames it never saw
# (``metatrain-pet plot parity model.pt test.xyz -o parity.png``).

parity(work / "model.pt", work / "test.xyz", work / "parity.png")
plt.show()
