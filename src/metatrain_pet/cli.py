"""The ``metatrain-pet`` command line: ``ecse``, ``average``, ``symmetry-report``,
``check``, ``ensemble`` and ``plot``.

Each sub-command lives next to the code it drives and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to the function that runs it.
"""

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import List, Optional

import torch

COMMAND_MODULES = [
    "metatrain_pet.ecse.command",
    "metatrain_pet.symmetry.commands",
    "metatrain_pet.systems.checks",
    "metatrain_pet.ensemble.command",
    "metatrain_pet.plots",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metatrain-pet",
        description="Symmetrize and inspect exported metatomic models.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def add_extensions_argument(parser: argparse.ArgumentParser) -> None:
    """``--extensions-directory`` (alias ``--extensions``): where the TorchScript
    extensions of exported models are, for every command that loads one."""
    parser.add_argument(
        "--extensions-directory",
        "--extensions",
        dest="extensions_directory",
        type=Path,
        help="directory with the model's TorchScript extensions",
    )


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError, torch.jit.Error) as error:
        print(
            f"metatrain-pet {args.command}: error: {one_line(error)}", file=sys.stderr
        )
        return 1
    return 0


def one_line(error: BaseException) -> str:
    """The message of ``error`` on one line. An error raised inside a TorchScript
    model carries the interpreter's traceback; its last line is the original
    ``builtins.ValueError: message``, of which the message is kept."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if isinstance(error, torch.jit.Error) and lines:
        return re.sub(r"^[\w.]+(Error|Exception): ", "", lines[-1])
    return " ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
