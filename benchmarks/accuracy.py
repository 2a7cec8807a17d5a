"""Accuracy at equal budget: ours with its defaults, metatrain's ``pet`` with *its*
defaults (what a user would otherwise pick) and metatrain's ``pet`` at our sizes
(``matched_hypers.py``), each trained by its own trainer for the same CPU time by
``learning_curve.py`` (one process per model, one thread each, ``jobs`` at once).

Called by ``run.py --sections accuracy``; lines ``accuracy/<dataset>/<budget>s/...``
compare ours with the peer's defaults (``peer``) and, under ``.../matched/...``,
with the peer at matched sizes, ``.../so3krates/...`` with So3krates (``so3krates.py``,
on the molecule only, when asked for). Learning curves (test force MAE against CPU time)
are written as ``accuracy_<dataset>_<budget>s.png``.
"""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ase.io
from matched_hypers import OURS, PEER, matched_hypers

HERE = Path(__file__).resolve().parent
SO3KRATES = "so3krates"

# label -> (train file, number of training structures, test file, number of test
# structures, batch size); a water64 box has 192 atoms, so fewer of them fill an
# epoch, and batches of 4 (for both architectures) give a few optimisation steps
# per epoch instead of one
FULL_DATASETS = {
    "rmd17_ethanol": (
        "rmd17/ethanol_train_01.xyz",
        200,
        "rmd17/ethanol_test_01.xyz",
        100,
        16,
    ),
    "water64": ("water/water64_train.xyz", 32, "water/water64_val.xyz", 16, 4),
}
QUICK_DATASETS = {
    "ethanol40": ("ethanol_40.xyz", 32, "ethanol_40.xyz", 8, 8),
    "water64_2": ("water64_2.xyz", 2, "water64_2.xyz", 2, 2),
}


def contenders(sizes: dict) -> dict:
    """label -> (architecture, model overrides) of the three models compared.
    Empty ``sizes``: each architecture's defaults; otherwise (``--quick``) both
    defaults shrunk to these widths."""
    matched = matched_hypers(**sizes)
    return {
        "ours": (OURS, sizes),
        "peer": (PEER, dict(sizes, d_node=sizes["d_pet"]) if sizes else {}),
        "peer_matched": (PEER, matched[PEER]),
    }


def _so3krates(job: dict) -> dict:
    """So3krates (``so3krates.py``, its own trainer and virtualenv), with its
    results in the keys of ``learning_curve.py`` (energies per atom)."""
    command = [
        sys.executable,
        str(HERE / "so3krates.py"),
        "--train", str(job["train"]),
        "--n-train", str(job["n_train"]),
        "--test", str(job["test"]),
        "--n-test", str(job["n_test"]),
        "--budget-s", str(job["budget_s"]),
        "--threads", "1",
        "--out", str(job["out"]),
    ]  # fmt: skip
    result = _run_once(command, job)
    n_atoms = job["atoms_per_structure"]
    for point in result["curve"]:
        point["energy MAE (per atom)"] = point.pop("energy_mae") / n_atoms
        point["energy_positions_gradients MAE"] = point.pop("forces_mae")
    result.update(
        energy_mae=result["energy_mae_ev"] / n_atoms,
        forces_mae=result["forces_mae_ev_per_a"],
        rotational_spread_mev=0.0,  # equivariant by construction
    )
    return result


def _run_once(command: list, job: dict) -> dict:
    """Run ``command`` unless its output file exists; return the JSON it wrote."""
    if not Path(job["out"]).exists():
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(command[1]).name} failed for {job['label']}:\n"
                f"{result.stderr[-3000:]}"
            )
    return json.loads(Path(job["out"]).read_text())


def _learning_curve(job: dict) -> dict:
    if job["arch"] == SO3KRATES:
        return _so3krates(job)
    command = [
        sys.executable,
        str(HERE / "learning_curve.py"),
        "--arch", job["arch"],
        "--train", str(job["train"]),
        "--n-train", str(job["n_train"]),
        "--test", str(job["test"]),
        "--n-test", str(job["n_test"]),
        "--budget-s", str(job["budget_s"]),
        "--batch-size", str(job["batch_size"]),
        "--model", json.dumps(job["model"]),
        "--threads", "1",
        "--spread-structures", str(job["spread_structures"]),
        "--out", str(job["out"]),
    ]  # fmt: skip
    return _run_once(command, job)


def run(
    data_dir: Path,
    datasets: dict,
    budgets,
    sizes,
    out: Path,
    jobs: int,
    labels=("ours", "peer", "peer_matched", SO3KRATES),
):
    """Train the contenders named in ``labels`` on every dataset for every budget
    (So3krates on molecules only); returns
    ``{(dataset, budget): {label: learning-curve result}}``."""
    out.mkdir(parents=True, exist_ok=True)
    queue = []
    for dataset, (train, n_train, test, n_test, batch_size) in datasets.items():
        n_atoms = len(ase.io.read(data_dir / train, 0))
        models = contenders(sizes)
        if n_atoms < 100:
            models[SO3KRATES] = (SO3KRATES, {})
        models = {label: models[label] for label in labels if label in models}
        for budget in budgets:
            for label, (arch, model) in models.items():
                queue.append(
                    {
                        "key": (dataset, budget),
                        "label": label,
                        "arch": arch,
                        "model": model,
                        "train": data_dir / train,
                        "n_train": n_train,
                        "test": data_dir / test,
                        "n_test": n_test,
                        "batch_size": batch_size,
                        "budget_s": budget,
                        "spread_structures": min(n_test, 10),
                        "atoms_per_structure": n_atoms,
                        "out": out / f"{dataset}_{budget:g}s_{label}.json",
                    }
                )
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(_learning_curve, queue))
    table: dict = {}
    for job, result in zip(queue, results, strict=True):
        table.setdefault(job["key"], {})[job["label"]] = result
    return table


def plot(table: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for (dataset, budget), results in table.items():
        figure, axis = plt.subplots(figsize=(5, 3.5))
        for label, result in results.items():
            curve = result["curve"]
            axis.plot(
                [point["cpu_s"] / 60 for point in curve],
                [1e3 * _forces(point) for point in curve],
                label=label,
            )
        axis.set_xlabel("CPU minutes (one thread)")
        axis.set_ylabel("test force MAE (meV/Å)")
        axis.set_title(f"{dataset}, {budget:g} s")
        axis.legend()
        figure.tight_layout()
        figure.savefig(out / f"accuracy_{dataset}_{budget:g}s.png", dpi=120)
        plt.close(figure)


def _forces(point: dict) -> float:
    return next(v for k, v in point.items() if "gradients MAE" in k)
