"""Structures a potential should not be trusted on, found before they are evaluated:
no atoms, positions that are not finite, and atoms on top of each other.

A model gives coincident atoms (0.01 Å apart) a finite energy without a word: its
training data never had such a pair, so the value means nothing, and an ECSE frame
built on a vanishing neighbour vector is arbitrary. ``metatrain-pet check`` and the
symmetry report list these structures; :func:`structure_problems` is the check.
"""

import argparse
from pathlib import Path
from typing import List, Sequence

import ase
import ase.io
import ase.neighborlist
import numpy as np

MIN_DISTANCE = 0.5
"""Closest distance (Å) between two atoms that is not reported: below the shortest
chemical bond (H2, 0.74 Å)."""


def structure_problems(
    atoms: ase.Atoms, min_distance: float = MIN_DISTANCE
) -> List[str]:
    """Descriptions of what is wrong with ``atoms`` (empty when nothing is): no
    atoms, non-finite positions, pairs of atoms (periodic images included) closer
    than ``min_distance``, the closest pair named."""
    if len(atoms) == 0:
        return ["it has no atoms"]
    if not np.all(np.isfinite(atoms.positions)):
        return ["its positions contain NaN or infinite values"]
    first, second, distances = ase.neighborlist.neighbor_list(
        "ijd", atoms, min_distance, self_interaction=False
    )
    if len(distances) == 0:
        return []
    closest = int(np.argmin(distances))
    pairs = len(distances) // 2
    return [
        f"{pairs} pair{'s' if pairs > 1 else ''} of atoms closer than "
        f"{min_distance} Å; atoms {first[closest]} and {second[closest]} are "
        f"{distances[closest]:.3g} Å apart"
    ]


def report_problems(
    structures: Sequence[ase.Atoms], min_distance: float = MIN_DISTANCE
) -> List[str]:
    """``structure <index>: <problem>`` lines for every problem of ``structures``."""
    return [
        f"structure {index}: {problem}"
        for index, atoms in enumerate(structures)
        for problem in structure_problems(atoms, min_distance)
    ]


def read_structures(path: Path, index: str = ":") -> List[ase.Atoms]:
    """The structures ``index`` (ASE syntax) of the file ``path``, as a list;
    a missing file is named in the error."""
    if not path.is_file():
        raise FileNotFoundError(f"structure file '{path}' does not exist")
    structures = ase.io.read(path, index=index)
    return [structures] if isinstance(structures, ase.Atoms) else structures


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``check`` parser to ``subparsers``."""
    check = subparsers.add_parser(
        "check",
        help="list structures a potential should not be trusted on",
        description=(
            "List the structures with no atoms, non-finite positions or atoms "
            "closer than --min-distance (periodic images included); exit code 1 "
            "when there is any."
        ),
    )
    check.add_argument("structures", type=Path, help="structures readable by ASE")
    check.add_argument(
        "--index", default=":", help="which structures, in ASE syntax (default: all)"
    )
    check.add_argument(
        "--min-distance",
        type=float,
        default=MIN_DISTANCE,
        help=f"closest distance allowed between two atoms, Å (default {MIN_DISTANCE})",
    )
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> None:
    """Print the problems found; raise (exit code 1) when there is any."""
    structures = read_structures(args.structures, args.index)
    problems = report_problems(structures, args.min_distance)
    for line in problems:
        print(line)
    if problems:
        raise ValueError(
            f"{len(problems)} of {len(structures)} structures have problems"
        )
    print(f"{len(structures)} structures, no problems found")
