"""Energy drift and cost per MD step of an exported model in each metatomic engine,
for the raw model and its ECSE-symmetrized version.

    python examples/ipi/prepare.py          # writes model.pt (tiny, untrained)
    python benchmarks/engines.py model.pt --steps 1000

Engines: ASE (``metatomic_ase`` + velocity Verlet), i-PI (in-process ``metatomic``
PES, NVE), TorchSim (``metatomic_torchsim``, NVE; when installed) and the C++
loading path of LAMMPS (``examples/cpp``; single-point cost only, pass
``--cpp-program``). All MD starts at 300 K from the first frame of
tests/data/ethanol_40.xyz (gas phase) or tests/data/water64_2.xyz (periodic).

drift: slope of a line fitted to the total energy, eV/atom/ps.
error: RMS deviation of the total energy from its initial value, eV/atom.
ms/step: wall time per MD step (per evaluation for C++), after 5 warm-up steps.
closest/A: ASE and i-PI, the smallest distance between two atoms over the
trajectory (its computation is left out of ms/step).
A drift says nothing of the model where this falls well below the start's (0.92 A
for the water box, 0.96 for ethanol): the trajectory has left the region the model
was trained on (atoms passing through each other), as the small water PETs of
``benchmarks/results/layerwise_md_water*`` do within 30 fs.

Over 0.5 ps the fitted slope is dominated by the fluctuations of the total energy,
so one trajectory does not resolve a drift of 1e-5 eV/atom/ps; ``--seeds`` runs one
trajectory per seed of the initial velocities and adds a summary line per case:
the mean drift with its standard error, and the root mean square of the drifts
(the typical size of the drift, whether systematic or not).

A long ASE trajectory can be computed over several runs: with ``--save-energies
DIR``, the state of each trajectory (positions, momenta, energies so far) is saved
beside its energies every 20 steps, and ``--resume`` continues from it (the
energies are those of one uninterrupted run, to the last bit).
"""

import argparse
import functools
import inspect
import os
import subprocess
import tempfile
import time
from pathlib import Path

import ase.io
import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.neighborlist import neighbor_list
from metatomic.torch import load_atomistic_model
from metatomic_ase import MetatomicCalculator

from metatrain_pet.files import write_atomically
from metatrain_pet.runtime import set_lean_forces

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
WARMUP_STEPS = 5
SAVE_EVERY = 20
GAS_PHASE_BOX = 30.0
CLOSEST_SEARCH = 2.0
"""Largest distance (A) that ``closest_distance`` looks for."""


def load_system(name):
    if name == "ethanol":
        atoms = ase.io.read(DATA / "ethanol_40.xyz", 0)
        atoms.cell = [0.0, 0.0, 0.0]
        atoms.pbc = False
    else:
        atoms = ase.io.read(DATA / "water64_2.xyz", 0)
    atoms.calc = None
    return atoms


def drift_and_error(total_energies, n_atoms, timestep_fs):
    steps = np.arange(len(total_energies))
    slope_per_step = np.polyfit(steps, total_energies, 1)[0]
    drift = slope_per_step / n_atoms / (timestep_fs * 1e-3)
    error = np.sqrt(np.mean((total_energies - total_energies[0]) ** 2)) / n_atoms
    return drift, error


def drift_statistics(drifts):
    """Mean drift over trajectories, its standard error, and the root mean square
    of the drifts."""
    drifts = np.asarray(drifts)
    standard_error = drifts.std(ddof=1) / np.sqrt(len(drifts))
    return drifts.mean(), standard_error, np.sqrt(np.mean(drifts**2))


def closest_distance(atoms):
    """The smallest distance between two atoms (minimum image), or
    ``CLOSEST_SEARCH`` when no two are closer."""
    distances = neighbor_list("d", atoms, CLOSEST_SEARCH)
    return float(distances.min()) if len(distances) > 0 else CLOSEST_SEARCH


def timed_closest_distance(structure, seconds):
    """:func:`closest_distance` of the atoms that ``structure()`` returns, the time
    both take added to ``seconds[0]`` so that the engines' time per step leaves
    them out (~4 ms for the water box)."""
    start = time.perf_counter()
    distance = closest_distance(structure())
    seconds[0] += time.perf_counter() - start
    return distance


def add_seeds_argument(parser):
    """``--seeds``: the seeds of the initial velocities, one trajectory each."""
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="seeds of the initial velocities: one trajectory each",
    )


def run_seeds(
    run, model_path, atoms, steps, timestep_fs, device, seeds, prefix, save=None
):
    """One trajectory of ``run`` (an engine's ``run_...`` function) from ``atoms``
    per seed of the initial velocities: a row per seed after ``prefix``, and for
    several seeds a summary row of the drifts. With ``save`` (a path without
    suffix), the total energies of each trajectory go to ``{save}_seed{seed}.txt``
    (eV, one per step), rewritten every ``SAVE_EVERY`` steps by ASE so that a
    trajectory stopped early keeps what it computed. ``run`` returns the total
    energies, the seconds per step and the closest approach of two atoms at every
    step (``None`` when the engine does not give it)."""
    drifts = []
    saves_as_it_goes = "save" in inspect.signature(run).parameters
    for seed in seeds:
        path = None if save is None else f"{save}_seed{seed}.txt"
        partial = {"save": path} if saves_as_it_goes else {}
        energies, seconds, closest = run(
            model_path, atoms.copy(), steps, timestep_fs, device, seed, **partial
        )
        if path is not None:
            save_energies(path, energies)
        drift, error = drift_and_error(energies, len(atoms), timestep_fs)
        drifts.append(drift)
        closest = "-" if closest is None else f"{np.nanmin(closest):.3f}"
        print(
            f"{prefix} {seed:4d} {drift:17.3e} {error:14.3e} {1e3 * seconds:9.1f} "
            f"{closest:>9}",
            flush=True,
        )
    if len(drifts) > 1:
        mean, standard_error, rms = drift_statistics(drifts)
        print(
            f"{prefix}  all mean {mean:.3e} ± {standard_error:.1e}, "
            f"RMS {rms:.3e} eV/atom/ps over {len(drifts)} seeds",
            flush=True,
        )


def ase_dynamics(model_path, atoms, timestep_fs, device, seed=0, lean_above=None):
    """ASE velocity Verlet of ``atoms`` with the model, velocities drawn at 300 K
    from ``seed``, after the warm-up steps: the start of every ASE trajectory."""
    attach_model(atoms, model_path, device, lean_above)
    thermalize_momenta(atoms, 300.0, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dynamics.run(WARMUP_STEPS)
    return dynamics


def attach_model(atoms, model_path, device, lean_above=None):
    """The exported model as the calculator of ``atoms``."""
    model = load_atomistic_model(str(model_path))
    if lean_above is not None:
        set_lean_forces(model, lean_above)
    atoms.calc = MetatomicCalculator(model, device=device)


def save_energies(path, energies):
    """Total energies (eV, one per line) to ``path``, written atomically."""
    write_atomically(path, functools.partial(np.savetxt, X=np.asarray(energies)))


def run_ase(
    model_path,
    atoms,
    steps,
    timestep_fs,
    device,
    seed=0,
    lean_above=None,
    save=None,
    resume=False,
):
    """With ``save``, the energies so far are written there every ``SAVE_EVERY``
    steps, and the state of the trajectory beside them (``save_trajectory``); with
    ``resume`` too, a trajectory whose state is there continues from it, so that a
    long trajectory can be computed over several runs."""
    state = None if save is None else Path(save).with_suffix(".state.npz")
    run = (Path(model_path).name, str(timestep_fs), str(seed))
    if resume and state is not None and state.exists():
        dynamics, energies, closest = resumed_dynamics(
            state, run, model_path, atoms, timestep_fs, device, lean_above
        )
    else:
        dynamics = ase_dynamics(
            model_path, atoms, timestep_fs, device, seed, lean_above
        )
        energies, closest = [], []
    done = len(energies)
    bookkeeping = [0.0]

    def record():
        energies.append(atoms.get_total_energy())
        closest.append(timed_closest_distance(lambda: atoms, bookkeeping))

    dynamics.attach(record, interval=1)
    if save is not None:
        keep = functools.partial(
            save_trajectory, save, state, run, dynamics, energies, closest
        )
        dynamics.attach(keep, interval=SAVE_EVERY)
    start = time.perf_counter()
    dynamics.run(max(steps - done, 0))
    elapsed = time.perf_counter() - start - bookkeeping[0]
    return np.array(energies), elapsed / max(steps - done, 1), np.array(closest)


def save_trajectory(save, state, run, dynamics, energies, closest):
    """The energies so far to ``save`` and, to ``state``, what continuing the
    trajectory needs: positions, momenta, step count, energies and closest
    approaches, and the (model, timestep, seed) it was run with (both files
    written atomically)."""
    save_energies(save, energies)

    def write(path):
        with open(path, "wb") as file:
            np.savez(
                file,
                positions=dynamics.atoms.get_positions(),
                momenta=dynamics.atoms.get_momenta(),
                nsteps=dynamics.nsteps,
                energies=np.asarray(energies),
                closest=np.asarray(closest),
                run=np.array(run),
            )

    write_atomically(state, write)


def resumed_dynamics(state, run, model_path, atoms, timestep_fs, device, lean_above):
    """ASE velocity Verlet continuing the trajectory saved in ``state`` by
    ``save_trajectory``, its energies and closest approaches so far (NaN for the
    steps of a state saved before these were recorded); a clear error if that
    trajectory was run with another (model, timestep, seed) ``run`` or system."""
    saved = np.load(state)
    saved_run = tuple(str(field) for field in saved["run"])
    if saved_run != run or len(saved["positions"]) != len(atoms):
        raise ValueError(
            f"{state} holds a trajectory of (model, timestep, seed) = "
            f"{saved_run} with {len(saved['positions'])} atoms, not "
            f"{run} with {len(atoms)}: remove it or choose another --save-energies"
        )
    attach_model(atoms, model_path, device, lean_above)
    atoms.set_positions(saved["positions"])
    atoms.set_momenta(saved["momenta"])
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    dynamics.nsteps = int(saved["nsteps"])
    energies = list(saved["energies"])
    closest = saved["closest"] if "closest" in saved else np.full(len(energies), np.nan)
    return dynamics, energies, list(closest)


def run_ipi(model_path, atoms, steps, timestep_fs, device, seed=0):
    from ipi.scripting import (
        InteractiveSimulation,
        forcefield_xml,
        simulation_xml,
    )

    if not atoms.pbc.any():
        atoms.cell = np.eye(3) * GAS_PHASE_BOX
        atoms.pbc = True
        atoms.center()
    motion = (
        "<motion mode='dynamics'><dynamics mode='nve'>"
        f"<timestep units='femtosecond'> {timestep_fs} </timestep>"
        "</dynamics></motion>"
    )
    with tempfile.TemporaryDirectory() as directory:
        cwd = os.getcwd()
        os.chdir(directory)
        try:
            ase.io.write("template.xyz", atoms)
            forcefield = forcefield_xml(
                "metatomic",
                mode="direct",
                pes="metatomic",
                parameters={
                    "template": "template.xyz",
                    "model": str(model_path),
                    "device": device,
                },
            )
            xml = simulation_xml(atoms, forcefield, motion, temperature=300)
            seeded = f"<prng><seed> {seed} </seed></prng>{forcefield}"
            simulation = InteractiveSimulation(xml.replace(forcefield, seeded, 1))
            simulation.run(WARMUP_STEPS)
            energies, closest, bookkeeping = [], [], [0.0]

            def structure():
                current = simulation.get_structures()
                current.pbc = True
                return current

            start = time.perf_counter()
            for _ in range(steps):
                simulation.run(1)
                energies.append(simulation.properties("conserved"))
                closest.append(timed_closest_distance(structure, bookkeeping))
            elapsed = time.perf_counter() - start - bookkeeping[0]
        finally:
            os.chdir(cwd)
    return np.array(energies), elapsed / steps, np.array(closest)


def run_torchsim(model_path, atoms, steps, timestep_fs, device, seed=0):
    import torch_sim
    from metatomic_torchsim import MetatomicModel

    femtosecond = 1e-3 * torch_sim.units.MetalUnits.time
    kelvin = torch_sim.units.MetalUnits.temperature
    model = MetatomicModel(str(model_path), device=device)
    state = torch_sim.io.atoms_to_state(
        [atoms], device=torch.device(device), dtype=torch.float64
    )
    initialize, step = torch_sim.integrators.nve(
        model,
        dt=torch.tensor(timestep_fs * femtosecond),
        kT=torch.tensor(300.0 * kelvin),
        seed=seed,
    )
    state = initialize(state)
    for _ in range(WARMUP_STEPS):
        state = step(state)

    energies = []
    start = time.perf_counter()
    for _ in range(steps):
        state = step(state)
        kinetic = torch_sim.quantities.calc_kinetic_energy(
            masses=state.masses, momenta=state.momenta
        )
        energies.append((state.energy + kinetic).item())
    elapsed = time.perf_counter() - start
    return np.array(energies), elapsed / steps, None


def cpp_ms_per_evaluation(program, model_path, atoms, steps, device):
    with tempfile.TemporaryDirectory() as directory:
        structure = Path(directory) / "structure.txt"
        lines = [str(len(atoms))]
        lines.append(
            " ".join(repr(value) for value in atoms.cell.array.ravel().tolist())
        )
        lines.append(" ".join(str(int(periodic)) for periodic in atoms.pbc))
        for number, position in zip(atoms.numbers.tolist(), atoms.positions.tolist()):
            lines.append(f"{number} " + " ".join(repr(value) for value in position))
        structure.write_text("\n".join(lines) + "\n")
        output = subprocess.run(
            [
                program,
                model_path,
                structure,
                "--device",
                device,
                "--repeat",
                str(steps),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    line = next(line for line in output.splitlines() if line.startswith("ms_per_"))
    return float(line.split()[1])


ENGINES = {"ase": run_ase, "ipi": run_ipi, "torchsim": run_torchsim}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="exported (raw) metatomic model, .pt")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument(
        "--ecse-steps",
        type=int,
        default=None,
        help="steps for the ECSE model (default: --steps)",
    )
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--systems", nargs="+", default=["ethanol", "water"])
    parser.add_argument("--variants", nargs="+", default=["raw", "ecse"])
    parser.add_argument(
        "--ecse-systems",
        nargs="+",
        default=["ethanol"],
        help="systems for the ECSE model (expensive on CPU)",
    )
    parser.add_argument("--engines", nargs="+", default=["ase", "ipi", "torchsim"])
    parser.add_argument("--cpp-program", help="built examples/cpp metatomic-evaluate")
    parser.add_argument(
        "--ecse-preset",
        default="tight",
        help="ECSE preset; the mode is per_atom for the periodic box, global else",
    )
    parser.add_argument("--ecse-r-out", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--lean-forces-above",
        type=int,
        default=None,
        help="ASE only: tokens above which our PET uses lean forces "
        "(metatrain_pet.runtime.set_lean_forces; 0: always, -1: never)",
    )
    parser.add_argument(
        "--save-energies",
        default=None,
        help="folder for the total energies of every trajectory "
        "(ENGINE_VARIANT_SYSTEM_seedN.txt; ASE rewrites them every "
        f"{SAVE_EVERY} steps, the other engines at the end)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="ASE only, with --save-energies: continue each trajectory from the "
        "state saved beside its energies (...seedN.state.npz) by an earlier run",
    )
    add_seeds_argument(parser)
    args = parser.parse_args()
    engines = dict(ENGINES)
    engines["ase"] = functools.partial(
        run_ase, lean_above=args.lean_forces_above, resume=args.resume
    )

    torch.set_num_threads(args.threads)
    raw_path = Path(args.model).resolve()
    models = {"raw": {system: raw_path for system in args.systems}}
    if "ecse" in args.variants:
        from metatrain_pet.ecse import symmetrize

        directory = Path(tempfile.mkdtemp())
        models["ecse"] = {}
        for system in args.ecse_systems:
            models["ecse"][system] = directory / f"ecse-{system}.pt"
            symmetrize(
                load_atomistic_model(str(raw_path)),
                preset=args.ecse_preset,
                r_out=args.ecse_r_out,
                mode="per_atom" if load_system(system).pbc.any() else "global",
            ).save(str(models["ecse"][system]))

    print(
        f"{'engine':9} {'model':5} {'system':8} {'steps':>6} {'seed':>4} "
        f"{'drift/eV/atom/ps':>17} {'error/eV/atom':>14} {'ms/step':>9} "
        f"{'closest/A':>9}"
    )
    for variant in args.variants:
        systems = args.systems if variant == "raw" else args.ecse_systems
        steps = args.steps if variant == "raw" else (args.ecse_steps or args.steps)
        for system in systems:
            for engine in args.engines:
                if engine == "torchsim":
                    try:
                        import metatomic_torchsim  # noqa: F401
                    except ImportError:
                        continue
                save = None
                if args.save_energies is not None:
                    Path(args.save_energies).mkdir(parents=True, exist_ok=True)
                    save = Path(args.save_energies) / f"{engine}_{variant}_{system}"
                run_seeds(
                    engines[engine],
                    models[variant][system],
                    load_system(system),
                    steps,
                    args.timestep,
                    args.device,
                    args.seeds,
                    f"{engine:9} {variant:5} {system:8} {steps:6d}",
                    save,
                )
            if args.cpp_program:
                milliseconds = cpp_ms_per_evaluation(
                    args.cpp_program,
                    models[variant][system],
                    load_system(system),
                    steps,
                    args.device,
                )
                print(
                    f"{'cpp':9} {variant:5} {system:8} {steps:6d} {'-':>4} "
                    f"{'-':>17} {'-':>14} {milliseconds:9.1f} {'-':>9}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
