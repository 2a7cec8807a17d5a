"""Multiple time steps with direct forces against the conservative model alone, in
i-PI (``docs/engines/ipi-mts.xml``): energy drift and CPU time per femtosecond.

    OMP_NUM_THREADS=1 python benchmarks/mts.py --model model.pt \\
        --structure tests/data/ethanol_40.xyz --femtoseconds 200

``model.pt`` needs an energy and a ``non_conservative_force`` output. Three NVE
runs of the same length from the same start (300 K, fixed seed): MTS (2 fs outer
step with the slow force F_conservative - F_direct, 4 inner steps of 0.5 fs with
F_direct), and the conservative forces alone at 0.5 fs and at 2 fs. Lines
``mts/<run>/{drift_ev_per_atom,max_deviation_ev_per_atom,cpu_s_per_fs}``: the
slope of the conserved energy (least squares, eV/atom/ps), its largest deviation
from the start, and the CPU time per simulated femtosecond.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np

MTS_INPUT = Path(__file__).resolve().parents[1] / "docs" / "engines" / "ipi-mts.xml"

CONSERVATIVE_ONLY = (
    "<force forcefield='direct'> <mts_weights> [-1, 1] </mts_weights> </force>",
    "<force forcefield='conservative'> <mts_weights> [1, 0] </mts_weights> </force>",
    "<nmts> [1, 4] </nmts>",
)


def run(xml: str, femtoseconds: float, timestep: float, n_atoms: int) -> dict:
    from ipi.scripting import InteractiveSimulation

    simulation = InteractiveSimulation(xml)
    steps = int(round(femtoseconds / timestep))
    conserved = []
    start = time.process_time()
    for _ in range(steps):
        simulation.run(1)
        conserved.append(simulation.properties("conserved"))
    cpu = time.process_time() - start
    conserved = (np.array(conserved) - conserved[0]) / n_atoms
    times_ps = np.arange(1, steps + 1) * timestep / 1000
    return {
        "drift_ev_per_atom": float(np.polyfit(times_ps, conserved, 1)[0]),
        "max_deviation_ev_per_atom": float(np.abs(conserved).max()),
        "cpu_s_per_fs": cpu / femtoseconds,
    }


def inputs(model: Path) -> dict:
    """The i-PI inputs of the three runs, and their outer time steps (fs)."""
    mts = MTS_INPUT.read_text().replace("model.pt", str(model))
    direct, conservative, nmts = CONSERVATIVE_ONLY
    alone = mts.replace(direct, "").replace(conservative, "<force "
                        "forcefield='conservative'/>").replace(nmts, "")  # fmt: skip
    short = alone.replace(
        "<timestep units='femtosecond'> 2.0 </timestep>",
        "<timestep units='femtosecond'> 0.5 </timestep>",
    )
    return {"mts_2fs_x4": (mts, 2.0), "conservative_0.5fs": (short, 0.5),
            "conservative_2fs": (alone, 2.0)}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--structure", type=Path, required=True)
    parser.add_argument("--femtoseconds", type=float, default=200.0)
    args = parser.parse_args()
    atoms = ase.io.read(args.structure, 0)
    if not atoms.pbc.any():  # i-PI treats every cell as periodic
        atoms.cell = np.eye(3) * 30.0
        atoms.pbc = True
        atoms.center()
    model = args.model.resolve()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        ase.io.write("template.xyz", atoms)
        for name, (xml, timestep) in inputs(model).items():
            result = run(xml, args.femtoseconds, timestep, len(atoms))
            for key, value in result.items():
                print(f"mts/{name}/{key}: {value:.4g}")


if __name__ == "__main__":
    main()
