"""How fast the forces that ECSE adds change along an MD trajectory: the power
spectrum of G = F_ECSE - F_raw, the difference between a symmetrized model's forces
and the raw model's, at every step of the raw model's ASE trajectory.

Velocity Verlet conserves the energy of a surface whose forces vary slowly on the
scale of a time step. A raw PET's forces have almost no power above 0.3 fs⁻¹ (the
O-H stretch of water is at 0.11 fs⁻¹). If a symmetrized model heats in NVE while
its raw model does not, this script says whether its extra forces G carry power
near the Nyquist frequency 1/(2 dt), the signature of features narrower than a
step, and which (step, atom) events carry it (largest |G(n+1) - 2G(n) + G(n-1)|).
Both models are evaluated at the same positions, so their difference is the
symmetrization's alone.

    python benchmarks/force_spectrum.py raw.pt lw.pt lw-no-pruning.pt --seed 1 \\
        --steps 300

The trajectory starts as ``engines.py --engines ase`` does for the raw model
(same warm-up and velocities). Step 0 here is the state before the first recorded
step, so step n is step n - 1 of ``engines.py --save-energies`` and of
``md_path.py``, which can look at an event closely.
"""

import argparse

import numpy as np
import torch

from engines import ase_dynamics, attach_model, load_system

BANDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
"""Lower edges of the frequency bands (fs⁻¹); the last ends at the Nyquist one."""


def raw_trajectory(model, system, seed, timestep_fs, steps):
    """Atoms, (steps + 1, atoms, 3) positions and forces of the raw model's NVE
    trajectory: the state after the warm-up, then every step."""
    atoms = load_system(system)
    dynamics = ase_dynamics(model, atoms, timestep_fs, "cpu", seed)
    positions, forces = [atoms.get_positions()], [atoms.get_forces()]

    def record():
        positions.append(atoms.get_positions())
        forces.append(atoms.get_forces())

    dynamics.attach(record, interval=1)
    dynamics.run(steps)
    return atoms, np.array(positions[: steps + 1]), np.array(forces[: steps + 1])


def forces_along(model, atoms, positions):
    """(steps, atoms, 3) forces of ``model`` at every saved set of positions."""
    attach_model(atoms, model, "cpu")
    forces = []
    for frame in positions:
        atoms.set_positions(frame)
        forces.append(atoms.get_forces())
    return np.array(forces)


def band_shares(series, timestep_fs):
    """Share of the power of ``series`` (steps, ...) in each band of ``BANDS``,
    after removing its mean over the steps."""
    centred = series - series.mean(axis=0)
    power = np.abs(np.fft.rfft(centred, axis=0)) ** 2
    power = power.reshape(len(power), -1).sum(axis=1)
    frequencies = np.fft.rfftfreq(len(series), d=timestep_fs)
    edges = list(BANDS) + [np.inf]
    total = max(power.sum(), np.finfo(float).tiny)
    return [
        power[(frequencies >= low) & (frequencies < high)].sum() / total
        for low, high in zip(edges[:-1], edges[1:])
    ]


def largest_events(differences, count):
    """(step, atom, |second difference|) of the ``count`` largest |G(n+1) - 2G(n)
    + G(n-1)| over steps n and atoms."""
    second = differences[2:] - 2 * differences[1:-1] + differences[:-2]
    norms = np.linalg.norm(second, axis=2)
    flat = np.argsort(norms, axis=None)[::-1][:count]
    steps, atoms = np.unravel_index(flat, norms.shape)
    return [(int(s) + 1, int(a), float(norms[s, a])) for s, a in zip(steps, atoms)]


def report(name, differences, raw_forces, numbers, timestep_fs, events):
    """Print the spectrum of G and of the raw forces per element, then the events."""
    header = " ".join(f"{low:>5.2f}+" for low in BANDS)
    print(f"# {name}: share of the power per band (fs^-1) {header}")
    for element in np.unique(numbers):
        mask = numbers == element
        size = np.linalg.norm(differences[:, mask], axis=2).mean()
        for label, series in (("G", differences), ("raw F", raw_forces)):
            shares = " ".join(
                f"{s:6.3f}" for s in band_shares(series[:, mask], timestep_fs)
            )
            print(f"Z={element:<3d} {label:>6s}  {shares}")
        print(f"Z={element:<3d} mean |G| {size:.4f} eV/A")
    for step, atom, norm in largest_events(differences, events):
        print(f"  step {step:5d} atom {atom:4d} (Z={numbers[atom]}) |d2G| {norm:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", help="exported raw model, runs the trajectory")
    parser.add_argument("models", nargs="+", help="symmetrized models to compare")
    parser.add_argument("--system", choices=["ethanol", "water"], default="water")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--events", type=int, default=5, help="events to print")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    atoms, positions, raw_forces = raw_trajectory(
        args.raw, args.system, args.seed, args.timestep, args.steps
    )
    for model in args.models:
        differences = forces_along(model, atoms, positions) - raw_forces
        report(
            model, differences, raw_forces, atoms.numbers, args.timestep, args.events
        )


if __name__ == "__main__":
    main()
