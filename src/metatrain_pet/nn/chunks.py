"""Environments processed in chunks of similar length.

The transformer of a block sees every environment as a sequence padded to a common
length. Padding all of them to the longest wastes work where neighbour counts vary
(a surface, a gas-liquid interface, a molecule beside a dense cluster), and one
sequence tensor for a whole large box makes every temporary of the transformer
proportional to the number of atoms: large temporaries are mapped and unmapped by
the allocator at every step, and their first touch costs a page fault per page,
so that the cost per atom grows with the size of the system.

:func:`plan_chunks` sorts the atoms by neighbour count and cuts them into chunks of
at most ``max_tokens`` tokens, each padded to its own longest environment;
the block runs its transformer chunk by chunk and puts the output tokens back in
the order of the atoms and edges. Environments do not interact
inside a transformer, so the result is the same as with one padded tensor.
"""

from typing import List, NamedTuple

import torch

from .environments import pad_environments


class Chunks(NamedTuple):
    """Atoms and edges of every chunk."""

    atoms: List[torch.Tensor]
    """per chunk, its atoms ``(n_c,)``"""
    edges: List[torch.Tensor]
    """per chunk, the edges ``(e_c,)`` whose centre is one of its atoms"""
    atom_order: torch.Tensor
    """``(n_atoms,)`` the atoms of all chunks, one chunk after the other"""
    edge_order: torch.Tensor
    """``(n_edges,)`` the edges of all chunks, one chunk after the other"""
    atom_counts: List[int]
    """per chunk, its number of atoms"""
    edge_counts: List[int]
    """per chunk, its number of edges"""
    rows: List[torch.Tensor]
    """per chunk, the row of every edge's centre among the chunk's atoms"""
    lengths: List[int]
    """per chunk, tokens of its longest environment (central token included)"""
    atom_rank: torch.Tensor
    """``(n_atoms,)`` row of every atom in the concatenation of the chunks"""
    edge_rank: torch.Tensor
    """``(n_edges,)`` row of every edge in the concatenation of the chunks"""


def default_max_tokens(device: torch.device) -> int:
    """Tokens per chunk: on CPU small enough that the widest temporary of a
    transformer layer (the feed-forward hidden layer of 512 features, 8 MiB)
    stays well below glibc's largest mmap threshold (32 MiB) and is reused from
    the heap (4096 tokens: 5 % faster than 8192 on 192 and 1536 water atoms,
    ``benchmarks/chunk_size.py``, separate processes); on GPU large, since every
    chunk costs kernel launches."""
    if device.type == "cpu":
        return 4096
    return 1 << 20


def plan_chunks(centers: torch.Tensor, n_atoms: int, max_tokens: int) -> Chunks:
    """Chunks of atoms sorted by neighbour count, ``max_tokens`` tokens at most
    (at least one atom) each once padded.

    :param centers: ``(n_edges,)`` central atom of every edge, sorted
    """
    counts = torch.bincount(centers, minlength=n_atoms)
    order = torch.sort(counts, stable=True)[1]
    longest = int(counts.max().item()) + 1 if n_atoms > 0 else 1
    per_chunk = max(1, max_tokens // longest)
    position = _inverse(order)
    chunk_of_edge = torch.div(position[centers], per_chunk, rounding_mode="floor")
    n_chunks = (n_atoms + per_chunk - 1) // per_chunk
    edge_order = torch.sort(chunk_of_edge, stable=True)[1]
    edge_counts: List[int] = torch.bincount(chunk_of_edge, minlength=n_chunks).tolist()
    ends = torch.arange(1, n_chunks + 1, device=centers.device) * per_chunk
    last = torch.clamp(ends, max=n_atoms) - 1
    longest_of_chunk: List[int] = (counts[order[last]] + 1).tolist()
    atoms = list(order.split(per_chunk))
    edges = list(edge_order.split(edge_counts))
    atom_counts = [int(a.shape[0]) for a in atoms]
    rows = [position[centers[e]] - c * per_chunk for c, e in enumerate(edges)]
    return Chunks(
        atoms,
        edges,
        order,
        edge_order,
        atom_counts,
        edge_counts,
        rows,
        longest_of_chunk,
        position,
        _inverse(edge_order),
    )


def chunk_inputs(
    inputs: List[torch.Tensor], chunks: Chunks
) -> List[List[torch.Tensor]]:
    """Per chunk, its rows of ``inputs``: two per-atom tensors, then two per-edge
    tensors (central tokens, token weights, edge tokens, slots).

    With autograd, every tensor is gathered once, in chunk order, and split into
    views: the backward of one gather writes each gradient once, where one gather
    per chunk would fill a gradient of the whole tensor per chunk (a cost of
    chunks × rows that made the cost per atom grow with the box). Without
    autograd, each chunk is gathered when its turn comes (:func:`chunk_rows`), so
    that no sorted copy of the whole tensor is held."""
    n_chunks = len(chunks.lengths)
    per_atom = [t[chunks.atom_order].split(chunks.atom_counts) for t in inputs[:2]]
    per_edge = [t[chunks.edge_order].split(chunks.edge_counts) for t in inputs[2:]]
    return [
        [per_atom[0][c], per_atom[1][c], per_edge[0][c], per_edge[1][c]]
        for c in range(n_chunks)
    ]


def chunk_rows(
    inputs: List[torch.Tensor], chunks: Chunks, c: int
) -> List[torch.Tensor]:
    """The rows of chunk ``c`` of ``inputs`` (laid out as in :func:`chunk_inputs`),
    gathered for that chunk alone."""
    atoms, edges = chunks.atoms[c], chunks.edges[c]
    return [inputs[0][atoms], inputs[1][atoms], inputs[2][edges], inputs[3][edges]]


def gathers_once(inputs: List[torch.Tensor]) -> bool:
    """Whether the chunks' rows are gathered once (:func:`chunk_inputs`): when
    autograd records any of the inputs."""
    if not torch.is_grad_enabled():
        return False
    for tensor in inputs:
        if tensor.requires_grad:
            return True
    return False


def chunk_sequences(
    central: torch.Tensor,
    edge_tokens: torch.Tensor,
    token_weights: torch.Tensor,
    centers: torch.Tensor,
    slots: torch.Tensor,
) -> torch.Tensor:
    """Input sequences ``(n, n_tokens, d)`` of environments padded to
    ``n_tokens = token_weights.shape[1]``: the central token, then one per edge.

    :param centers: row of every edge's centre among the ``n`` environments
    """
    n_atoms, n_tokens = token_weights.shape
    padded = pad_environments(edge_tokens, centers, slots, n_atoms, n_tokens - 1)
    return torch.cat([central.unsqueeze(1), padded], dim=1)


def _inverse(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation: where every item of ``order`` stands in it."""
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.shape[0], device=order.device)
    return inverse
