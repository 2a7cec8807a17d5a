"""Inference cost of ours vs metatrain's ``pet`` (matched hypers): one energy +
forces evaluation of an exported model on a fixed structure, as an engine runs it.

The neighbour list is computed once outside the timed region (engines compute it
outside the model too); the timed step builds a fresh ``System`` with positions that
require gradients, evaluates the exported model and back-propagates the energy.
"""

import gc
import resource
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional

import ase.io
import torch
from matched_hypers import OURS, PEER, matched_hypers
from metatomic.torch import ModelEvaluationOptions, ModelOutput, System
from metatrain.utils.architectures import import_architecture
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_energy_target_info
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from metatrain_pet.runtime import set_lean_forces, set_max_tokens

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
ATOMIC_TYPES = [1, 6, 7, 8]
# water boxes: repeats of the 64-molecule (192 atoms) frame
WATER_REPEATS = {
    192: (1, 1, 1),
    1536: (2, 2, 2),
    2304: (3, 2, 2),
    3456: (3, 2, 3),
    5184: (3, 3, 3),
    12288: (4, 4, 4),
}


def structure(label: str) -> "ase.Atoms":
    """``ethanol`` (9 atoms), ``water<N>`` (a water box of N atoms) or ``slab<N>``
    (the same box with its third cell vector doubled: a film with vacuum on both
    sides, where surface atoms have fewer neighbours than bulk ones)."""
    if label == "ethanol":
        return ase.io.read(TEST_DATA / "ethanol_40.xyz", 0)
    kind = label.rstrip("0123456789")
    size = int(label[len(kind) :])
    atoms = ase.io.read(TEST_DATA / "water64_2.xyz", 0).repeat(WATER_REPEATS[size])
    if kind == "slab":
        atoms.cell[2] *= 2.0
    return atoms


def structures(sizes: List[int], slabs: List[int] = ()) -> Dict[str, "ase.Atoms"]:
    """ethanol, water boxes of the given numbers of atoms and slabs."""
    labels = ["ethanol"] + [f"water{n}" for n in sizes] + [f"slab{n}" for n in slabs]
    return {label: structure(label) for label in labels}


def build_models(
    dtype=torch.float32,
    seed: int = 0,
    script: bool = False,
    max_tokens: int = 0,
    lean_forces_above: Optional[int] = None,
    **sizes,
):
    """Exported (eval-mode) models of both architectures, matched hypers, energy
    target; with ``script`` the TorchScript-compiled versions. ``max_tokens`` sets
    the tokens per chunk of environments of ours (0: its default; a huge number:
    one padded tensor, as before chunking)."""
    hypers = matched_hypers(**sizes)
    models = {}
    for name in (OURS, PEER):
        model = untrained_model(name, hypers[name], seed)
        if name == OURS:
            set_max_tokens(model, max_tokens)
            if lean_forces_above is not None:
                set_lean_forces(model, lean_forces_above)
        exported = model.to(dtype).export()
        exported.eval()
        if script:
            exported = torch.jit.script(exported)
        models[name] = exported
    return models


def untrained_model(name: str, hypers: dict, seed: int = 0):
    """An untrained energy model of architecture ``name`` (not exported)."""
    info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=ATOMIC_TYPES,
        targets={"energy": get_energy_target_info("energy", {"unit": "eV"})},
    )
    torch.manual_seed(seed)
    return import_architecture(name).__model__(hypers, info)


def prepare(model, atoms, dtype=torch.float32) -> System:
    """System with the neighbour lists the model asks for (computed once)."""
    system = System(
        types=torch.tensor(atoms.numbers, dtype=torch.int32),
        positions=torch.tensor(atoms.positions, dtype=dtype),
        cell=torch.tensor(atoms.cell.array, dtype=dtype),
        pbc=torch.tensor(atoms.pbc),
    )
    return get_system_with_neighbor_lists(system, model.requested_neighbor_lists())


OPTIONS = ModelEvaluationOptions(
    length_unit="angstrom",
    outputs={"energy": ModelOutput(quantity="energy", unit="eV", sample_kind="system")},
)


def step(model, system: System) -> torch.Tensor:
    """One energy + forces evaluation; returns the forces."""
    positions = system.positions.detach().requires_grad_(True)
    fresh = System(system.types, positions, system.cell, system.pbc)
    for options in system.known_neighbor_lists():
        fresh.add_neighbor_list(options, system.get_neighbor_list(options))
    energy = model([fresh], OPTIONS, check_consistency=False)["energy"]
    total = energy.block().values.sum()
    return -torch.autograd.grad(total, positions)[0]


def ecse_settings(atoms) -> Dict[str, str]:
    """ECSE settings of the benchmarks for ``atoms``. A molecule: one pool of frames
    for the structure (App. F.10), loose preset. A periodic box: every atom's
    environment in its own frames, tight preset (a few frames per atom); a global
    pool would hold the frames of all environments, each needing an evaluation of
    the whole box."""
    if bool(atoms.pbc.any()):
        return {"mode": "per_atom", "preset": "tight"}
    return {"mode": "global", "preset": "loose"}


def energy_step(model, system: System) -> torch.Tensor:
    """One energy evaluation without autograd; returns the energy."""
    with torch.no_grad():
        energy = model([system], OPTIONS, check_consistency=False)["energy"]
    return energy.block().values.sum()


def interleaved_times(
    models: Dict,
    systems: Dict,
    repeats: int,
    warmup: int = 2,
    clock=time.perf_counter,
    steps: Optional[Dict] = None,
) -> Dict[str, List[float]]:
    """Times of ``repeats`` steps of each model, alternated, after ``warmup``;
    ``steps`` gives a model's step function when it is not :func:`step`."""
    steps = {name: (steps or {}).get(name, step) for name in models}
    for _ in range(warmup):
        for name, model in models.items():
            steps[name](model, systems[name])
    times = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            gc.collect()
            start = clock()
            steps[name](model, systems[name])
            times[name].append(clock() - start)
    return times


def median(values):
    return statistics.median(values)


def _proc_status_kib(field):
    with open("/proc/self/status") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def step_memory_mib(model, system: System, device: torch.device) -> float:
    """Peak memory added by one energy + forces step, in MiB, after a warm-up step
    that pays one-time allocations: on CPU the peak resident set size during the
    step (VmHWM, reset just before it through /proc/self/clear_refs) minus the
    resident set size before it; on CUDA the peak allocated memory of torch's
    caching allocator during the step minus the allocated memory before. Run it in
    a fresh process with ``MALLOC_MMAP_THRESHOLD_`` set (see ``run.py``)."""
    step(model, system)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step(model, system)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        before = _proc_status_kib("VmRSS")
        step(model, system)
        after = _proc_status_kib("VmHWM")
    except OSError:  # no /proc: growth of ru_maxrss (0 if below the old peak)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step(model, system)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) / 1024
