"""Layer-wise ECSE inside PET's blocks (App. F.10, last paragraphs): every block
runs on every atomic environment once per frame of its central atom, and the
block's outputs are averaged with the frame weights, so that the messages sent to
the next block are exactly invariant.

The (atom, frame) copies are rows of the same padded edge layout as the atoms:
row r is atom ``rows.atoms[r]`` seen in the frame ``rows.rotations[r]``, its edges
are the atom's edges with r_ij expressed in that frame (the incoming messages are
taken as they are: invariant by induction).
"""

from typing import NamedTuple, Tuple

import torch

from ..geometry.segments import rows_of_segments, segment_offsets, segment_sum
from .environments import Environments


class FrameRows(NamedTuple):
    """The (atom, frame) rows of a set of environments, grouped by atom."""

    atoms: torch.Tensor
    """``(n_rows,)`` atom of every row, sorted"""
    rotations: torch.Tensor
    """``(n_rows, 3, 3)`` frame of every row"""
    weights: torch.Tensor
    """``(n_rows,)`` frame weight divided by the atom's total: averages are sums"""
    edges: torch.Tensor
    """``(n_row_edges,)`` the atom's edge of every edge of every row"""
    edge_rows: torch.Tensor
    """``(n_row_edges,)`` row of every row edge (sorted)"""


def frame_rows(
    atoms: torch.Tensor,
    rotations: torch.Tensor,
    weights: torch.Tensor,
    centers: torch.Tensor,
    n_atoms: int,
) -> FrameRows:
    """Rows of the frames ``(atoms, rotations, weights)``, sorted by atom, over
    environments whose edges have the sorted ``centers``."""
    totals = segment_sum(weights, atoms, n_atoms)
    normalized = weights / totals[atoms]
    edge_rows, edges = rows_of_segments(atoms, segment_offsets(centers, n_atoms))
    return FrameRows(atoms, rotations, normalized, edges, edge_rows)


def rotated_environments(environments: Environments, rows: FrameRows) -> Environments:
    """Every row as an environment of its own: the atom's tokens, with the
    Cartesian part (first three columns) of the geometric input rotated into the
    row's frame."""
    return Environments(
        geometry=rotated_geometry(environments.geometry, rows, environments.cartesian),
        center_species=environments.center_species[rows.atoms],
        neighbor_species=environments.neighbor_species[rows.edges],
        center_features=environments.center_features[rows.atoms],
        neighbor_features=environments.neighbor_features[rows.edges],
        centers=rows.edge_rows,
        slots=environments.slots[rows.edges],
        reverse=environments.reverse[rows.edges],
        edge_cutoffs=environments.edge_cutoffs[rows.edges],
        token_weights=environments.token_weights[rows.atoms],
        cartesian=environments.cartesian,
    )


def rotated_geometry(
    geometry: torch.Tensor, rows: FrameRows, cartesian: bool
) -> torch.Tensor:
    """The geometric input of every edge of every row ``(n_row_edges, n_geometric)``:
    the edge's, with its Cartesian part (first three columns, when ``cartesian``)
    rotated into the row's frame."""
    geometry = geometry[rows.edges]
    if not cartesian:
        return geometry
    rotations = rows.rotations[rows.edge_rows]
    vectors = torch.einsum("eab,eb->ea", rotations, geometry[:, :3])
    return torch.cat([vectors, geometry[:, 3:]], dim=1)


def average_over_rows(
    values: torch.Tensor, rows: FrameRows, n_atoms: int
) -> torch.Tensor:
    """Frame average of per-row values ``(n_rows, ...)``: ``(n_atoms, ...)``."""
    broadcast = [-1] + [1] * (values.dim() - 1)
    return segment_sum(values * rows.weights.view(broadcast), rows.atoms, n_atoms)


def average_rows(
    central: torch.Tensor,
    edges: torch.Tensor,
    rows: FrameRows,
    environments: Environments,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Frame averages of a block's output tokens over the rows: central tokens
    ``(n_atoms, d)`` and edge tokens ``(n_edges, d)`` of ``environments``."""
    n_atoms = environments.token_weights.shape[0]
    n_edges = environments.centers.shape[0]
    edge_weights = rows.weights[rows.edge_rows].unsqueeze(1)
    return (
        average_over_rows(central, rows, n_atoms),
        segment_sum(edges * edge_weights, rows.edges, n_edges),
    )


def geometry_gradients_in_lab(
    gradients: torch.Tensor, rows: FrameRows, cartesian: bool, n_edges: int
) -> torch.Tensor:
    """``(n_edges, n_geometric)``: gradients with respect to every edge's geometric
    input in the laboratory frame, from ``gradients`` with respect to the rotated
    inputs of the row edges (:func:`rotated_geometry`), the rotations held fixed:
    R^T g on the Cartesian part, summed over the rows that hold the edge."""
    if cartesian:
        rotations = rows.rotations[rows.edge_rows]
        vectors = torch.einsum("eba,eb->ea", rotations, gradients[:, :3])
        gradients = torch.cat([vectors, gradients[:, 3:]], dim=1)
    return segment_sum(gradients, rows.edges, n_edges)


def rotation_gradients(
    geometry: torch.Tensor, gradients: torch.Tensor, rows: FrameRows, cartesian: bool
) -> torch.Tensor:
    """``(n_rows, 3, 3)``: gradients with respect to every row's rotation R of a
    function whose gradients with respect to the rotated inputs R v of the row
    edges are ``gradients``, the laboratory inputs v (``geometry``) held fixed:
    Σ_e g_e v_eᵀ over the row's edges (zero without Cartesian inputs)."""
    if not cartesian:
        return torch.zeros_like(rows.rotations)
    outer = gradients[:, :3].unsqueeze(2) * geometry[rows.edges, :3].unsqueeze(1)
    return segment_sum(outer, rows.edge_rows, rows.rotations.shape[0])


def raw_weight_gradients(
    raw_weights: torch.Tensor, rows: FrameRows, gradients: torch.Tensor, n_atoms: int
) -> torch.Tensor:
    """``(n_rows,)``: gradients with respect to the frame weights w_r before their
    normalisation per atom (ŵ_r = w_r / Σ_r' w_r', :func:`frame_rows`), from
    ``gradients`` g with respect to the normalised ŵ: (g_r − Σ_r' ŵ_r' g_r') / Σ w."""
    totals = segment_sum(raw_weights, rows.atoms, n_atoms)
    mean = segment_sum(rows.weights * gradients, rows.atoms, n_atoms)
    return (gradients - mean[rows.atoms]) / totals[rows.atoms]
