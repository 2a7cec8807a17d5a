"""Outputs of the wrapped model, computed in local frames, rotated back to the lab
frame and averaged (Eqs. 17, 19 and 25).

Blocks are rotated back according to their component names: no components
(invariants: energies, charges, features), one ``xyz`` component (Cartesian vectors),
or ``xyz_1`` and ``xyz_2`` (Cartesian rank-2 tensors).
"""

from typing import List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap

from .ensemble import ensemble_average


def rotate_back(
    values: torch.Tensor, components: List[Labels], rotations: torch.Tensor, name: str
) -> torch.Tensor:
    """Express in the lab frame the rows of ``values``, each computed in the frame
    of the same row of ``rotations`` (y = Fᵀ y' for vectors, Fᵀ Y' F for tensors)."""
    names: List[str] = []
    for component in components:
        names.append(component.names[0])
    if len(names) == 0:
        return values
    if names == ["xyz"]:
        return torch.einsum("nji,njp->nip", rotations, values)
    if names == ["xyz_1", "xyz_2"]:
        return torch.einsum("nai,nabp,nbj->nijp", rotations, values, rotations)
    raise ValueError(
        f"ECSE cannot rotate output '{name}': its components {names} are neither "
        "invariant ([]), a Cartesian vector (['xyz']) nor a Cartesian rank-2 tensor "
        "(['xyz_1', 'xyz_2'])"
    )


def average_over_frames(
    name: str,
    tensor: TensorMap,
    rotations: torch.Tensor,
    weights: torch.Tensor,
    frame_systems: torch.Tensor,
    frame_atoms: Optional[torch.Tensor],
    aux_tensor: Optional[TensorMap],
    aux_weights: Optional[torch.Tensor],
    atom_offsets: Optional[torch.Tensor],
) -> TensorMap:
    """Average a model output over the frames it was computed in.

    The ``system`` sample of ``tensor`` indexes the frames. Each row is rotated back
    with its frame, then relabelled: ``system`` becomes ``frame_systems[frame]`` and,
    when ``frame_atoms`` is given, ``atom`` becomes ``frame_atoms[frame]``. Rows with
    the same label are averaged with the frame weights, together with the matching
    row of ``aux_tensor`` (already in the final labels), weighted by w_aux: with
    ``atom_offsets`` None, ``aux_weights`` holds one weight per system; otherwise one
    per atom, atom ``a`` of system ``s`` being ``atom_offsets[s] + a``.
    """
    blocks: List[TensorBlock] = []
    for key_index in range(len(tensor.keys)):
        key = tensor.keys.entry(key_index)
        block = tensor.block(key_index)
        if len(block.gradients_list()) != 0:
            raise ValueError(
                f"ECSE does not support explicit gradients (output '{name}'); "
                "request them through autograd instead"
            )
        samples = block.samples.values
        frames = samples[:, 0].to(torch.long)
        values = rotate_back(block.values, block.components, rotations[frames], name)
        labels = samples.clone()
        labels[:, 0] = frame_systems[frames].to(labels.dtype)
        if frame_atoms is not None:
            atom_column = block.samples.names.index("atom")
            labels[:, atom_column] = frame_atoms[frames].to(labels.dtype)

        n_rows = labels.shape[0]
        aux_values: Optional[torch.Tensor] = None
        aux_row_weights: Optional[torch.Tensor] = None
        if aux_tensor is not None:
            aux_block = aux_tensor.block(key)
            if aux_block.samples.names != block.samples.names:
                raise ValueError(
                    f"the auxiliary model's '{name}' has samples "
                    f"{aux_block.samples.names}, expected {block.samples.names}"
                )
            aux_samples = aux_block.samples.values
            labels = torch.cat([labels, aux_samples.to(labels.dtype)])
            aux_values = aux_block.values
            if aux_weights is not None:
                aux_index = aux_samples[:, 0].to(torch.long)
                if atom_offsets is not None:
                    atom_column = aux_block.samples.names.index("atom")
                    aux_index = atom_offsets[aux_index] + aux_samples[:, atom_column]
                aux_row_weights = aux_weights[aux_index]

        unique, inverse = torch.unique(labels, dim=0, return_inverse=True)
        n_groups = unique.shape[0]
        grouped_aux: Optional[torch.Tensor] = None
        grouped_aux_weights: Optional[torch.Tensor] = None
        if aux_values is not None and aux_row_weights is not None:
            aux_rows = inverse[n_rows:]
            grouped_aux = torch.zeros(
                [n_groups] + list(aux_values.shape[1:]),
                dtype=aux_values.dtype,
                device=aux_values.device,
            ).index_add(0, aux_rows, aux_values)
            grouped_aux_weights = torch.zeros(
                n_groups, dtype=aux_row_weights.dtype, device=aux_row_weights.device
            ).index_add(0, aux_rows, aux_row_weights)

        averaged = ensemble_average(
            values,
            weights[frames],
            inverse[:n_rows],
            n_groups,
            grouped_aux,
            grouped_aux_weights,
        )
        blocks.append(
            TensorBlock(
                values=averaged,
                samples=Labels(block.samples.names, unique),
                components=block.components,
                properties=block.properties,
            )
        )
    return TensorMap(tensor.keys, blocks)
