"""On-the-fly random rotations: a fresh random orientation at every evaluation.

Implements the "on-the-fly random augmentation" of Langer, Pozdnyakov and Ceriotti,
"Probing the effects of broken symmetries in machine learning" (2024), Supp. Sec. V:
each call of the model rotates every structure by an independent, uniformly
distributed rotation (composed with the inversion half of the time), evaluates the
wrapped model and rotates the outputs back. The average over many calls is the exact
O(3) average, at the cost of one evaluation per call.

Forces and stresses obtained through autograd are the exact derivatives of the energy
returned by the same call, but the rotation changes between calls: the sequence of
forces is not the gradient of a single potential, so molecular dynamics does not
conserve the total energy exactly and needs a (gentle, global) thermostat.
"""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelOutput,
    System,
    register_autograd_neighbors,
)

from ..geometry.rotations import quaternions_to_matrices
from .capabilities import declared_capabilities


def rotate_system(system: System, rotation: torch.Tensor) -> System:
    """Copy of ``system`` with positions, cell and neighbor vectors rotated.

    The neighbor lists are re-attached to the rotated positions and cell, so that
    gradients with respect to the original positions and cell flow through them.
    """
    if len(system.known_data()) != 0:
        raise ValueError(
            "random-rotation averaging cannot rotate custom system data "
            f"{system.known_data()}"
        )
    transpose = rotation.transpose(0, 1)
    rotated = System(
        types=system.types,
        positions=system.positions @ transpose,
        cell=system.cell @ transpose,
        pbc=system.pbc,
    )
    for options in system.known_neighbor_lists():
        neighbors = system.get_neighbor_list(options)
        vectors = neighbors.values.detach().squeeze(-1) @ transpose
        rotated_neighbors = TensorBlock(
            values=vectors.unsqueeze(-1),
            samples=neighbors.samples,
            components=neighbors.components,
            properties=neighbors.properties,
        )
        register_autograd_neighbors(rotated, rotated_neighbors)
        rotated.add_neighbor_list(options, rotated_neighbors)
    return rotated


def rotate_block_back(
    name: str, block: TensorBlock, rotations: torch.Tensor
) -> TensorBlock:
    """Undo, sample by sample, the rotation of the system each sample belongs to.

    Blocks without components are invariant and keep their values; Cartesian
    vectors (component ``xyz``) and rank-2 tensors (``xyz_1``, ``xyz_2``) are
    rotated back. Other layouts are refused.
    """
    if len(block.gradients_list()) != 0:
        raise ValueError(
            f"random-rotation averaging does not support the explicit gradients of "
            f"output '{name}'"
        )
    component_names: List[str] = []
    for component in block.components:
        component_names.append(component.names[0])

    if len(component_names) == 0:
        return TensorBlock(
            values=block.values,
            samples=block.samples,
            components=block.components,
            properties=block.properties,
        )

    per_sample = rotations[block.samples.column("system").to(torch.long)]
    if component_names == ["xyz"]:
        values = torch.einsum("sji,sjp->sip", per_sample, block.values)
    elif component_names == ["xyz_1", "xyz_2"]:
        values = torch.einsum(
            "sji,sjlp,slk->sikp", per_sample, block.values, per_sample
        )
    else:
        raise ValueError(
            f"random-rotation averaging cannot rotate output '{name}' back: its "
            f"components {component_names} are neither 'xyz' nor 'xyz_1', 'xyz_2'"
        )
    return TensorBlock(
        values=values,
        samples=block.samples,
        components=block.components,
        properties=block.properties,
    )


class RandomRotationModel(torch.nn.Module):
    """Evaluate ``model`` on a freshly, randomly rotated copy of each system.

    :param model: the metatomic model module to wrap (``AtomisticModel.module``)
    :param seed: seed of the rotation sequence; a negative value draws the
        rotations from torch's global generator instead
    :param inversion: compose each rotation with the inversion with probability 1/2,
        sampling O(3) instead of SO(3)
    """

    def __init__(self, model: torch.nn.Module, seed: int, inversion: bool):
        super().__init__()
        self._model = model
        self._seed = seed
        self._inversion = inversion
        self._n_calls = 0

    def sample_rotations(
        self, n_systems: int, dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """Draw ``n_systems`` uniform random O(3) (or SO(3)) matrices.

        Uniform unit quaternions give Haar-distributed rotations.
        """
        if self._seed >= 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(self._seed + self._n_calls)
            quaternions = torch.randn(
                n_systems, 4, dtype=torch.float64, device=device, generator=generator
            )
            signs = torch.randint(
                0, 2, (n_systems,), device=device, generator=generator
            )
        else:
            quaternions = torch.randn(n_systems, 4, dtype=torch.float64, device=device)
            signs = torch.randint(0, 2, (n_systems,), device=device)
        self._n_calls += 1

        matrices = quaternions_to_matrices(quaternions)
        if self._inversion:
            matrices = matrices * (1 - 2 * signs).to(torch.float64).reshape(-1, 1, 1)
        return matrices.to(dtype)

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        if len(systems) == 0:
            return self._model(systems, outputs, selected_atoms)
        rotations = self.sample_rotations(
            len(systems), systems[0].positions.dtype, systems[0].positions.device
        )
        rotated_systems: List[System] = []
        for index, system in enumerate(systems):
            rotated_systems.append(rotate_system(system, rotations[index]))

        rotated_results = self._model(rotated_systems, outputs, selected_atoms)
        results: Dict[str, TensorMap] = {}
        for name, tensor in rotated_results.items():
            blocks: List[TensorBlock] = []
            for block in tensor.blocks():
                blocks.append(rotate_block_back(name, block, rotations))
            results[name] = TensorMap(tensor.keys, blocks)
        return results


def random_rotation_average(
    model: AtomisticModel, seed: Optional[int] = None, inversion: bool = True
) -> AtomisticModel:
    """Wrap ``model`` so that each evaluation uses a new random orientation.

    The returned model declares the same outputs, neighbor lists and metadata as
    ``model``.

    :param model: exported model to wrap
    :param seed: non-negative seed making the sequence of rotations reproducible
        (restarting from the first rotation every time the model is loaded); ``None``
        draws from torch's global random generator
    :param inversion: also sample improper rotations
    """
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or seed < 0
    ):
        raise ValueError(f"the seed must be a non-negative integer, got {seed!r}")
    requested_inputs = list(model.requested_inputs(use_new_names=True))
    if len(requested_inputs) != 0:
        raise ValueError(
            "random-rotation averaging cannot rotate the custom inputs "
            f"{requested_inputs} requested by this model"
        )
    wrapper = RandomRotationModel(model.module, -1 if seed is None else seed, inversion)
    return AtomisticModel(
        wrapper.eval(), model.metadata(), declared_capabilities(model)
    )
