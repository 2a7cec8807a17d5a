"""The ``average`` and ``symmetry-report`` sub-commands of ``metatrain-pet``."""

import argparse
import json
from pathlib import Path

from metatomic.torch import AtomisticModel

from ..cli import add_extensions_argument
from ..files import load_exported_model, save_model
from ..systems.checks import read_structures
from .grid import grid_average, grid_evaluation_count
from .random_rotation import random_rotation_average
from .report import build_report, format_summary
from .variants import validate_variant_name, with_symmetrized_variant

DEFAULT_REPORT_ORDER = 5
DEFAULT_CONVERGENCE_ORDERS = (1, 2, 3, 4)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``average`` and ``symmetry-report`` parsers to ``subparsers``."""
    add_average_parser(subparsers)
    add_report_parser(subparsers)


def add_average_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``average`` parser: grid or random-rotation mode and their options."""
    average = subparsers.add_parser(
        "average",
        help="rotationally average a model over a grid or random rotations",
        description=(
            "Export a model averaged over a Lebedev x in-plane grid of rotations "
            "(--order, every rotation also taken with the inversion) or evaluated "
            "with a new random rotation at each call (--random)."
        ),
    )
    average.add_argument("model", type=Path, help="exported metatomic model (.pt)")
    average.add_argument(
        "-o", "--output", type=Path, required=True, help="where to save the result"
    )
    mode = average.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--order", type=int, help="degree of the averaging grid (0 to 131)"
    )
    mode.add_argument(
        "--random",
        action="store_true",
        help="use a fresh random rotation at each evaluation",
    )
    average.add_argument(
        "--seed", type=int, help="seed of the random rotations (with --random)"
    )
    average.add_argument(
        "--no-inversion",
        action="store_true",
        help="sample proper rotations only (with --random)",
    )
    average.add_argument(
        "--as-variant",
        nargs="?",
        const="symmetrized",
        metavar="NAME",
        help=(
            "keep the raw 'energy' and add the averaged one as 'energy/NAME' "
            "(default NAME: symmetrized)"
        ),
    )
    average.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="rotated copies per model call in grid mode (default: 32)",
    )
    add_extensions_argument(average)
    average.set_defaults(func=run_average)


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:
    """The ``symmetry-report`` parser: reference grid, ECSE and outputs."""
    report = subparsers.add_parser(
        "symmetry-report",
        help="measure how far a model is from rotational invariance",
        description=(
            "Compare a model with its grid average (and ECSE with --ecse): energy "
            "and force differences and, for isolated structures, the net torque."
        ),
    )
    report.add_argument("model", type=Path, help="exported metatomic model (.pt)")
    report.add_argument("structures", type=Path, help="structures readable by ASE")
    report.add_argument(
        "--order",
        type=int,
        default=DEFAULT_REPORT_ORDER,
        help=f"degree of the reference grid (default: {DEFAULT_REPORT_ORDER})",
    )
    report.add_argument(
        "--index",
        default=":",
        help="which structures of the file to use, in ASE syntax (default: all)",
    )
    report.add_argument(
        "--ecse", action="store_true", help="also evaluate the ECSE-symmetrized model"
    )
    report.add_argument("--json", type=Path, help="write the full report as JSON")
    report.add_argument(
        "--plot", type=Path, help="write a PNG of the error against the grid order"
    )
    report.add_argument(
        "--convergence-orders",
        type=int,
        nargs="+",
        help=(
            "coarser grid orders for the convergence study (default with --plot: "
            "those of 1 2 3 4 below --order)"
        ),
    )
    add_extensions_argument(report)
    report.set_defaults(func=run_symmetry_report)


def run_average(args: argparse.Namespace) -> None:
    """Build and save the averaged model requested on the command line."""
    if args.seed is not None and not args.random:
        raise ValueError("--seed only applies to --random")
    if args.no_inversion and not args.random:
        raise ValueError(
            "--no-inversion only applies to --random: metatomic's SymmetrizedModel "
            "always averages over rotations and their inversions"
        )
    if args.as_variant is not None:
        validate_variant_name(args.as_variant)

    raw = load_exported_model(args.model, args.extensions_directory)
    if args.random:
        averaged = random_rotation_average(
            raw, seed=args.seed, inversion=not args.no_inversion
        )
        description = "a new random rotation per evaluation"
    else:
        averaged = grid_average(raw, args.order, batch_size=args.batch_size)
        description = (
            f"order-{args.order} grid, {grid_evaluation_count(args.order)} "
            "evaluations per structure"
        )

    if args.as_variant is not None:
        averaged = with_symmetrized_variant(raw, averaged, variant=args.as_variant)
        description += f", as 'energy/{args.as_variant}' next to the raw 'energy'"

    save_model(averaged, str(args.output), [str(args.model)])
    print(f"saved {args.output}: {description}")


def load_ecse_model(raw: AtomisticModel) -> AtomisticModel:
    """ECSE-symmetrize ``raw`` with :func:`metatrain_pet.ecse.symmetrize`."""
    try:
        from metatrain_pet.ecse import symmetrize
    except ImportError as error:
        raise RuntimeError(
            "--ecse needs metatrain_pet.ecse.symmetrize, which is not available"
        ) from error
    return symmetrize(raw)


def run_symmetry_report(args: argparse.Namespace) -> None:
    """Evaluate the models, print the summary and write the JSON and PNG."""
    structures = read_structures(args.structures, args.index)
    convergence_orders = args.convergence_orders
    if convergence_orders is None:
        convergence_orders = []
        if args.plot is not None:
            convergence_orders = [
                order for order in DEFAULT_CONVERGENCE_ORDERS if order < args.order
            ]

    raw = load_exported_model(args.model, args.extensions_directory)
    ecse = load_ecse_model(raw) if args.ecse else None
    report = build_report(raw, structures, args.order, ecse, convergence_orders)
    report["model"] = str(args.model)
    report["structures_file"] = str(args.structures)
    print(format_summary(report))

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if args.plot is not None:
        from .plot import plot_convergence

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_convergence(report, args.plot)
        print(f"wrote {args.plot}")
