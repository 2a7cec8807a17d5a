"""PNG of the symmetry error against the averaging grid order.

Mirrors Supp. Fig. 1 (force error against grid size) and Fig. 1b (torque against grid
size) of Langer, Pozdnyakov and Ceriotti, "Probing the effects of broken symmetries in
machine learning" (2024), from the ``convergence`` part of a symmetry report.
"""

from pathlib import Path

from ..plots import matplotlib_pyplot


def plot_convergence(report: dict, path: Path) -> None:
    """Write the error of each coarse grid (and of the raw model) to ``path``."""
    if len(report["convergence"]) == 0:
        raise ValueError("the report has no convergence data to plot")
    pyplot = matplotlib_pyplot()

    orders = [row["order"] for row in report["convergence"]]
    reference_order = report["reference_order"]
    quantities = [
        ("force_mae", "<|F - F_ref|> (meV/Å)", report["summary"]["grid"]["force_mae"]),
        ("energy_mae", "<|E - E_ref|> (meV)", report["summary"]["grid"]["energy_mae"]),
    ]
    if report["torque"]["raw"] is not None:
        quantities.append(("torque", "<|torque|> (meV)", report["torque"]["raw"]))

    figure, axes = pyplot.subplots(
        1, len(quantities), figsize=(4 * len(quantities), 3.5), squeeze=False
    )
    for axis, (key, label, raw_value) in zip(axes[0], quantities, strict=True):
        x_values = list(orders)
        values = [row[key] for row in report["convergence"]]
        if key == "torque":
            # the torque needs no reference: show the reference grid's own value
            x_values.append(reference_order)
            values.append(report["torque"]["grid"])
        axis.plot(x_values, values, "o-", label="grid average")
        axis.axhline(raw_value, color="tab:red", linestyle="--", label="raw model")
        axis.set_yscale("log")
        axis.set_xlabel("grid order L")
        axis.set_ylabel(label)
        axis.set_xticks(x_values)
    axes[0][0].legend()
    figure.suptitle(f"Symmetry error against the order-{reference_order} grid")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
