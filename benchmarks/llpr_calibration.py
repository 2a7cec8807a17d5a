"""Calibration of LLPR uncertainties (metatrain's ``llpr`` wrapper around our PET)
on a test set: is the predicted standard deviation the size of the actual error?

    python benchmarks/llpr_calibration.py model-llpr.pt \\
        ../shared/data/rmd17/ethanol_test_01.xyz --n 200

Prints, for the energies: MAE and RMSE, the RMS of the predicted σ (a calibrated
model has RMS σ ≈ RMSE), the fractions of errors within 1σ and 2σ (68 % and 95 %
for Gaussian errors), the rank correlation between |error| and σ, and the mean σ of
the same structures stretched by 10 % and 30 % (it must grow away from the data).
"""

import argparse

import ase.io
import numpy as np
from metatomic.torch import ModelOutput
from metatomic_ase import MetatomicCalculator

OUTPUTS = {
    "energy": ModelOutput(per_atom=False),
    "energy_uncertainty": ModelOutput(per_atom=False),
}


def predictions(calculator, frames):
    """(energies, σ) of ``frames``, in eV."""
    energies, sigmas = [], []
    for atoms in frames:
        results = calculator.run_model(atoms, OUTPUTS)
        energies.append(float(results["energy"].block().values))
        sigmas.append(float(results["energy_uncertainty"].block().values))
    return np.array(energies), np.array(sigmas)


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's ρ (no ties expected in continuous data)."""
    rank_a = np.argsort(np.argsort(a))
    rank_b = np.argsort(np.argsort(b))
    return float(np.corrcoef(rank_a, rank_b)[0, 1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="exported LLPR model (.pt)")
    parser.add_argument("structures", help="test structures with reference energies")
    parser.add_argument("--n", type=int, default=200, help="first N structures")
    parser.add_argument("--energy-key", default="energy")
    args = parser.parse_args()

    frames = ase.io.read(args.structures, f":{args.n}")
    # ASE moves an `energy` key into a single-point calculator
    reference = np.array([
        atoms.info[args.energy_key] if args.energy_key in atoms.info
        else atoms.get_potential_energy() for atoms in frames
    ])  # fmt: skip
    calculator = MetatomicCalculator(args.model)
    energies, sigmas = predictions(calculator, frames)
    errors = np.abs(energies - reference)
    lines = {
        "energy_mae_mev": 1000 * errors.mean(),
        "energy_rmse_mev": 1000 * np.sqrt((errors**2).mean()),
        "rms_sigma_mev": 1000 * np.sqrt((sigmas**2).mean()),
        "within_1_sigma": float((errors < sigmas).mean()),
        "within_2_sigma": float((errors < 2 * sigmas).mean()),
        "rank_correlation": rank_correlation(errors, sigmas),
    }
    for stretch in (1.1, 1.3):
        stretched = [atoms.copy() for atoms in frames[:20]]
        for atoms in stretched:
            atoms.positions *= stretch
        lines[f"mean_sigma_stretched_{stretch}_mev"] = 1000 * float(
            predictions(calculator, stretched)[1].mean()
        )
    lines["mean_sigma_mev"] = 1000 * float(sigmas[:20].mean())
    for name, value in lines.items():
        print(f"llpr/{name}: {value:.4g}")


if __name__ == "__main__":
    main()
