"""How fast a PET can fit the forces of one structure: plain Adam on the force
loss alone, the relative force RMSE printed every 20 steps. A diagnostic for
datasets where training leaves the forces at the data's spread (water64): it
separates "the model cannot resolve the geometry fast enough" from the protocol
(batching, loss weights, scaling).

    python benchmarks/force_fit.py tests/data/water64_2.xyz --steps 200 \\
        --model '{"radial_basis": 0}'
"""

import argparse
import json
import sys
from pathlib import Path

import ase.io
import torch
from metatomic.torch import ModelOutput, systems_to_torch
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pet_helpers import energy_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("structure")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--model", default="{}", help="JSON model overrides")
    args = parser.parse_args()
    torch.set_num_threads(1)

    atoms = ase.io.read(args.structure, 0)
    reference = torch.tensor(atoms.get_forces())
    spread = reference.pow(2).mean().sqrt()
    torch.manual_seed(0)
    hypers = dict(
        d_pet=32, d_feedforward=64, d_readout=32, num_heads=4, num_attention_layers=1
    )
    hypers.update(json.loads(args.model))
    model = energy_model(sorted(set(atoms.numbers)), **hypers).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    for step in range(args.steps):
        system = systems_to_torch(
            atoms, dtype=torch.float64, positions_requires_grad=True
        )
        system = get_system_with_neighbor_lists(
            system, model.requested_neighbor_lists()
        )
        outputs = {"energy": ModelOutput(sample_kind="system")}
        energy = model([system], outputs)["energy"].block().values.sum()
        (gradient,) = torch.autograd.grad(energy, system.positions, create_graph=True)
        loss = (-gradient - reference).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == args.steps - 1:
            relative = loss.item() ** 0.5 / spread.item()
            print(f"force_fit/step {step}: relative force RMSE {relative:.3f}")


if __name__ == "__main__":
    main()
