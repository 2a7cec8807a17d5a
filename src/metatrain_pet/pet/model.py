"""PET as a metatrain architecture: the ``ModelInterface`` of ``experimental.pet_ecse``.

:class:`PET` owns the neural network (:class:`~metatrain_pet.pet.network.PETNetwork`),
composition baseline and target scales (handled by the trainer during training,
applied here in evaluation mode), checkpoints and the export to a metatomic
``AtomisticModel``.
"""

import logging
from typing import Any, Dict, List, Literal, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)
from metatrain.composition import CompositionModel
from metatrain.scaler import Scaler
from metatrain.utils.abc import ModelInterface
from metatrain.utils.additive import ZBL
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo, TargetInfo
from metatrain.utils.dtype import dtype_to_str
from metatrain.utils.hypers import raise_if_hypers_mismatch
from metatrain.utils.metadata import merge_metadata

from ..documentation import ModelHypers
from ..ecse.hypers import ADAPTIVE_FALLBACKS, resolve_ecse_hypers
from ..ecse.symmetrizer import NUM_FRAMES_OUTPUT, Symmetrizer
from ..files import AtomisticModel
from . import checkpoints, finetuning
from .checkpoints import ARCHITECTURE_NAME
from .network import PETNetwork
from .targets import last_layer_features_name


class PET(ModelInterface[ModelHypers]):
    """The Point Edge Transformer (Pozdnyakov & Ceriotti, NeurIPS 2023).

    :param hypers: model hyper-parameters, see :class:`ModelHypers`
    :param dataset_info: atomic types, length unit and targets
    """

    __checkpoint_version__ = 7
    target_names: List[str]
    __supported_devices__ = ["cuda", "cpu"]
    __supported_dtypes__ = [torch.float32, torch.float64]
    __default_metadata__ = ModelMetadata(
        references={"architecture": ["https://arxiv.org/abs/2305.19302"]}
    )

    def __init__(self, hypers: ModelHypers, dataset_info: DatasetInfo) -> None:
        super().__init__(hypers, dataset_info, self.__default_metadata__)
        for name, target_info in dataset_info.targets.items():
            _check_supported_target(name, target_info)

        self.atomic_types: List[int] = sorted(dataset_info.atomic_types)
        self.cutoff = float(self.hypers["cutoff"])
        self.num_gnn_layers = int(self.hypers["num_gnn_layers"])
        self.network = PETNetwork(self.hypers, self.atomic_types)

        self.outputs: Dict[str, ModelOutput] = {
            "feature": ModelOutput(
                sample_kind="atom",
                description="PET features: central token and cutoff-weighted sum "
                "of the edge tokens of the last block",
            )
        }
        self.target_names = []
        # for metatrain's LLPR wrapper: the features' width, and per target the
        # parameters that map them to the prediction
        self.last_layer_feature_size = self.network.heads.last_layer_size()
        self.last_layer_parameter_names: Dict[str, List[str]] = {}
        for name, target_info in dataset_info.targets.items():
            self._add_output(name, target_info)

        self.additive_models = torch.nn.ModuleList(
            [CompositionModel.from_valid_targets(dataset_info, self.atomic_types)]
        )
        if self.hypers["zbl"]:
            self.additive_models.append(_zbl(dataset_info, self.atomic_types))
        self.scaler = Scaler(
            hypers=get_default_hypers("scaler")["model"], dataset_info=dataset_info
        )
        self.has_new_targets = False
        self.finetuning = False
        # the fine-tuning strategy applied (pet/finetuning.py), which a checkpoint
        # must re-apply before loading the weights (LoRA adds parameters)
        self.finetune_config: Dict[str, Any] = {}
        self.symmetrizer = None
        self._configure_ecse()

    def _configure_ecse(self) -> None:
        """Wrap the network in ECSE (Sec. 5, App. F) when ``ecse.enable`` is set, so
        that training, fine-tuning and ``mtt export`` use the symmetrized model."""
        ecse = dict(self.hypers["ecse"])
        if not ecse["enable"]:
            self.symmetrizer = None
            self.outputs.pop(NUM_FRAMES_OUTPUT, None)
            return
        if ecse["fallback"] == "aux":
            raise ValueError(
                "ecse.fallback 'aux' needs a separately trained auxiliary model, "
                "which the architecture does not train; use ecse.fallback "
                "'adaptive' here, or wrap the exported model with "
                "`metatrain-pet ecse MODEL.pt --aux AUX.pt`"
            )
        if ecse["mode"] == "layerwise" and ecse["fallback"] not in ADAPTIVE_FALLBACKS:
            raise ValueError(
                "ecse.mode 'layerwise' needs ecse.fallback 'adaptive' or "
                "'adaptive_near_collinear': every atom "
                "gets its own frames, and an atom with fewer than two non-collinear "
                "neighbours within r_out (a diatomic molecule, an atom leaving a "
                "cluster) has none otherwise"
            )
        if ecse["mode"] == "per_atom" and self.network.long_range.enabled:
            raise ValueError(
                "ecse.mode 'per_atom' evaluates environments cut out of their "
                "structure, where the long-range part would only see the cut-out "
                "charges: use the 'global' or 'layerwise' mode with long_range"
            )
        self.symmetrizer = Symmetrizer(
            resolve_ecse_hypers(ecse), self.network.requested_neighbor_lists()
        )
        self.symmetrizer.warn_if_truncated(self._network_range())
        self.outputs[NUM_FRAMES_OUTPUT] = ModelOutput(
            sample_kind="system",
            description="number of ECSE frames the network was evaluated in",
        )

    def _add_output(self, name: str, target_info: TargetInfo) -> None:
        self.target_names.append(name)
        self.network.add_target(name, target_info.layout)
        self.outputs[name] = ModelOutput(
            unit=target_info.unit,
            sample_kind="atom",
            description=target_info.description,
        )
        self.outputs[last_layer_features_name(name)] = ModelOutput(
            sample_kind="atom", description=f"last-layer features of {name}"
        )
        self.last_layer_parameter_names[name] = [
            "network.heads." + weight
            for weight in self.network.heads.last_layer_weights(name)
        ]

    def remove_output(self, target_name: str) -> None:
        self.target_names.remove(target_name)
        self.network.remove_target(target_name)
        self.outputs.pop(target_name)
        self.outputs.pop(last_layer_features_name(target_name))
        self.last_layer_parameter_names.pop(target_name)

    def supported_outputs(self) -> Dict[str, ModelOutput]:
        return self.outputs

    def requested_inputs(self) -> Dict[str, ModelOutput]:
        """The extra inputs (``atomic_inputs``, ``system_conditioning``) that
        engines must give in ``System.get_data``."""
        return self.network.requested_inputs()

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The network's list, ECSE's and the additive models' (ZBL)."""
        lists = self.network.requested_neighbor_lists()
        if self.symmetrizer is not None:
            lists = [self.symmetrizer.ecse_options] + lists
        for additive_model in self.additive_models:
            lists = lists + additive_model.requested_neighbor_lists()
        return lists

    def restart(
        self, dataset_info: DatasetInfo, model_hypers: Optional[Dict[str, Any]] = None
    ) -> "PET":
        if model_hypers is not None:
            if self.finetuning:
                self._finetune_hypers(dict(model_hypers))
            else:
                raise_if_hypers_mismatch(
                    self.hypers,
                    model_hypers,
                    default_hypers=get_default_hypers(ARCHITECTURE_NAME)["model"],
                )
        merged_info = self.dataset_info.union(dataset_info)
        new_types = [t for t in merged_info.atomic_types if t not in self.atomic_types]
        if len(new_types) > 0:
            raise ValueError(
                f"the new dataset contains atomic types {new_types} that the model "
                f"was not trained on (known: {self.atomic_types}); PET cannot add "
                "atomic types when restarting"
            )
        new_targets = {
            name: info
            for name, info in merged_info.targets.items()
            if name not in self.dataset_info.targets
        }
        for name, info in new_targets.items():
            _check_supported_target(name, info)
            self._add_output(name, info)
        self.has_new_targets = len(new_targets) > 0
        self.dataset_info = merged_info

        self.additive_models[0] = self.additive_models[0].restart(
            DatasetInfo(
                length_unit=dataset_info.length_unit,
                atomic_types=self.atomic_types,
                targets={
                    name: info
                    for name, info in dataset_info.targets.items()
                    if CompositionModel.is_valid_target(name, info)
                },
            )
        )
        for zbl in self.additive_models[1:]:
            zbl.restart(_zbl_info(dataset_info, self.atomic_types))
        self.scaler = self.scaler.restart(dataset_info)
        return self

    def _finetune_hypers(self, model_hypers: Dict[str, Any]) -> None:
        """When fine-tuning, the ECSE parameters (and only them) may differ from the
        checkpoint's: this is how a trained model is symmetrized and fine-tuned
        (App. F.7)."""
        defaults = get_default_hypers(ARCHITECTURE_NAME)["model"]
        new_ecse = {**defaults["ecse"], **model_hypers.pop("ecse", {})}
        old = {k: v for k, v in self.hypers.items() if k != "ecse"}
        raise_if_hypers_mismatch(old, model_hypers, default_hypers=defaults)
        if new_ecse != dict(self.hypers["ecse"]):
            logging.info(f"Restarting with new ECSE parameters: {new_ecse}")
            self.hypers["ecse"] = new_ecse
            self._configure_ecse()

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        results = self._predict(systems, outputs, selected_atoms)
        if self.training:
            return results

        targets: Dict[str, TensorMap] = {}
        for name in self.target_names:
            if name in results:
                targets[name] = results[name]
        if len(targets) == 0:
            return results

        targets = self.scaler.apply_scales(
            systems, targets, selected_atoms=selected_atoms
        )
        for additive_model in self.additive_models:
            requested: Dict[str, ModelOutput] = {}
            for name in targets.keys():
                if name in additive_model.outputs:
                    requested[name] = outputs[name]
            if len(requested) > 0:
                contributions = additive_model(systems, requested, selected_atoms)
                for name, contribution in contributions.items():
                    targets[name] = _add_matching_blocks(targets[name], contribution)
        for name, prediction in targets.items():
            results[name] = prediction
        return results

    def _predict(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        """The network's outputs, symmetrized by ECSE when it is enabled: the
        network is evaluated in every frame the symmetrizer plans."""
        symmetrizer = self.symmetrizer
        if symmetrizer is None:
            return self.network(systems, outputs, selected_atoms)
        if symmetrizer.layerwise:
            lean = self.network.lean_frames_target(systems, outputs, selected_atoms)
            if lean is not None:
                return self._lean_layerwise(systems, outputs, lean)
            frames, frame_systems = symmetrizer.atom_frames(systems)
            results = self.network(
                systems,
                outputs,
                selected_atoms,
                (frames.pools, frames.rotations, frames.weights),
            )
            if symmetrizer.num_frames_output in outputs:
                results[symmetrizer.num_frames_output] = symmetrizer.frame_counts(
                    frame_systems, len(systems), frames.rotations.dtype
                )
            return results
        plan = symmetrizer.plan(systems, outputs, selected_atoms)
        evaluated: Dict[str, TensorMap] = {}
        if plan.evaluate:
            evaluated = self.network(plan.systems, plan.requests, plan.selected_atoms)
        no_aux: Dict[str, TensorMap] = {}
        return symmetrizer.average(plan, evaluated, no_aux, outputs)

    def _lean_layerwise(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        name: str,
    ) -> Dict[str, TensorMap]:
        """Layer-wise ECSE with lean forces for the energy ``name``: the frames
        are computed without autograd, the network returns the gradients of the
        energy with respect to them, and the symmetrizer pulls these back to the
        positions chunk by chunk (:meth:`Symmetrizer.atom_frames_linear_term`):
        no graph of the frames is kept."""
        symmetrizer = self.symmetrizer
        assert symmetrizer is not None
        with torch.no_grad():
            frames, _ = symmetrizer.atom_frames(systems)
        gradients: Dict[str, torch.Tensor] = {}
        results = self.network(
            systems,
            outputs,
            None,
            (frames.pools, frames.rotations, frames.weights),
            gradients,
        )
        linear = symmetrizer.atom_frames_linear_term(
            systems, frames.pools, gradients["rotations"], gradients["weights"]
        )
        block = results[name].block()
        values = block.values + (linear - linear.detach()).reshape(-1, 1)
        block = TensorBlock(values, block.samples, block.components, block.properties)
        results[name] = TensorMap(results[name].keys, [block])
        return results

    @classmethod
    def load_checkpoint(
        cls,
        checkpoint: Dict[str, Any],
        context: Literal["restart", "finetune", "export"],
    ) -> "PET":
        if context == "restart":
            logging.info(f"Using latest model from epoch {checkpoint['epoch']}")
            state_dict = checkpoint["model_state_dict"]
        elif context in ("finetune", "export"):
            logging.info(f"Using best model from epoch {checkpoint['best_epoch']}")
            state_dict = checkpoint["best_model_state_dict"]
            if state_dict is None:
                state_dict = checkpoint["model_state_dict"]
        else:
            raise ValueError(f"unknown context {context!r} to load a checkpoint")

        model_data = checkpoint["model_data"]
        model = cls(model_data["model_hypers"], model_data["dataset_info"])
        if model_data.get("finetune_config"):
            finetuning.apply(model, model_data["finetune_config"], first_time=False)
        dtype = next(v.dtype for v in state_dict.values() if v.is_floating_point())
        model.to(dtype).load_state_dict(state_dict)
        model.additive_models[0].sync_tensor_maps()
        model.scaler.sync_tensor_maps()
        model.metadata = merge_metadata(model.metadata, checkpoint.get("metadata"))
        model.finetuning = context == "finetune"
        return model

    def get_checkpoint(self) -> Dict[str, Any]:
        return {
            "architecture_name": ARCHITECTURE_NAME,
            "model_ckpt_version": self.__checkpoint_version__,
            "metadata": self.metadata,
            "model_data": {
                "model_hypers": self.hypers,
                "dataset_info": self.dataset_info,
                "finetune_config": self.finetune_config,
            },
            "epoch": None,
            "best_epoch": None,
            "model_state_dict": self.state_dict(),
            "best_model_state_dict": self.state_dict(),
        }

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
        return checkpoints.upgrade(
            checkpoint, "model", cls.__checkpoint_version__, checkpoints.MODEL_UPDATES
        )

    def interaction_range(self) -> float:
        """How far information travels: one cutoff per message-passing block, or
        ECSE's range when it is enabled."""
        symmetrizer = self.symmetrizer
        if symmetrizer is None:
            return self._network_range()
        if symmetrizer.layerwise:
            # the last block's frames reach the frame search radius
            last = max(self.cutoff, symmetrizer.search_radius)
            return (self.num_gnn_layers - 1) * self.cutoff + last
        return max(symmetrizer.interaction_range(), self._network_range())

    def _network_range(self) -> float:
        """Range of the raw network: one cutoff per message-passing block."""
        return self.num_gnn_layers * self.cutoff

    def export(self, metadata: Optional[ModelMetadata] = None) -> AtomisticModel:
        dtype = next(self.parameters()).dtype
        if dtype not in self.__supported_dtypes__:
            raise ValueError(f"PET cannot be exported in {dtype}")
        self.to(dtype)
        self.additive_models[0].weights_to(torch.device("cpu"), torch.float64)

        capabilities = ModelCapabilities(
            outputs=self.outputs,
            atomic_types=self.atomic_types,
            interaction_range=self.interaction_range(),
            length_unit=self.dataset_info.length_unit,
            supported_devices=self.__supported_devices__,
            dtype=dtype_to_str(dtype),
        )
        return AtomisticModel(
            finetuning.merged_lora(self).eval(),
            merge_metadata(self.metadata, metadata),
            capabilities,
        )


def _add_matching_blocks(prediction: TensorMap, contribution: TensorMap) -> TensorMap:
    """Add the blocks of ``contribution`` to the blocks of ``prediction`` with the
    same key; the other blocks of ``prediction`` are kept (the composition baseline
    only covers the invariant blocks of a target)."""
    blocks: List[TensorBlock] = []
    for key, block in prediction.items():
        position = contribution.keys.position(key)
        values = block.values
        if position is not None:
            added = contribution.block(position)
            values = values + _on_samples(added, block.samples).to(values)
        blocks.append(
            TensorBlock(values, block.samples, block.components, block.properties)
        )
    return TensorMap(prediction.keys, blocks)


def _on_samples(block: TensorBlock, samples: Labels) -> torch.Tensor:
    """The values of ``block`` on ``samples``, zero where it has none: metatrain's
    composition model gives no sample to a structure without atoms."""
    if block.samples == samples:
        return block.values
    shape = [len(samples)] + list(block.values.shape[1:])
    values = torch.zeros(shape, dtype=block.values.dtype, device=block.values.device)
    for row in range(len(block.samples)):
        position = samples.position(block.samples.entry(row))
        if position is None:
            raise ValueError("the composition baseline has samples the model has not")
        values[position] = block.values[row]
    return values


def _zbl_info(dataset_info: DatasetInfo, atomic_types: List[int]) -> DatasetInfo:
    """The targets of ``dataset_info`` that ZBL contributes to (energies)."""
    return DatasetInfo(
        length_unit=dataset_info.length_unit,
        atomic_types=atomic_types,
        targets={
            name: info
            for name, info in dataset_info.targets.items()
            if ZBL.is_valid_target(name, info)
        },
    )


def _zbl(dataset_info: DatasetInfo, atomic_types: List[int]) -> ZBL:
    """metatrain's ZBL repulsion for the energies of ``dataset_info``."""
    return ZBL({}, dataset_info=_zbl_info(dataset_info, atomic_types))


def _check_supported_target(name: str, target_info: TargetInfo) -> None:
    if target_info.is_atomic_basis:
        raise ValueError(
            f"target {name!r} is expressed on an atomic basis, which PET does not "
            "support; use scalar, Cartesian or spherical targets"
        )
