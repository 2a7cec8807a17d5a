"""PET's view of a batch (Fig. 2a): every atomic environment as one sequence of
tokens, the central atom's followed by one per neighbour, padded to the largest
neighbour count, with the smooth cutoff f_c of every edge (Eq. 9)."""

from typing import NamedTuple

import torch

from ..geometry.edges import environment_slots, reversed_edges
from ..geometry.switching import cutoff_fc


class Environments(NamedTuple):
    """Per-edge, per-atom and padded tensors of a batch, edges sorted by centre."""

    geometry: torch.Tensor
    """``(n_edges, n_geometric)``: the input of the geometry embedding L (Eq. 5)"""
    center_species: torch.Tensor
    """``(n_atoms,)`` species index of every atom"""
    neighbor_species: torch.Tensor
    """``(n_edges,)`` species index of every edge's neighbour"""
    center_features: torch.Tensor
    """``(n_atoms, n_features)`` extra-input features of every atom
    (:mod:`.inputs`; no columns without extra inputs)"""
    neighbor_features: torch.Tensor
    """``(n_edges, n_features)`` those of every edge's neighbour"""
    centers: torch.Tensor
    """``(n_edges,)`` central atom of every edge (sorted)"""
    slots: torch.Tensor
    """``(n_edges,)`` position of every edge among its centre's neighbours"""
    reverse: torch.Tensor
    """``(n_edges,)`` the edge j -> i of every edge i -> j, in the numbering of all
    edges: messages of block k + 1 are the output tokens of these edges"""
    edge_cutoffs: torch.Tensor
    """``(n_edges,)`` f_c(r_ij | R_c, Δ_Rc)"""
    token_weights: torch.Tensor
    """``(n_atoms, 1 + max_neighbors)``: 1 for the central token, f_c for the
    neighbours, 0 for padding"""
    cartesian: bool
    """Whether the first three columns of ``geometry`` are r_ij (rotated by
    layer-wise ECSE), or all columns are invariant"""


def geometric_input(
    vectors: torch.Tensor,
    use_only_lengths: bool,
    encode_length: bool,
    radial_basis: int,
    cutoff: float,
) -> torch.Tensor:
    """What the geometry embedding L of Eq. 5 sees of an edge: r_ij (3), r_ij and
    |r_ij| (4), or |r_ij| alone (1, exactly invariant), followed by
    ``radial_basis`` Gaussians of |r_ij| (:func:`gaussian_basis`)."""
    distances = torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    columns = [distances] if use_only_lengths else [vectors]
    if encode_length and not use_only_lengths:
        columns.append(distances)
    if radial_basis > 0:
        columns.append(gaussian_basis(distances, radial_basis, cutoff))
    return torch.cat(columns, dim=1)


def gaussian_basis(distances: torch.Tensor, size: int, cutoff: float) -> torch.Tensor:
    """``(n_edges, size)``: exp(-((r - μ_k) / σ)²) with μ_k evenly spaced from 0 to
    R_c and σ = R_c / size. A linear layer on raw coordinates resolves distances
    poorly at first (a stiff O-H bond wants 0.01 Å); these features let it tell
    close distances apart from the first step."""
    centers = torch.linspace(
        0.0, cutoff, size, dtype=distances.dtype, device=distances.device
    )
    return torch.exp(-(((distances - centers) * (size / cutoff)) ** 2))


def build_environments(
    vectors: torch.Tensor,
    centers: torch.Tensor,
    neighbors: torch.Tensor,
    cell_shifts: torch.Tensor,
    species: torch.Tensor,
    cutoff: float,
    cutoff_width: float,
    geometry: torch.Tensor,
    features: torch.Tensor,
    cartesian: bool,
) -> Environments:
    """Environments of a batch whose edges are sorted by centre.

    :param vectors: ``(n_edges, 3)`` r_ij
    :param species: ``(n_atoms,)`` species index of every atom
    :param geometry: ``(n_edges, n_geometric)`` from :func:`geometric_input`
    :param features: ``(n_atoms, n_features)`` extra-input features
    :param cartesian: whether ``geometry`` starts with r_ij
    """
    n_atoms = species.shape[0]
    slots, num_neighbors = environment_slots(centers, n_atoms)
    max_neighbors = int(num_neighbors.max().item()) if n_atoms > 0 else 0
    distances = torch.linalg.vector_norm(vectors, dim=1)
    edge_cutoffs = cutoff_fc(
        distances,
        torch.full([], cutoff, dtype=distances.dtype, device=distances.device),
        torch.full([], cutoff_width, dtype=distances.dtype, device=distances.device),
    )
    central_weight = torch.ones(
        (n_atoms, 1), dtype=vectors.dtype, device=vectors.device
    )
    padded = pad_environments(edge_cutoffs, centers, slots, n_atoms, max_neighbors)
    return Environments(
        geometry=geometry,
        center_species=species,
        neighbor_species=species[neighbors],
        center_features=features,
        neighbor_features=features[neighbors],
        centers=centers,
        slots=slots,
        reverse=reversed_edges(centers, neighbors, cell_shifts),
        edge_cutoffs=edge_cutoffs,
        token_weights=torch.cat([central_weight, padded], dim=1),
        cartesian=cartesian,
    )


def detached_environments(environments: Environments) -> Environments:
    """The same environments, cut from the autograd graph of the positions."""
    return Environments(
        geometry=environments.geometry.detach(),
        center_species=environments.center_species,
        neighbor_species=environments.neighbor_species,
        center_features=environments.center_features,
        neighbor_features=environments.neighbor_features,
        centers=environments.centers,
        slots=environments.slots,
        reverse=environments.reverse,
        edge_cutoffs=environments.edge_cutoffs.detach(),
        token_weights=environments.token_weights.detach(),
        cartesian=environments.cartesian,
    )


def pad_environments(
    edge_values: torch.Tensor,
    centers: torch.Tensor,
    slots: torch.Tensor,
    n_atoms: int,
    max_neighbors: int,
) -> torch.Tensor:
    """Per-edge values into a ``(n_atoms, max_neighbors, ...)`` tensor, zeros in
    the padding."""
    shape = [n_atoms, max_neighbors] + list(edge_values.shape[1:])
    padded = torch.zeros(shape, dtype=edge_values.dtype, device=edge_values.device)
    return padded.index_put((centers, slots), edge_values)
