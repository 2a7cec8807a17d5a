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
from metatomic.torch import AtomisticModel, ModelOutput, System

from ..geometry.rotations import random_rotations
from ..systems.capabilities import declared_capabilities
from ..systems.transform import rotate_block_back, rotated_copies


def rotated_system(system: System, rotation: torch.Tensor) -> System:
    """Copy of ``system`` seen in the frame ``rotation`` ``(3, 3)``: positions, cell
    and neighbor vectors become ``R r``, with gradients reaching the original
    positions and cell. Custom system data cannot be rotated and is refused."""
    if len(system.known_data()) != 0:
        raise ValueError(
            "random-rotation averaging cannot rotate custom system data "
            f"{system.known_data()}"
        )
    options = system.known_neighbor_lists()
    return rotated_copies(system, rotation.unsqueeze(0), options)[0]


def rotate_back_by_system(
    output: str, block: TensorBlock, rotations: torch.Tensor
) -> TensorBlock:
    """``block`` of ``output`` with every sample brought back from the frame
    ``rotations[s]`` of its system ``s`` (``rotations`` is ``(n_systems, 3, 3)``):
    invariants unchanged, ``xyz`` vectors and ``xyz_1, xyz_2`` tensors rotated
    back; explicit gradients and other components are refused."""
    systems = block.samples.column("system").to(torch.long)
    return rotate_block_back(
        block, rotations[systems], output, "random-rotation averaging"
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
        """Draw ``n_systems`` uniform random O(3) (or SO(3)) matrices, from a
        generator seeded with ``seed + number of previous calls`` when ``seed`` is
        non-negative."""
        generator: Optional[torch.Generator] = None
        if self._seed >= 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(self._seed + self._n_calls)
        self._n_calls += 1
        return random_rotations(n_systems, self._inversion, dtype, device, generator)

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
            rotated_systems.append(rotated_system(system, rotations[index]))

        rotated_results = self._model(rotated_systems, outputs, selected_atoms)
        results: Dict[str, TensorMap] = {}
        for name, tensor in rotated_results.items():
            blocks: List[TensorBlock] = []
            for block in tensor.blocks():
                blocks.append(rotate_back_by_system(name, block, rotations))
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
