"""Whether ``torch.compile`` can speed up a force-training step of PET's
transformer on CPU: training differentiates the forces (``create_graph=True``)
and then the loss, a double backward. Prints the eager time of one step and the
compiled time, or why compiling failed.

    OMP_NUM_THREADS=1 python benchmarks/torch_compile.py

The batch is that of the ethanol training benchmark: 16 molecules, 144
environments of at most 11 neighbours, default widths.
"""

import time

import torch

from metatrain_pet.nn.transformer import Transformer, TransformerOptions


def train_step(model, tokens, weights):
    """Energy-like scalar, its gradient kept in the graph, and a loss on both."""
    inputs = tokens.clone().requires_grad_(True)
    energy = model(inputs, weights).square().sum()
    (gradient,) = torch.autograd.grad(energy, inputs, create_graph=True)
    (energy + gradient.square().sum()).backward()


def ms_per_step(model, tokens, weights, steps: int = 20) -> float:
    for _ in range(3):
        train_step(model, tokens, weights)
    start = time.process_time()
    for _ in range(steps):
        train_step(model, tokens, weights)
    return (time.process_time() - start) / steps * 1e3


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    options = TransformerOptions(
        pre_norm=True, normalization="LayerNorm", activation="SiLU", temperature=1.0
    )
    model = Transformer(128, 4, 512, 2, options)
    tokens = torch.randn(144, 12, 128)
    weights = torch.rand(144, 12)
    weights[:, 0] = 1.0
    print(f"eager: {ms_per_step(model, tokens, weights):.1f} ms per step")
    try:
        compiled = torch.compile(model, dynamic=False)
        print(f"compiled: {ms_per_step(compiled, tokens, weights):.1f} ms per step")
    except RuntimeError as error:
        print(f"compiled: fails ({str(error).splitlines()[0]})")


if __name__ == "__main__":
    main()
