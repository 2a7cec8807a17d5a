"""The plots users would otherwise write each time (``metatrain-pet plot``):
learning curves from a training folder, parity plots of a model on a dataset,
and the conserved energy of an MD run. PNG files; matplotlib is the optional
``plot`` extra. Each function returns the figure it saved."""

import argparse
import csv
from pathlib import Path
from typing import Dict, List, Tuple


def matplotlib_pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or a clear error without it."""
    try:
        import matplotlib
    except ImportError as error:
        raise RuntimeError(
            "plots need matplotlib: pip install 'metatrain-pet[plot]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_training_log(path: Path) -> Tuple[Dict[str, List[float]], Dict[str, str]]:
    """Columns and units of metatrain's ``train.csv`` (a header row, a units row,
    one row per logged epoch)."""
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if len(rows) < 3:
        raise ValueError(f"{path} has no logged epoch (metatrain's train.csv?)")
    names = [name.strip() for name in rows[0]]
    units = dict(zip(names, (unit.strip() for unit in rows[1]), strict=False))
    columns: Dict[str, List[float]] = {name: [] for name in names}
    for row in rows[2:]:
        for name, value in zip(names, row, strict=False):
            columns[name].append(float(value))
    return columns, units


def learning_curve(train_csv: Path, output: Path):
    """Training and validation errors against the epoch, one panel per validation
    MAE column of ``train_csv`` (log scale)."""
    columns, units = read_training_log(train_csv)
    metrics = [name[len("validation ") :] for name in columns
               if name.startswith("validation ") and " MAE" in name]  # fmt: skip
    if not metrics:
        raise ValueError(f"{train_csv} has no validation MAE column")
    plt = matplotlib_pyplot()
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.5))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for axis, metric in zip(axes, metrics, strict=True):
        for split in ("training", "validation"):
            name = f"{split} {metric}"
            if name in columns:
                axis.plot(columns["Epoch"], columns[name], label=split)
        axis.set_yscale("log")
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{metric} ({units.get('validation ' + metric, '')})")
        axis.legend()
    return _save(figure, output)


def parity(model: Path, structures: Path, output: Path, extensions=None):
    """Predicted against reference energies (per atom) and force components of
    ``model`` on every structure of ``structures`` (references read by ASE)."""
    import ase.io
    import numpy as np
    from metatomic_ase import MetatomicCalculator

    calculator = MetatomicCalculator(str(model), extensions_directory=extensions)
    reference, predicted = {"energy": [], "forces": []}, {"energy": [], "forces": []}
    for atoms in ase.io.read(structures, ":"):
        reference["energy"].append(atoms.get_potential_energy() / len(atoms))
        reference["forces"].append(atoms.get_forces().ravel())
        atoms.calc = calculator
        predicted["energy"].append(atoms.get_potential_energy() / len(atoms))
        predicted["forces"].append(atoms.get_forces().ravel())
    plt = matplotlib_pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(9, 4))
    labels = {"energy": "energy per atom (eV)", "forces": "force component (eV/Å)"}
    for axis, name in zip(axes, ("energy", "forces"), strict=True):
        x, y = np.hstack(reference[name]), np.hstack(predicted[name])
        axis.plot(x, y, ".", markersize=3)
        low, high = min(x.min(), y.min()), max(x.max(), y.max())
        axis.plot([low, high], [low, high], "k--", linewidth=0.8)
        axis.set_xlabel(f"reference {labels[name]}")
        axis.set_ylabel(f"predicted {labels[name]}")
        axis.set_title(f"MAE {np.abs(x - y).mean():.4g}")
    return _save(figure, output)


def read_md_log(path: Path) -> Tuple[List[float], List[float]]:
    """Times (ps) and conserved energies (eV) of an ASE ``MDLogger`` file or an
    i-PI properties file with ``time{picosecond}`` and ``conserved{electronvolt}``."""
    lines = Path(path).read_text().splitlines()
    if lines and lines[0].startswith("Time[ps]"):
        time_column, energy_column = 0, 1
        data = lines[1:]
    else:
        header = [line for line in lines if line.startswith("#")]
        names = [line.split("-->")[1].split(":")[0].strip() for line in header]
        if "time{picosecond}" not in names or "conserved{electronvolt}" not in names:
            raise ValueError(
                f"{path}: neither an ASE MD log nor i-PI properties with "
                "time{picosecond} and conserved{electronvolt}"
            )
        time_column = names.index("time{picosecond}")
        energy_column = names.index("conserved{electronvolt}")
        data = [line for line in lines if not line.startswith("#")]
    rows = [line.split() for line in data if line.strip()]
    times = [float(row[time_column]) for row in rows]
    return times, [float(row[energy_column]) for row in rows]


def energy_conservation(logs: List[Path], output: Path):
    """The conserved energy minus its first value against time, one line per log."""
    plt = matplotlib_pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for log in logs:
        times, energies = read_md_log(log)
        axis.plot(times, [1000 * (e - energies[0]) for e in energies], label=log.name)
    axis.set_xlabel("time (ps)")
    axis.set_ylabel("conserved energy - initial (meV)")
    axis.legend()
    return _save(figure, output)


def _save(figure, output: Path):
    figure.tight_layout()
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    return figure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot learning-curve | parity | conservation`` to ``subparsers``."""
    plot = subparsers.add_parser("plot", help="learning curves, parity, MD energy")
    kinds = plot.add_subparsers(dest="kind", required=True)
    curve = kinds.add_parser("learning-curve", help="from metatrain's train.csv")
    curve.add_argument("train_csv", type=Path)
    pair = kinds.add_parser("parity", help="a model against reference data")
    pair.add_argument("model", type=Path)
    pair.add_argument("structures", type=Path)
    md = kinds.add_parser("conservation", help="ASE MD logs or i-PI properties")
    md.add_argument("logs", type=Path, nargs="+")
    for parser in (curve, pair, md):
        parser.add_argument("-o", "--output", type=Path, required=True)
    plot.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> None:
    """Draw the plot asked for and save it."""
    inputs = {
        "learning-curve": lambda: [args.train_csv],
        "parity": lambda: [args.model, args.structures],
        "conservation": lambda: args.logs,
    }[args.kind]()
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"'{path}' does not exist")
    if args.kind == "learning-curve":
        learning_curve(args.train_csv, args.output)
    elif args.kind == "parity":
        parity(args.model, args.structures, args.output)
    else:
        energy_conservation(args.logs, args.output)
    print(f"wrote {args.output}")
