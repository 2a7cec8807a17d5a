"""Segments: rows grouped by an integer label (the atoms of a structure, the edges
of an environment, the frames of a pool). One sum and one offset table for all."""

from typing import Tuple

import torch


def segment_sum(
    values: torch.Tensor, segments: torch.Tensor, n_segments: int
) -> torch.Tensor:
    """Sum of the rows of ``values`` ``(n, ...)`` per segment: ``(n_segments, ...)``,
    zeros for empty segments."""
    shape = [n_segments] + list(values.shape[1:])
    result = torch.zeros(shape, dtype=values.dtype, device=values.device)
    return result.index_add(0, segments, values)


def offsets_of(counts: torch.Tensor) -> torch.Tensor:
    """Offsets ``(n + 1,)`` of consecutive segments of ``counts`` rows:
    ``[0, c_0, c_0 + c_1, ...]``; segment s holds rows ``offsets[s]:offsets[s+1]``."""
    return torch.nn.functional.pad(torch.cumsum(counts, 0), [1, 0])


def segment_offsets(segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Offsets (see :func:`offsets_of`) of the segments of a sorted label list."""
    return offsets_of(torch.bincount(segments, minlength=n_segments))


def rank_in_segment(segments: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Position of every row within its segment (labels sorted): 0, 1, ... per
    segment."""
    starts = segment_offsets(segments, n_segments)[:-1]
    return torch.arange(segments.shape[0], device=segments.device) - starts[segments]


def rows_of_segments(
    segment_of_item: torch.Tensor, offsets: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expand items that each use one segment of rows.

    Item k uses rows ``offsets[s]:offsets[s+1]`` with ``s = segment_of_item[k]``.
    Returns, for every entry of the concatenation of these ranges, its item and
    its row.
    """
    begin = offsets[segment_of_item]
    lengths = offsets[segment_of_item + 1] - begin
    items = torch.arange(segment_of_item.shape[0], device=segment_of_item.device)
    item = torch.repeat_interleave(items, lengths)
    rank = torch.arange(item.shape[0], device=item.device) - offsets_of(lengths)[item]
    return item, begin[item] + rank
