"""metatrain's test suite for architectures, run on ``experimental.pet_ecse``."""

import copy
from pathlib import Path

import pytest
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.testing import (
    ArchitectureTests,
    AutogradTests,
    CheckpointTests,
    ExportedTests,
    InputTests,
    OutputTests,
    TorchscriptTests,
    TrainingTests,
)

from metatrain_pet.ecse.hypers import TIGHT_PRESET

HERE = Path(__file__).parent


class PETECSETests(ArchitectureTests):
    architecture = "experimental.pet_ecse"

    @pytest.fixture(autouse=True)
    def _run_in_tests_directory(self, monkeypatch):
        # CheckpointTests look for the reference checkpoints in ./checkpoints
        monkeypatch.chdir(HERE)

    @pytest.fixture
    def dataset_path(self) -> str:
        return str(HERE / "data" / "qm9_reduced_100.xyz")

    @pytest.fixture
    def model_hypers(self):
        return small_hypers()

    @pytest.fixture
    def minimal_model_hypers(self):
        hypers = small_hypers()
        hypers["d_pet"] = 2
        hypers["d_feedforward"] = 2
        hypers["d_readout"] = 2
        hypers["num_heads"] = 1
        hypers["num_attention_layers"] = 1
        hypers["num_gnn_layers"] = 1
        return hypers


def small_hypers() -> dict:
    hypers = copy.deepcopy(get_default_hypers("experimental.pet_ecse")["model"])
    hypers["d_pet"] = 16
    hypers["d_feedforward"] = 32
    hypers["d_readout"] = 16
    hypers["num_heads"] = 2
    hypers["num_attention_layers"] = 1
    hypers["num_gnn_layers"] = 2
    return hypers


class TestInput(InputTests, PETECSETests): ...


class TestOutput(OutputTests, PETECSETests):
    is_equivariant_rotations = False
    is_equivariant_reflections = False
    supports_spherical_atomic_basis_outputs = False

    @pytest.fixture
    def n_features(self, model_hypers):
        return 2 * model_hypers["d_pet"]

    @pytest.fixture
    def n_last_layer_features(self, model_hypers):
        blocks = (
            1
            if model_hypers["readout"] == "last_block"
            else model_hypers["num_gnn_layers"]
        )
        return 2 * model_hypers["d_readout"] * blocks


class TestOutputOnlyLengths(TestOutput):
    """With ``use_only_lengths`` PET is exactly invariant (App. C.1)."""

    is_equivariant_rotations = True
    is_equivariant_reflections = True
    supports_spherical_outputs = False

    @pytest.fixture
    def model_hypers(self):
        hypers = small_hypers()
        hypers["use_only_lengths"] = True
        return hypers


class TestOutputECSE(TestOutput):
    """With ``ecse.enable`` the architecture is exactly rotation-equivariant
    (Sec. 5 of the paper), which metatrain's own equivariance tests check."""

    is_equivariant_rotations = True
    is_equivariant_reflections = False
    supports_spherical_outputs = False

    @pytest.fixture
    def model_hypers(self):
        hypers = small_hypers()
        hypers["num_gnn_layers"] = 1
        hypers["ecse"].update(
            enable=True, mode="per_atom", fallback="adaptive", **TIGHT_PRESET
        )
        return hypers


class TestOutputLayerwise(TestOutputECSE):
    """With layer-wise ECSE (App. F.10) every message is symmetrized: the
    architecture is exactly rotation-equivariant with linear cost."""

    @pytest.fixture
    def model_hypers(self):
        hypers = small_hypers()
        hypers["ecse"].update(
            enable=True, mode="layerwise", fallback="adaptive", **TIGHT_PRESET
        )
        return hypers


class TestAutograd(AutogradTests, PETECSETests): ...


class TestTorchscript(TorchscriptTests, PETECSETests):
    float_hypers = ["cutoff"]


class TestExported(ExportedTests, PETECSETests): ...


class TestTraining(TrainingTests, PETECSETests):
    supports_atomic_basis = False


class TestCheckpoints(CheckpointTests, PETECSETests): ...
