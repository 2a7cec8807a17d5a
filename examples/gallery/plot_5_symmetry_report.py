"""
The symmetry report of a model
==============================

``metatrain-pet symmetry-report`` measures how far a model is from rotational
invariance on a dataset: the energy and force differences between the model and
its average over a fine grid of rotations, the net torque on isolated molecules,
and, with ``--plot``, how fast coarser grids converge to the fine one. This example
runs it on an untrained PET and three ethanol frames, with ECSE for comparison.
"""

# %%
# The command line equivalent is
# ``metatrain-pet symmetry-report model.pt tests/data/ethanol_40.xyz --index 0:3
# --order 5 --ecse --plot convergence.png``.

import tempfile
from pathlib import Path

import ase.io
import matplotlib.pyplot as plt
import torch

from metatrain_pet.ecse import symmetrize
from metatrain_pet.pet.untrained import untrained_energy_model
from metatrain_pet.symmetry.plot import plot_convergence
from metatrain_pet.symmetry.report import build_report, format_summary

torch.manual_seed(0)
raw = untrained_energy_model(
    dtype=torch.float64, d_pet=16, d_readout=16, d_feedforward=32, num_heads=2,
    num_attention_layers=1, num_gnn_layers=2, cutoff=4.0,
).export()  # fmt: skip

folder = Path.cwd().resolve()  # the repository, from wherever the example runs
while not (folder / "tests" / "data").is_dir():
    folder = folder.parent
frames = ase.io.read(folder / "tests" / "data" / "ethanol_40.xyz", ":3")

report = build_report(raw, frames, 5, symmetrize(raw), convergence_orders=[1, 2, 3, 4])
print(format_summary(report))

# %%
# The convergence plot: the deviation of each coarse grid from the order-5 one,
# with the raw model's as a dashed line.

png = Path(tempfile.mkdtemp(prefix="pet-report-")) / "convergence.png"
plot_convergence(report, png)
figure, axis = plt.subplots(figsize=(10, 3.2))
axis.imshow(plt.imread(png))
axis.axis("off")
figure.tight_layout()
plt.show()
