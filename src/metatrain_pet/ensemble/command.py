"""``metatrain-pet ensemble A.ckpt B.ckpt ... -o ensemble.pt``."""

import argparse
from pathlib import Path

from ..cli import add_extensions_argument
from ..files import load_exported_model, read_archive, save_model


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``ensemble`` parser to ``subparsers``."""
    parser = subparsers.add_parser(
        "ensemble",
        help="combine trained models into one exported ensemble",
        description=(
            "One exported model giving the members' mean energy (forces and stress "
            "by autograd), every member's energy (energy_ensemble) and their "
            "standard deviation (energy_uncertainty)."
        ),
    )
    parser.add_argument(
        "models", nargs="+", type=Path, help="checkpoints (.ckpt) or exported models"
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    add_extensions_argument(parser)
    parser.set_defaults(func=run_ensemble)


def run_ensemble(args: argparse.Namespace) -> None:
    """Load the members, build the ensemble and save it."""
    from .model import build_ensemble

    members = [_load(path, args.extensions_directory) for path in args.models]
    save_model(build_ensemble(members), str(args.output), [str(p) for p in args.models])
    print(f"saved an ensemble of {len(members)} models to {args.output}")


def _load(path: Path, extensions):
    """An exported model from a checkpoint of any metatrain architecture, or from
    an exported ``.pt``."""
    if path.suffix == ".ckpt":
        from metatrain.utils.io import load_model

        return read_archive(path, load_model).export()
    return load_exported_model(path, extensions)
