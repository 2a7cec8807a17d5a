"""The ``metatrain-pet`` command line: ``ecse``, ``average`` and ``symmetry-report``.

Each sub-command lives next to the code it drives and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` to the function that runs it.
"""

import argparse
import importlib
import sys
from typing import List, Optional

COMMAND_MODULES = [
    "metatrain_pet.ecse.command",
    "metatrain_pet.symmetry.commands",
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


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"metatrain-pet {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
