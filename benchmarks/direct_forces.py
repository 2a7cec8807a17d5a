"""Direct (non-conservative) forces against forces by autograd, for the same PET:
CPU time of one step, measured in alternation (from the repository root):

    OMP_NUM_THREADS=1 python benchmarks/direct_forces.py --repeats 20

One model of ours (default hypers unless ``--small``) with two targets, the energy
and a ``non_conservative_force`` head (a per-atom Cartesian vector, metatomic's
standard name), exported. The autograd step asks for the energy and differentiates
it; the direct step asks for the energy and the direct forces under
``torch.no_grad``. Lines ``direct_forces/<system>/cpu_ms: autograd=… direct=…
ratio=…``.
"""

import argparse
import time

import torch
from inference import OPTIONS, interleaved_times, median, prepare, step, structures
from matched_hypers import OURS
from metatomic.torch import ModelEvaluationOptions, ModelOutput
from metatrain.utils.architectures import get_default_hypers, import_architecture
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import (
    get_energy_target_info,
    get_generic_target_info,
)

from metatrain_pet.pet.untrained import TINY_SIZES

DIRECT = ModelEvaluationOptions(
    length_unit="angstrom",
    outputs={
        **OPTIONS.outputs,
        "non_conservative_force": ModelOutput(unit="eV/A", sample_kind="atom"),
    },
)


def direct_step(model, system) -> torch.Tensor:
    """One energy + direct forces evaluation, no autograd; returns the forces."""
    with torch.no_grad():
        results = model([system], DIRECT, check_consistency=False)
    return results["non_conservative_force"].block().values


def build_model(small: bool):
    """Our PET with an energy and a direct-force head, exported (float32)."""
    force = {
        "quantity": "force",
        "unit": "eV/A",
        "type": {"cartesian": {"rank": 1}},
        "sample_kind": "atom",
        "num_subtargets": 1,
    }
    info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=[1, 6, 8],
        targets={
            "energy": get_energy_target_info("energy", {"unit": "eV"}),
            "non_conservative_force": get_generic_target_info(
                "non_conservative_force", force
            ),
        },
    )
    hypers = get_default_hypers(OURS)["model"]
    if small:
        hypers.update(TINY_SIZES)
    torch.manual_seed(0)
    return import_architecture(OURS).__model__(hypers, info).export().eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--small", action="store_true", help="the tiny model")
    parser.add_argument("--sizes", type=int, nargs="*", default=[192, 1536])
    args = parser.parse_args()
    model = build_model(args.small)
    for name, atoms in structures(args.sizes).items():
        system = prepare(model, atoms)
        models = {"autograd": model, "direct": model}
        times = interleaved_times(
            models,
            {"autograd": system, "direct": system},
            args.repeats,
            clock=time.process_time,
            steps={"autograd": step, "direct": direct_step},
        )
        autograd, direct = (1e3 * median(times[k]) for k in ("autograd", "direct"))
        print(
            f"direct_forces/{name}/cpu_ms: autograd={autograd:.4g} "
            f"direct={direct:.4g} ratio={direct / autograd:.3f}"
        )


if __name__ == "__main__":
    main()
