"""Outputs of the wrapped model, computed in local frames, rotated back to the lab
frame and averaged over each pool (Eqs. 17, 19 and 25).

Blocks are rotated back according to their component names: no components
(invariants: energies, charges, features), one ``xyz`` component (Cartesian vectors),
or ``xyz_1`` and ``xyz_2`` (Cartesian rank-2 tensors).
"""

from typing import List, NamedTuple, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap

from ..geometry.segments import segment_sum
from ..systems.transform import rotate_block_back
from .ensemble import Frames, ensemble_average


class OutputLayout(NamedTuple):
    """Where each evaluated row goes: its pool, and the samples of the averages."""

    atom_pools: bool
    """Pools are atoms (``per_atom`` mode) rather than structures (``global``)."""
    atom_offsets: torch.Tensor
    """``(n_systems + 1,)`` first flat atom of every structure"""
    atom_rows: torch.Tensor
    """``(n_atoms,)`` row of every flat atom among the output atoms, -1 if none"""
    systems: Labels
    """samples of the per-structure averages"""
    atoms: Labels
    """samples of the per-atom averages (``system``, ``atom``)"""


def _evaluated_groups(
    layout: OutputLayout, frames: Frames, samples: Labels
) -> torch.Tensor:
    """Output row of every row of an evaluated block: sample ``system`` is the
    frame, whose pool is the structure (``global``) or the atom (``per_atom``)."""
    pools = frames.pools[samples.column("system").to(torch.long)]
    if layout.atom_pools or "atom" not in samples.names:
        return pools
    atoms = samples.column("atom").to(torch.long)
    return layout.atom_rows[layout.atom_offsets[pools] + atoms]


def _lab_groups(layout: OutputLayout, samples: Labels) -> torch.Tensor:
    """Output row of every row of a block already in the final samples (the
    auxiliary model's)."""
    systems = samples.column("system").to(torch.long)
    if "atom" not in samples.names:
        return systems
    atoms = samples.column("atom").to(torch.long)
    return layout.atom_rows[layout.atom_offsets[systems] + atoms]


def average_over_frames(
    name: str,
    tensor: TensorMap,
    frames: Frames,
    layout: OutputLayout,
    aux_tensor: Optional[TensorMap],
    aux_weights: Optional[torch.Tensor],
) -> TensorMap:
    """Average one output over the frames it was evaluated in (Eq. 17): every row
    rotated back with its frame, then averaged per output row with the frame
    weights, the auxiliary model blended in with w_aux (Eq. 19) when given
    (``aux_weights``: one per pool)."""
    blocks: List[TensorBlock] = []
    for key_index in range(len(tensor.keys)):
        block = tensor.block(key_index)
        frame_of_row = block.samples.column("system").to(torch.long)
        rotated = rotate_block_back(block, frames.rotations[frame_of_row], name, "ECSE")
        groups = _evaluated_groups(layout, frames, block.samples)
        samples = layout.atoms if "atom" in block.samples.names else layout.systems
        n_groups = len(samples)
        aux_values: Optional[torch.Tensor] = None
        aux_group_weights: Optional[torch.Tensor] = None
        if aux_tensor is not None and aux_weights is not None:
            aux_block = aux_tensor.block(tensor.keys.entry(key_index))
            if aux_block.samples.names != block.samples.names:
                raise ValueError(
                    f"the auxiliary model's '{name}' has samples "
                    f"{aux_block.samples.names}, expected {block.samples.names}"
                )
            aux_groups = _lab_groups(layout, aux_block.samples)
            aux_values = segment_sum(aux_block.values, aux_groups, n_groups)
            aux_group_weights = aux_weights[_pool_of_group(layout, samples)]
        averaged = ensemble_average(
            rotated.values,
            frames.weights[frame_of_row],
            groups,
            n_groups,
            aux_values,
            aux_group_weights,
        )
        blocks.append(
            TensorBlock(averaged, samples, block.components, block.properties)
        )
    return TensorMap(tensor.keys, blocks)


def _pool_of_group(layout: OutputLayout, samples: Labels) -> torch.Tensor:
    """Pool of every output row: the row itself, or the structure of an atom in
    ``global`` mode."""
    rows = torch.arange(len(samples), device=samples.values.device)
    if layout.atom_pools or "atom" not in samples.names:
        return rows
    return samples.column("system").to(torch.long)
