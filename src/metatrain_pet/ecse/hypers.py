"""Parameters of the ECSE protocol (Appendix F of Pozdnyakov & Ceriotti, 2023).

This module is plain Python (no torch) so that the architecture's documentation can
import it. The defaults are the "loose" setting of App. F.6: smooth, with more frames
than strictly needed. :data:`TIGHT_PRESET` lists the values that trade some physical
smoothness for fewer frames, :data:`MD_PRESET` those for molecular dynamics with the
``layerwise`` mode.

Cost (number of evaluations of the wrapped model, ``benchmarks/ecse_cost.py``):
ethanol, ``global`` mode: 182 frames loose, 54 tight (energy+forces 40x and 5x the
raw PET time); 192-atom water box, ``per_atom`` mode: 6038 environment evaluations
loose, 574 tight (31 and 3 per atom). See ``docs/ecse.md``.
"""

from typing import List, Literal

from typing_extensions import TypedDict


class ECSEHypers(TypedDict):
    """Hyper-parameters of the Equivariant Coordinate System Ensemble."""

    enable: bool = False
    """Apply ECSE inside the model's forward pass, so that the trained or fine-tuned
    model (and its ``mtt export``) is exactly rotationally equivariant."""
    mode: Literal["global", "per_atom", "layerwise"] = "global"
    """``global``: one pool of frames for the whole structure (App. F.10), valid for
    any model; cost: frames x one evaluation of the structure. ``per_atom``: each
    atom's environment (within the wrapped model's cutoff) is cut out and evaluated
    in that atom's own frames; the same function as the raw model only when its
    per-atom prediction depends on that environment alone; cost linear in size.
    ``layerwise`` (PET only, App. F.10): every message-passing block runs on every
    atomic environment once per frame of its central atom and its outputs are
    averaged, so that every message is invariant; cost (frames per atom) x the raw
    model, linear in size, with no cut-out sphere. Train with ``augmentation:
    environment`` so that the messages carry invariant information."""
    r_out: float = 5.0
    """Outer cutoff R_out of the frame search (Eqs. 23-24). Should be at least the
    wrapped model's cutoff for ``fallback="adaptive"`` and for isolated atoms to be
    continuous. The cost of finding frames grows as R_out⁶ (pairs of neighbours)."""
    delta_r: float = 0.5
    """Width Δ_Rc of the radial cutoff f_c used in the frame weights (Eqs. 18, 23)."""
    omega: float = 0.05
    """Angular threshold ω on ‖v̂1 × v̂2‖² below which a pair makes no frame."""
    delta_omega: float = 0.05
    """Width Δ_ω of the angular cutoff q_c (Eqs. 10-11)."""
    angular_cutoff: Literal["q1", "q2"] = "q2"
    """Angular cutoff q_c of Eq. 18: ``q1`` (Eq. 10) or ``q2`` (Eq. 11)."""
    beta: float = 3.0
    """Smoothness β of the SmoothMax/SmoothMin defining R_in (Eqs. 22-23), in
    inverse length units. Larger is tighter: fewer frames, sharper transitions
    between them (over ~1/β)."""
    gradual_onset: bool = False
    """Let a pair of neighbours enter the SmoothMin of R_in (Eq. 23) gradually:
    its candidate moves in from R_out + T(β) as its weight p_jj' (Eq. 24) rises,
    instead of counting at its own distance as soon as p_jj' leaves zero, where
    the SmoothMin amplifies it by e^{βΔx} and turns the onset of a smooth switch
    into a force spike narrower than one molecular-dynamics step. Off: Eq. 23 as
    in the paper."""
    pruning: bool = True
    """Smoothly prune the frames of small weight (App. F.5): fewer frames, but a
    frame's share switches on while its weight changes by ``prune_width`` w_MAX
    (a tenth of w_MAX by default), which in a liquid puts force bumps narrower than
    a time step into the layer-wise mode's forces and heats NVE runs; the "md"
    preset (:data:`MD_PRESET`) switches it off for layer-wise molecular dynamics
    (``docs/ecse.md``, "The heating is the pruning")."""
    beta_w: float = 3.0
    """β_w of the SmoothMaxWeighted giving w_MAX in the pruning (F.5)."""
    prune_threshold: float = 0.1
    """T_f: frames with weight below T_f·w_MAX are pruned (F.5)."""
    prune_width: float = 0.1
    """Δ_Tf: width of the pruning cutoff, relative to w_MAX (F.5)."""
    prune_activation: float = 0.1
    """T_e: pruning is active only once w_MAX exceeds this value (F.5)."""
    prune_activation_width: float = 0.05
    """Δ_Te: width of the pruning activation (F.5)."""
    fallback: Literal["none", "aux", "adaptive", "adaptive_near_collinear"] = "none"
    """Treatment of fully collinear environments (App. F.3): ``none`` raises a clear
    error, ``aux`` blends in an auxiliary equivariant model (Eqs. 19-20; smooth),
    ``adaptive`` uses the adaptive ω of Eq. 21 with mirrored frames in every
    environment (energy continuous, but forces jump when a molecule goes through a
    straight geometry), ``adaptive_near_collinear`` the same only in environments
    approaching collinearity, blended smoothly with the fixed ``omega`` and
    ``delta_omega`` (and no mirrored frames) elsewhere: fewer frames, and frame
    weights that do not follow the environment's best pair."""
    beta_omega: float = 10.0
    """β_ω of the SmoothMaxWeighted in w_aux (Eq. 20), also used as the β of the
    adaptive ω (Eq. 21)."""
    t_aux: float = 0.1
    """t_aux: threshold on the smooth maximum frame weight below which the auxiliary
    model takes over (Eq. 20)."""
    delta_aux: float = 0.05
    """Δ_aux: width of the w_aux switch (Eq. 20)."""
    frame_types: List[int] = []
    """Atomic types of the neighbours that define frames; empty for all types.
    App. F.5 suggests e.g. only the O atoms in liquid water, for fewer frames. Not
    necessarily smoother: on water, an H atom's own O and the O it donates a
    hydrogen bond to are nearly collinear (see ``docs/engines/ase.md``). Every
    atom still needs two non-collinear neighbours of these types within
    ``r_out``."""
    inversion: bool = False
    """Also average over improper frames, giving exact O(3) rather than SO(3)
    symmetry, for twice the cost. The paper's default is SO(3) only."""
    num_extra_rotations: int = 0
    """Number of fixed random rotations combined with every frame besides the
    identity (App. F.8, Eq. 25): the cost is multiplied by 1 + this number."""
    seed: int = 0
    """Seed of the extra rotations of App. F.8."""
    max_evaluated_pairs: int = 300000
    """``global`` mode: largest number of neighbour pairs (of the wrapped model's
    list) over all the frames of a structure, beyond which the evaluation stops
    with an error naming the cheaper modes instead of running out of memory. A PET
    of default size needs about 70 kB per pair for energy and forces, so the
    default is about 20 GB; 0 removes the limit."""


TIGHT_PRESET = {
    "beta": 10.0,
    "beta_w": 10.0,
    "prune_threshold": 0.5,
    "prune_width": 0.2,
}
"""Overrides of the defaults for the "tight" setting of App. F.6."""


MD_PRESET = {"beta": 5.0, "pruning": False, "fallback": "adaptive_near_collinear"}
"""Overrides of the defaults for molecular dynamics with the ``layerwise`` mode (the
default of ``metatrain-pet ecse --mode layerwise``): no pruning, whose switches put
force bumps narrower than a time step into layer-wise forces; a sharper R_in, so
that there are no more frames than with the pruned loose preset (15.6 against 17.2
per atom on ethanol, 11 against 31 on liquid water); mirrored frames only near
collinearity. Measured in NVE (``docs/ecse.md``, "The heating is the pruning" and
"The md preset on ethanol")."""

ADAPTIVE_FALLBACKS = ("adaptive", "adaptive_near_collinear")
"""The ``fallback`` values that give every environment frames (Eq. 21)."""

PRESETS = {"loose": {}, "tight": TIGHT_PRESET, "md": MD_PRESET}
"""Named settings: the defaults ("loose") and the "tight" overrides of App. F.6, and
the "md" overrides for layer-wise molecular dynamics."""

_CHOICES = {
    "mode": ("global", "per_atom", "layerwise"),
    "angular_cutoff": ("q1", "q2"),
    "fallback": ("none", "aux") + ADAPTIVE_FALLBACKS,
}

_POSITIVE = (
    "r_out",
    "delta_r",
    "delta_omega",
    "beta",
    "beta_w",
    "prune_width",
    "prune_activation",
    "prune_activation_width",
    "beta_omega",
    "t_aux",
    "delta_aux",
)


def resolve_ecse_hypers(hypers=None, preset="loose", **overrides) -> dict:
    """Complete ECSE parameters: defaults, then ``preset``, then ``hypers``, then
    ``overrides``. Unknown names and invalid values raise a ``ValueError`` naming
    the parameter."""
    if preset not in PRESETS:
        raise ValueError(f"unknown ECSE preset '{preset}', use one of {list(PRESETS)}")
    resolved = {name: getattr(ECSEHypers, name) for name in ECSEHypers.__annotations__}
    for source in (PRESETS[preset], hypers or {}, overrides):
        for name, value in source.items():
            if name not in resolved:
                raise ValueError(
                    f"unknown ECSE parameter '{name}', known ones are {list(resolved)}"
                )
            resolved[name] = value
    _check_values(resolved)
    _check_counts(resolved)
    return resolved


def resolve_layerwise_hypers(preset="md", **overrides) -> dict:
    """Complete parameters of the ``layerwise`` mode, as :func:`resolve_ecse_hypers`
    gives them, except that ``fallback`` is ``adaptive`` (every atom needs frames)
    unless ``preset`` or ``overrides`` set it."""
    fallback = {} if "fallback" in PRESETS.get(preset, {}) else {"fallback": "adaptive"}
    overrides = {**fallback, **overrides, "mode": "layerwise"}
    return resolve_ecse_hypers(None, preset, **overrides)


def _check_values(resolved: dict) -> None:
    """Choices, signs and orderings of the real-valued parameters."""
    for name, choices in _CHOICES.items():
        if resolved[name] not in choices:
            raise ValueError(
                f"ECSE parameter '{name}' must be one of {choices}, "
                f"got {resolved[name]!r}"
            )
    for name in _POSITIVE:
        if not float(resolved[name]) > 0.0:
            raise ValueError(
                f"ECSE parameter '{name}' must be > 0, got {resolved[name]}"
            )
    if not float(resolved["omega"]) >= 0.0:
        raise ValueError(
            f"ECSE parameter 'omega' must be >= 0, got {resolved['omega']}"
        )
    if not 0.0 < float(resolved["prune_threshold"]) < 1.0:
        raise ValueError(
            "ECSE parameter 'prune_threshold' (T_f) must be in (0, 1), "
            f"got {resolved['prune_threshold']}"
        )
    if not resolved["prune_activation_width"] < resolved["prune_activation"]:
        raise ValueError(
            "ECSE parameter 'prune_activation_width' (Δ_Te) must be smaller than "
            "'prune_activation' (T_e)"
        )
    if not resolved["delta_aux"] < resolved["t_aux"]:
        raise ValueError(
            "ECSE parameter 'delta_aux' (Δ_aux) must be smaller than 't_aux', so that "
            "w_aux is 1 when every frame weight vanishes (Eq. 20)"
        )


def _check_counts(resolved: dict) -> None:
    """The integer and list parameters (``frame_types`` is sorted in place)."""
    frame_types = resolved["frame_types"]
    if not isinstance(frame_types, (list, tuple)) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in frame_types
    ):
        raise ValueError(
            "ECSE parameter 'frame_types' must be a list of atomic numbers, "
            f"got {frame_types!r}"
        )
    resolved["frame_types"] = sorted(set(frame_types))
    if int(resolved["max_evaluated_pairs"]) < 0:
        raise ValueError(
            "ECSE parameter 'max_evaluated_pairs' must be >= 0, "
            f"got {resolved['max_evaluated_pairs']}"
        )
    if int(resolved["num_extra_rotations"]) < 0:
        raise ValueError(
            "ECSE parameter 'num_extra_rotations' must be >= 0, "
            f"got {resolved['num_extra_rotations']}"
        )
