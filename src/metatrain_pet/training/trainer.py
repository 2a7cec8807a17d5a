"""The trainer of ``experimental.pet_ecse``: the training protocol of App. B and C of
the paper (Adam, StepLR with optional warm-up or the fast decay of C.2/C.5, the
loss of Eq. 8, per-atom energy loss of C.2, rotational augmentation, early
stopping on a validation set)."""

import copy
import logging
import math
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Union

import metatensor.torch as mts
import torch
from metatrain.composition import train_or_load_composition_model
from metatrain.scaler import train_or_load_scaler
from metatrain.utils.abc import ModelInterface, TrainerInterface
from metatrain.utils.additive import get_remove_additive_transform
from metatrain.utils.data import (
    CollateFn,
    CombinedDataLoader,
    Dataset,
    TargetInfo,
    build_train_dataloaders,
    build_val_dataloaders,
    unpack_batch,
)
from metatrain.utils.evaluate_model import evaluate_model
from metatrain.utils.io import check_file_extension
from metatrain.utils.logging import ROOT_LOGGER, MetricLogger
from metatrain.utils.loss import LossAggregator
from metatrain.utils.metrics import MAEAccumulator, RMSEAccumulator, get_selected_metric
from metatrain.utils.neighbor_lists import (
    get_requested_neighbor_lists,
    get_system_with_neighbor_lists_transform,
)
from metatrain.utils.per_atom import average_by_num_atoms
from metatrain.utils.scaler import get_remove_scale_transform
from metatrain.utils.transfer import batch_to

from ..documentation import TrainerHypers
from ..pet import checkpoints
from ..pet.model import PET
from .augmentation import (
    StructureRotation,
    check_environment_augmentation,
    set_environment_rotation,
)
from .loss import NormalizedLoss, expand_loss_hypers
from .schedule import learning_rate_factor


class Trainer(TrainerInterface[TrainerHypers]):
    """Adam with warm-up and StepLR (or the fast decay), gradient clipping, random
    rotations of structures or of atomic environments, composition baseline and
    scaling, energy and force losses (optionally normalised as in Eq. 8),
    best-model selection, early stopping, periodic checkpoints and exact restarts
    (epoch, optimisation step, learning rate, Adam state and Eq. 8 averages)."""

    __checkpoint_version__ = 2

    def __init__(self, hypers: TrainerHypers) -> None:
        super().__init__(hypers)
        self.epoch: Optional[int] = None
        self.step = 0
        self.optimizer_state_dict: Optional[Dict[str, Any]] = None
        self.scheduler_state_dict: Optional[Dict[str, Any]] = None
        self.best_epoch: Optional[int] = None
        self.best_metric: Optional[float] = None
        self.best_model_state_dict: Optional[Dict[str, Any]] = None
        self.best_optimizer_state_dict: Optional[Dict[str, Any]] = None
        self.loss_normalization: Dict[str, float] = {}
        self.fast_decay_start: Optional[int] = None

    def train(
        self,
        model: PET,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: List[Union[Dataset, torch.utils.data.Subset]],
        val_datasets: List[Union[Dataset, torch.utils.data.Subset]],
        checkpoint_dir: str,
    ) -> None:
        if dtype not in PET.__supported_dtypes__:
            raise ValueError(f"PET cannot be trained in {dtype}")
        check_trainer_hypers(self.hypers, model.dataset_info.targets)
        device = devices[0]
        logging.info(f"Training on device {device} with dtype {dtype}")
        model.to(device=device, dtype=dtype)
        for additive_model in model.additive_models:
            additive_model.to(dtype=torch.float64)
        model.scaler.to(dtype=torch.float64)

        train_targets = model.dataset_info.targets
        train_or_load_composition_model(
            composition_model=model.additive_models[0],
            atomic_baseline=self.hypers["atomic_baseline"],
            train_datasets=train_datasets,
            other_additive_models=list(model.additive_models[1:]),
            batch_size=self.hypers["batch_size"],
            is_distributed=False,
            checkpoint_dir=checkpoint_dir,
        )
        per_structure_targets = (
            [] if self.hypers["per_atom_energy_loss"] else list(train_targets.keys())
        )
        if self.hypers["scale_targets"]:
            train_or_load_scaler(
                scaler=model.scaler,
                train_datasets=train_datasets,
                additive_models=list(model.additive_models),
                batch_size=self.hypers["batch_size"],
                is_distributed=False,
                per_structure_targets=per_structure_targets,
                checkpoint_dir=checkpoint_dir,
            )

        train_dataloader, val_dataloader = self._dataloaders(
            model, train_datasets, val_datasets
        )

        loss_fn = NormalizedLoss(
            LossAggregator(
                targets=train_targets,
                config=expand_loss_hypers(
                    self.hypers["loss"], train_targets, self.hypers["energy_weight"]
                ),
            ),
            self.loss_normalization,
        )
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.hypers["learning_rate"]
        )
        if self.optimizer_state_dict is not None and not model.has_new_targets:
            optimizer.load_state_dict(self.optimizer_state_dict)
        if self.scheduler_state_dict is not None:
            self.step = self.scheduler_state_dict["step"]
            self.fast_decay_start = self.scheduler_state_dict["fast_decay_start"]
        if self.best_metric is None:
            self.best_metric = math.inf

        set_environment_rotation(
            model,
            self.hypers["augmentation"] == "environment",
            self.hypers["random_inversion"],
        )
        self._seed_loss_normalization(
            model, val_dataloader, loss_fn, per_structure_targets
        )
        start_epoch = 0 if self.epoch is None else self.epoch + 1
        end_epoch = self.hypers["num_epochs"]
        logging.info(f"Starting training at epoch {start_epoch}")
        metric_logger: Optional[MetricLogger] = None
        epoch = start_epoch
        for epoch in range(start_epoch, end_epoch):
            if (
                self.fast_decay_start is not None
                and epoch >= self.fast_decay_start + self.hypers["fast_decay_epochs"]
            ):
                logging.info("The fast learning-rate decay is over: stopping")
                break

            train_info = self._run_epoch(
                model, train_dataloader, loss_fn, per_structure_targets, optimizer
            )
            val_info = self._run_epoch(
                model, val_dataloader, loss_fn, per_structure_targets, None
            )
            loss_fn.update_normalization(
                val_info.pop("per_term_mse"), self.hypers, False
            )
            train_info.pop("per_term_mse")

            if metric_logger is None:
                metric_logger = MetricLogger(
                    log_obj=ROOT_LOGGER,
                    dataset_info=model.dataset_info,
                    initial_metrics=[train_info, val_info],
                    names=["training", "validation"],
                )
            if epoch % self.hypers["log_interval"] == 0:
                metric_logger.log(
                    metrics=[train_info, val_info],
                    epoch=epoch,
                    learning_rate=optimizer.param_groups[0]["lr"],
                )

            metric = get_selected_metric(val_info, self.hypers["best_model_metric"])
            if metric < self.best_metric:
                self.best_metric = metric
                self.best_epoch = epoch
                self.best_model_state_dict = copy.deepcopy(model.state_dict())
                self.best_optimizer_state_dict = copy.deepcopy(optimizer.state_dict())

            stop = self._should_stop(epoch)
            if self.fast_decay_start == epoch + 1:
                self._restore_best(model, optimizer)

            self.epoch = epoch
            self.optimizer_state_dict = optimizer.state_dict()
            self.scheduler_state_dict = self._scheduler_state()
            if (epoch + 1) % self.hypers["checkpoint_interval"] == 0:
                self.save_checkpoint(
                    model, Path(checkpoint_dir) / f"model_{epoch}.ckpt"
                )
            if stop:
                break

        set_environment_rotation(model, False, False)
        self.optimizer_state_dict = optimizer.state_dict()
        self.scheduler_state_dict = self._scheduler_state()

    def _dataloaders(
        self,
        model: PET,
        train_datasets: List[Union[Dataset, torch.utils.data.Subset]],
        val_datasets: List[Union[Dataset, torch.utils.data.Subset]],
    ) -> tuple:
        train_targets = model.dataset_info.targets
        additive_models = copy.deepcopy(
            model.additive_models.to(dtype=torch.float64, device="cpu")
        )
        model.additive_models.to(model.scaler.dummy_buffer.device)
        scaler = copy.deepcopy(model.scaler.to(dtype=torch.float64, device="cpu"))
        model.scaler.to(next(model.parameters()).device)

        common = [
            get_system_with_neighbor_lists_transform(
                get_requested_neighbor_lists(model)
            ),
            get_remove_additive_transform(additive_models, train_targets),
            get_remove_scale_transform(scaler),
        ]
        train_callables: List[Any] = []
        if self.hypers["augmentation"] == "structure":
            train_callables.append(
                StructureRotation(train_targets, self.hypers["random_inversion"])
            )
        target_keys = list(train_targets.keys())
        collate_train = CollateFn(
            target_keys=target_keys, callables=train_callables + common
        )
        collate_val = CollateFn(target_keys=target_keys, callables=common)

        batch_size = self.hypers["batch_size"]
        num_workers = self.hypers["num_workers"]
        train_loaders, _ = build_train_dataloaders(
            train_datasets=train_datasets,
            train_distributed_samplers=[None] * len(train_datasets),
            collate_fn_train=collate_train,
            batch_size=batch_size,
            max_atoms_per_batch=None,
            min_atoms_per_batch=0,
            num_workers=num_workers,
        )
        val_loaders = build_val_dataloaders(
            val_datasets=val_datasets,
            val_distributed_samplers=[None] * len(val_datasets),
            collate_fn_val=collate_val,
            batch_size=batch_size,
            max_atoms_per_batch=None,
            num_workers=num_workers,
        )
        return (
            CombinedDataLoader(train_loaders, shuffle=True),
            CombinedDataLoader(val_loaders, shuffle=False),
        )

    def _run_epoch(
        self,
        model: PET,
        dataloader: CombinedDataLoader,
        loss_fn: NormalizedLoss,
        per_structure_targets: List[str],
        optimizer: Optional[torch.optim.Optimizer],
    ) -> Dict[str, Any]:
        """One pass over ``dataloader``: optimisation steps when an ``optimizer`` is
        given, evaluation only otherwise. Returns the loss, the RMSE and MAE of
        every target (in the units of the data), and the MSE of every loss term."""
        training = optimizer is not None
        train_targets = model.dataset_info.targets
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        needs_gradients = any(info.gradients for info in train_targets.values())
        rmse = RMSEAccumulator()
        mae = MAEAccumulator()
        total_loss = 0.0
        term_sums: Dict[str, float] = {}
        n_batches = 0

        batches = dataloader
        if self.hypers["progress_bar"]:
            from tqdm import tqdm

            batches = tqdm(
                dataloader,
                leave=False,
                desc="training" if training else "validation",
                unit="batch",
            )
        for batch in batches:
            systems, targets, extra_data = unpack_batch(batch)
            systems, targets, extra_data = batch_to(
                systems, targets, extra_data, dtype=dtype, device=device
            )
            if training:
                self._set_learning_rate(optimizer, len(dataloader))
                optimizer.zero_grad()
            with torch.set_grad_enabled(training or needs_gradients):
                predictions = evaluate_model(
                    model,
                    systems,
                    {name: train_targets[name] for name in targets.keys()},
                    is_training=training,
                )
                predictions = average_by_num_atoms(
                    predictions, systems, per_structure_targets
                )
                targets = average_by_num_atoms(targets, systems, per_structure_targets)
                loss, terms = loss_fn(predictions, targets, extra_data)
            if training:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(
                    model.parameters(), self.hypers["grad_clip_norm"]
                )
                optimizer.step()
                self.step += 1
            total_loss += loss.item()
            for name, value in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + value
            n_batches += 1

            scaled_predictions = model.scaler.apply_scales(
                systems, _detached(predictions), remove=False
            )
            scaled_targets = model.scaler.apply_scales(systems, targets, remove=False)
            rmse.update(scaled_predictions, scaled_targets, extra_data)
            mae.update(scaled_predictions, scaled_targets, extra_data)

        not_per_atom = ["positions_gradients"] + per_structure_targets
        info: Dict[str, Any] = {"loss": total_loss}
        info.update(rmse.finalize(not_per_atom=not_per_atom))
        info.update(mae.finalize(not_per_atom=not_per_atom))
        info["per_term_mse"] = {
            name: value / max(n_batches, 1) for name, value in term_sums.items()
        }
        return info

    def _seed_loss_normalization(
        self,
        model: PET,
        val_dataloader: CombinedDataLoader,
        loss_fn: NormalizedLoss,
        per_structure_targets: List[str],
    ) -> None:
        """Eq. 8 from the first step: seed every MSE_t with the validation error of
        the model before training (not on restart, which keeps its averages)."""
        if self.hypers["loss_normalization"] != "validation_ema":
            return
        if self.loss_normalization:
            return
        seed = self._run_epoch(
            model, val_dataloader, loss_fn, per_structure_targets, None
        )
        loss_fn.update_normalization(seed["per_term_mse"], self.hypers, True)

    def _set_learning_rate(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
    ) -> None:
        factor = learning_rate_factor(
            step=self.step,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=self.hypers["warmup_epochs"],
            step_size=self.hypers["scheduler_step_size"],
            gamma=self.hypers["scheduler_gamma"],
            fast_decay_start=self.fast_decay_start,
            fast_decay_epochs=self.hypers["fast_decay_epochs"],
            cosine_epochs=(
                self.hypers["num_epochs"]
                if self.hypers["scheduler"] == "cosine"
                else None
            ),
        )
        for group in optimizer.param_groups:
            group["lr"] = self.hypers["learning_rate"] * factor

    def _should_stop(self, epoch: int) -> bool:
        """Early stopping, or the start of the fast decay, once the validation
        metric has not improved for the configured number of epochs.

        With ``scheduler: fast_decay`` the decay starts at the next epoch, from the
        state of the best-validation epoch (App. C.5: "we start fast decaying of the
        learning rate at the epoch with the best validation error"); training stops
        once the decay is over, and early stopping does not apply.
        """
        assert self.best_epoch is not None
        stalled = epoch - self.best_epoch
        if self.hypers["scheduler"] == "fast_decay" and self.fast_decay_start is None:
            if stalled >= self.hypers["fast_decay_patience"]:
                self.fast_decay_start = epoch + 1
                logging.info(
                    f"No improvement for {stalled} epochs: starting the fast "
                    f"learning-rate decay at epoch {epoch + 1}"
                )
            return False
        patience = self.hypers["early_stopping_patience"]
        if patience > 0 and self.fast_decay_start is None and stalled >= patience:
            logging.info(
                f"Early stopping: no improvement for {stalled} epochs; the best "
                f"model is the one of epoch {self.best_epoch}"
            )
            return True
        return False

    def _restore_best(self, model: PET, optimizer: torch.optim.Optimizer) -> None:
        """Go back to the weights and Adam state of the best-validation epoch, from
        which the fast decay starts."""
        assert self.best_model_state_dict is not None
        assert self.best_optimizer_state_dict is not None
        model.load_state_dict(self.best_model_state_dict)
        optimizer.load_state_dict(self.best_optimizer_state_dict)
        logging.info(f"The fast decay starts from the model of epoch {self.best_epoch}")

    def _scheduler_state(self) -> Dict[str, Any]:
        return {"step": self.step, "fast_decay_start": self.fast_decay_start}

    def save_checkpoint(self, model: ModelInterface, path: Union[str, Path]) -> None:
        checkpoint = model.get_checkpoint()
        checkpoint.update(
            {
                "train_hypers": self.hypers,
                "trainer_ckpt_version": self.__checkpoint_version__,
                "epoch": self.epoch,
                "optimizer_state_dict": self.optimizer_state_dict,
                "scheduler_state_dict": self._scheduler_state(),
                "loss_normalization": self.loss_normalization,
                "best_epoch": self.best_epoch,
                "best_metric": self.best_metric,
                "best_model_state_dict": self.best_model_state_dict,
                "best_optimizer_state_dict": self.best_optimizer_state_dict,
            }
        )
        torch.save(checkpoint, check_file_extension(path, ".ckpt"))

    @classmethod
    def load_checkpoint(
        cls,
        checkpoint: Dict[str, Any],
        hypers: TrainerHypers,
        context: Literal["restart", "finetune"],
    ) -> "Trainer":
        trainer = cls(hypers)
        if context == "restart":
            trainer.epoch = checkpoint["epoch"]
            trainer.optimizer_state_dict = checkpoint["optimizer_state_dict"]
            trainer.scheduler_state_dict = checkpoint["scheduler_state_dict"]
            trainer.loss_normalization = dict(checkpoint["loss_normalization"])
            trainer.best_epoch = checkpoint["best_epoch"]
            trainer.best_metric = checkpoint["best_metric"]
            trainer.best_model_state_dict = checkpoint["best_model_state_dict"]
            trainer.best_optimizer_state_dict = checkpoint["best_optimizer_state_dict"]
        return trainer

    @classmethod
    def upgrade_checkpoint(cls, checkpoint: Dict[str, Any]) -> Dict[str, Any]:
        return checkpoints.upgrade(
            checkpoint,
            "trainer",
            cls.__checkpoint_version__,
            checkpoints.TRAINER_UPDATES,
        )


def check_trainer_hypers(hypers: TrainerHypers, targets: Dict[str, TargetInfo]) -> None:
    """Refuse, before any training, the options that the hypers' types cannot
    catch: counts that must be positive, a loss given for a target that is not
    trained, and targets that the requested augmentation cannot handle."""
    for name in (
        "batch_size",
        "scheduler_step_size",
        "fast_decay_epochs",
        "log_interval",
        "checkpoint_interval",
    ):
        if hypers[name] < 1:
            raise ValueError(
                f"training option `{name}` must be >= 1, got {hypers[name]}"
            )
    for name in ("warmup_epochs", "fast_decay_patience", "early_stopping_patience"):
        if hypers[name] < 0:
            raise ValueError(
                f"training option `{name}` must be >= 0, got {hypers[name]}"
            )
    energy_weight = hypers["energy_weight"]
    if not energy_weight >= 0.0:
        raise ValueError(
            f"training option `energy_weight` must be >= 0, got {energy_weight}"
        )
    if not 0.0 < hypers["loss_ema_alpha"] <= 1.0:
        raise ValueError(
            "training option `loss_ema_alpha` must be in (0, 1], got "
            f"{hypers['loss_ema_alpha']}"
        )
    if isinstance(hypers["loss"], dict):
        unknown = [name for name in hypers["loss"] if name not in targets]
        if len(unknown) > 0:
            raise ValueError(
                f"the `loss` option names {unknown}, which are not among the "
                f"training targets {list(targets)}"
            )
    if hypers["augmentation"] == "environment":
        check_environment_augmentation(targets)


def _detached(tensor_maps: Dict[str, Any]) -> Dict[str, Any]:
    return {name: mts.detach(tensor_map) for name, tensor_map in tensor_maps.items()}
