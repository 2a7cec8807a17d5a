"""``metatrain-pet ecse``: symmetrize an exported metatomic model with ECSE, or a
checkpoint of ``experimental.pet_ecse`` (any mode, including ``layerwise``)."""

import argparse
import sys
from typing import Any, Dict, Optional

from ..cli import add_extensions_argument
from ..files import load_exported_model, read_archive, save_model
from .hypers import ADAPTIVE_FALLBACKS, PRESETS


def register(subparsers) -> None:
    """Add the ``ecse`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "ecse",
        help="make an exported model exactly rotationally equivariant (ECSE)",
        description=(
            "Wrap an exported metatomic model with the Equivariant Coordinate System "
            "Ensemble and save the symmetrized model."
        ),
    )
    parser.add_argument(
        "model",
        help="exported model (.pt) to symmetrize, or a checkpoint (.ckpt) of "
        "experimental.pet_ecse (needed for --mode layerwise)",
    )
    parser.add_argument("-o", "--output", required=True, help="where to save it")
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        default=None,
        help="starting values of the ECSE parameters: 'loose' and 'tight' (App. "
        "F.6) or 'md' (beta 5, no pruning, fallback adaptive_near_collinear; "
        "smooth layer-wise forces for molecular dynamics); default: 'md' with "
        "--mode layerwise, 'loose' otherwise",
    )
    parser.add_argument(
        "--mode", choices=["global", "per_atom", "layerwise"], default=None
    )
    _add_parameter_arguments(parser)
    parser.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="export a checkpoint in this precision (default: the checkpoint's); "
        "float64 for molecular dynamics that must conserve energy tightly",
    )
    add_extensions_argument(parser)
    parser.set_defaults(func=run)


def _add_parameter_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that set ECSE parameters (see :func:`_ecse_parameters`)."""
    parser.add_argument(
        "--r-out",
        type=float,
        default=None,
        help="outer cutoff R_out of the frame search (default: a checkpoint's "
        "cutoff, else 5)",
    )
    parser.add_argument(
        "--aux", default=None, help="auxiliary invariant model (implies --fallback aux)"
    )
    parser.add_argument(
        "--fallback", choices=("none", "aux") + ADAPTIVE_FALLBACKS, default=None
    )
    parser.add_argument(
        "--inversion", action="store_true", help="average over O(3), not only SO(3)"
    )
    parser.add_argument(
        "--extra-rotations",
        type=int,
        default=None,
        help="number of fixed extra rotations combined with every frame (Eq. 25)",
    )
    parser.add_argument(
        "--frame-types",
        type=int,
        nargs="+",
        default=None,
        help="atomic numbers of the neighbours that define frames (App. F.5)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="sharpness β of the SmoothMin giving R_in (Eqs. 22-23; default: the "
        "preset's); larger: fewer frames, sharper switches between them",
    )
    parser.add_argument(
        "--gradual-onset",
        action="store_true",
        help="pairs of neighbours enter the SmoothMin of R_in gradually, as their "
        "weight rises, instead of at their own distance, so that a pair starting "
        "to count does not move R_in abruptly at sharp β (see docs/ecse.md)",
    )
    parser.add_argument(
        "--no-pruning",
        action="store_true",
        help="keep every frame of non-zero weight (no App. F.5 pruning): more "
        "frames, and no force bumps narrower than a time step where the pruning "
        "switches a frame on or off (the md preset has no pruning; see "
        "docs/ecse.md)",
    )


def run(args: argparse.Namespace) -> None:
    """Load ``args.model``, symmetrize it and save it to ``args.output``."""
    preset = args.preset or ("md" if args.mode == "layerwise" else "loose")
    params = _ecse_parameters(args)
    if args.model.endswith(".ckpt"):
        symmetrized = symmetrized_checkpoint(args.model, preset, params, args.dtype)
    else:
        if args.dtype is not None:
            raise ValueError(
                "--dtype applies to checkpoints (.ckpt): an exported model keeps "
                "the precision it was exported in"
            )
        symmetrized = _symmetrized_export(args, preset, params)
    save_model(
        symmetrized, args.output, [args.model] + ([args.aux] if args.aux else [])
    )
    print(f"saved the ECSE-symmetrized model to {args.output}")


def _ecse_parameters(args: argparse.Namespace) -> Dict[str, Any]:
    """The ECSE parameters given on the command line."""
    params: Dict[str, Any] = {}
    if args.mode is not None:
        params["mode"] = args.mode
    if args.r_out is not None:
        params["r_out"] = args.r_out
    if args.beta is not None:
        params["beta"] = args.beta
    if args.gradual_onset:
        params["gradual_onset"] = True
    if args.no_pruning:
        params["pruning"] = False
    if args.inversion:
        params["inversion"] = True
    if args.extra_rotations is not None:
        params["num_extra_rotations"] = args.extra_rotations
    if args.frame_types is not None:
        params["frame_types"] = args.frame_types
    fallback = args.fallback
    if args.aux is not None:
        if fallback not in (None, "aux"):
            raise ValueError(f"--aux implies --fallback aux, got --fallback {fallback}")
        fallback = "aux"
    if fallback == "aux" and args.aux is None:
        raise ValueError("--fallback aux needs an auxiliary model: pass --aux AUX.pt")
    if fallback is not None:
        params["fallback"] = fallback
    return params


FLOAT32_NOTE = (
    "note: the ECSE forces of a float32 model carry the rounding of its total "
    "energies through the frame weights (about 5e-5 eV/Å for a -4200 eV molecule); "
    "for a PET checkpoint, `metatrain-pet ecse MODEL.ckpt` averages before the "
    "composition baseline and keeps the raw model's float32 accuracy"
)


def _symmetrized_export(args: argparse.Namespace, preset: str, params: Dict[str, Any]):
    """An exported model wrapped by :func:`~.wrapper.symmetrize`."""

    from .wrapper import symmetrize

    model = load_exported_model(args.model, args.extensions_directory)
    if model.capabilities().dtype == "float32":
        print(FLOAT32_NOTE, file=sys.stderr)
    aux_model = None
    if args.aux is not None:
        aux_model = load_exported_model(args.aux, args.extensions_directory)
    return symmetrize(model, aux_model=aux_model, preset=preset, **params)


def symmetrized_checkpoint(
    path: str, preset: str, params: Dict[str, Any], dtype: Optional[str] = None
):
    """A checkpoint of an architecture with built-in ECSE (``model: ecse:``),
    exported with ECSE enabled as ``preset`` and the parameters say, in ``dtype``
    when given. ``r_out`` defaults to the model's cutoff (the smallest R_out of App.
    F.3), and ``fallback`` of the ``layerwise`` mode to ``adaptive`` (every atom
    needs frames) unless the preset sets one."""
    import torch
    from metatrain.utils.io import model_from_checkpoint

    from .hypers import resolve_ecse_hypers, resolve_layerwise_hypers

    checkpoint = read_archive(
        path, lambda file: torch.load(file, weights_only=False, map_location="cpu")
    )
    name = checkpoint.get("architecture_name")
    if name != "experimental.pet_ecse":
        raise ValueError(
            f"{path} is a checkpoint of '{name}', which has no built-in ECSE: export "
            "it with `mtt export` and symmetrize the .pt with mode 'global' or "
            "'per_atom'"
        )
    model = model_from_checkpoint(checkpoint, context="export")
    checkpoint = model.get_checkpoint()
    hypers = checkpoint["model_data"]["model_hypers"]
    params = {"r_out": hypers["cutoff"], **params}
    if params.get("mode") == "layerwise":
        config = resolve_layerwise_hypers(preset, **params)
    else:
        config = resolve_ecse_hypers(None, preset, **params)
    config["enable"] = True
    hypers["ecse"] = config
    model = model_from_checkpoint(checkpoint, context="export")
    if dtype is not None:
        model = model.to(getattr(torch, dtype))
    return model.export()
