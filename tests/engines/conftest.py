"""Models, structures and devices shared by the engine tests.

Every engine test gets its model file from the ``exported_model`` factory, which
builds, exports and saves each model once per session. Which architectures are
exercised is decided by :data:`MODEL_FAMILIES` alone.

The models are tiny and untrained (see docs/engines/ase.md for why this is the
right choice for conservation and cross-engine tests).
"""

from pathlib import Path

import ase.io
import pytest
import torch

from metatrain_pet.pet.untrained import TINY_SIZES

DATA = Path(__file__).resolve().parents[1] / "data"

ATOMIC_TYPES = [1, 6, 8]

PAPER_CHOICES = {
    "transformer_type": "PostLN",
    "encode_length": False,
    "species_as_first_message": False,
    "radial_basis": 0,
}
"""The paper's PET, for which the energy-conservation bounds of the engine tests
were measured. The untrained tiny model with the defaults (pre-LN, |r_ij| input,
species as first message, 16 Gaussians of |r_ij|) exceeded them (drift on the
water box, the ECSE dt^2 ratio on ethanol): its random surface is rougher (the
Gaussians are 0.25 Å wide at R_c = 4 Å), and engines, not architectures, are under
test here."""

TINY_HYPERS = {**TINY_SIZES, **PAPER_CHOICES, "d_node": 8}
"""Sizes that make a model cheap enough for MD on two CPU cores; only the keys an
architecture knows are applied."""

ECSE_TEST_PARAMS = {"preset": "tight", "r_out": 3.0}
"""ECSE settings of the tests: few frames, so MD stays affordable in CI. Exact
rotational symmetry does not depend on them."""

MODEL_FAMILIES = {
    "pet_ecse": "experimental.pet_ecse",
    "metatrain_pet": "pet",
}
"""Architectures under test (metatrain architecture names), ours first."""

PRIMARY_FAMILY = "pet_ecse"


def _build_model(family: str, dtype: torch.dtype, layerwise: bool = False):
    from metatrain.utils.architectures import get_default_hypers

    from metatrain_pet.ecse.hypers import TIGHT_PRESET
    from metatrain_pet.pet.untrained import untrained_energy_model

    architecture = MODEL_FAMILIES[family]
    known = get_default_hypers(architecture)["model"]
    hypers = {key: value for key, value in TINY_HYPERS.items() if key in known}
    if layerwise:
        hypers["ecse"] = dict(
            known["ecse"],
            enable=True,
            mode="layerwise",
            fallback="adaptive",
            r_out=ECSE_TEST_PARAMS["r_out"],
            **TIGHT_PRESET,
        )
    return untrained_energy_model(
        architecture, ATOMIC_TYPES, dtype=dtype, **hypers
    ).export()


def _save_symmetrized(model, path):
    """Wrap ``model`` with ECSE and save it."""
    from metatrain_pet.ecse import symmetrize

    symmetrize(model, **ECSE_TEST_PARAMS).save(str(path))


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory):
    """Factory ``exported_model(family, variant, dtype="float64") -> Path``.

    ``variant`` is ``"raw"``, ``"ecse"`` (the raw model wrapped by
    ``metatrain_pet.ecse.symmetrize``) or ``"layerwise"`` (our PET with
    layer-wise ECSE built in).
    """
    directory = tmp_path_factory.mktemp("engine-models")
    saved = {}

    def factory(family: str, variant: str, dtype: str = "float64") -> Path:
        key = (family, variant, dtype)
        if key in saved:
            return saved[key]

        model = _build_model(family, getattr(torch, dtype), variant == "layerwise")
        path = directory / f"{family}-{variant}-{dtype}.pt"
        if variant == "ecse":
            _save_symmetrized(model, path)
        else:
            model.save(str(path))
        saved[key] = path
        return path

    return factory


@pytest.fixture(params=["raw", "ecse"])
def variant(request):
    return request.param


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(
                not torch.cuda.is_available(), reason="CUDA is not available"
            ),
        ),
    ]
)
def device(request):
    return request.param


def read_structure(name: str) -> ase.Atoms:
    """First frame of a test data file, without its stored reference results."""
    atoms = ase.io.read(DATA / name, 0)
    atoms.calc = None
    return atoms


@pytest.fixture
def ethanol():
    """rMD17 ethanol, gas phase (no cell, no periodicity)."""
    atoms = read_structure("ethanol_40.xyz")
    atoms.cell = [0.0, 0.0, 0.0]
    atoms.pbc = False
    return atoms


@pytest.fixture
def water():
    """64 water molecules in a periodic cubic box of 12.44 Angstrom."""
    return read_structure("water64_2.xyz")


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    torch.set_num_threads(2)
