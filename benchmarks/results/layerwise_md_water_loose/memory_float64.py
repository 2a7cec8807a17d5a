"""Peak memory (MiB) of one float64 energy + forces step of a default-size PET
(untrained) with layer-wise ECSE, loose preset, on the 192-atom water box, and
the CPU seconds of the warm-up and measured steps. Run from the repository root:

    MALLOC_MMAP_THRESHOLD_=65536 MALLOC_TRIM_THRESHOLD_=0 OMP_NUM_THREADS=1 \\
        python benchmarks/results/layerwise_md_water_loose/memory_float64.py default
    (ulimit -v 20000000; ... memory_float64.py -1)    # full graph

The argument is the lean-forces threshold in tokens (-1: never), or ``default``.
"""

import sys
import time

import torch

sys.path.insert(0, "benchmarks")

import inference  # noqa: E402
import layerwise  # noqa: E402


def main():
    torch.set_num_threads(1)
    lean = None if sys.argv[1] == "default" else int(sys.argv[1])
    model = layerwise.models({}, "loose", lean, torch.float64)["layerwise"]
    atoms = inference.structures([192])["water192"]
    system = inference.prepare(model, atoms, torch.float64)
    start = time.process_time()
    peak = inference.step_memory_mib(model, system, torch.device("cpu"))
    print("peak MiB", peak, "cpu s", time.process_time() - start)


if __name__ == "__main__":
    main()
