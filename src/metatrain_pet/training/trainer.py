"""The trainer of ``experimental.pet_ecse``: the training protocol of App. B and C of
the paper (Adam, StepLR with optional warm-up or the fast decay of C.2/C.5, the
loss of Eq. 8, per-atom energy loss of C.2, rotational augmentation, early
stopping on a validation set)."""

import copy
import logging
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Optional, Tuple, Union

import metatensor.torch as mts
import torch
from metatensor.torch import TensorMap
from metatomic.torch import System
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
from ..files import save_checkpoint
from ..pet import checkpoints, finetuning
from ..pet.model import PET
from ..systems.inputs import attach_extra_data, data_name
from . import distributed
from .augmentation import (
    StructureRotation,
    check_environment_augmentation,
    set_environment_rotation,
)
from .baselines import check_composition_baseline
from .loss import NormalizedLoss, expand_loss_hypers
from .schedule import learning_rate_factor

Datasets = List[Union[Dataset, torch.utils.data.Subset]]
Batch = Tuple[List[System], Dict[str, TensorMap], Dict[str, TensorMap]]
Errors = Tuple[RMSEAccumulator, MAEAccumulator]


class Trainer(TrainerInterface[TrainerHypers]):
    """Adam with warm-up and StepLR (or the fast decay), gradient clipping, random
    rotations of structures or of atomic environments, composition baseline and
    scaling, energy and force losses (optionally normalised as in Eq. 8),
    best-model selection, early stopping, periodic checkpoints and exact restarts
    (epoch, optimisation step, learning rate, Adam state and Eq. 8 averages)."""

    __checkpoint_version__ = 4

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
        self.validated = True
        self._processes = distributed.Processes(0, 1, torch.device("cpu"))
        self._network: torch.nn.Module = torch.nn.Identity()
        self._epoch_samplers: List[Any] = []

    def train(
        self,
        model: PET,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: Datasets,
        val_datasets: Datasets,
        checkpoint_dir: str,
    ) -> None:
        """Fit the baselines, then train one epoch after the other until
        ``num_epochs``, early stopping or the end of the fast decay (App. B, C)."""
        self._prepare_model(model, dtype, devices)
        self._start_finetuning(model)
        self._fit_baselines(model, train_datasets, checkpoint_dir)
        train_data, val_data = self._dataloaders(model, train_datasets, val_datasets)
        loss_fn = self._build_loss(model)
        optimizer = self._build_optimizer(model)

        set_environment_rotation(
            model,
            self.hypers["augmentation"] == "environment",
            self.hypers["random_inversion"],
        )
        self._network = distributed.wrap(model, self._processes)
        self._seed_loss_normalization(model, val_data, loss_fn)
        start_epoch = 0 if self.epoch is None else self.epoch + 1
        self._warn_about_settings(start_epoch, val_datasets)
        logging.info(f"Starting training at epoch {start_epoch}")
        metric_logger: Optional[MetricLogger] = None
        for epoch in range(start_epoch, self.hypers["num_epochs"]):
            if self._fast_decay_is_over(epoch):
                break
            for sampler in self._epoch_samplers:
                sampler.set_epoch(epoch)
            train_info, _ = self._run_epoch(model, train_data, loss_fn, optimizer)
            val_info, val_terms = self._run_epoch(model, val_data, loss_fn, None)
            loss_fn.update_normalization(val_terms, self.hypers, False)
            metric_logger = self._log_epoch(
                metric_logger, model, epoch, [train_info, val_info], optimizer
            )
            self._track_best(model, optimizer, epoch, val_info)
            stop = self._should_stop(epoch)
            if self.fast_decay_start == epoch + 1:
                self._restore_best(model, optimizer)
            self.epoch = epoch
            self._record_optimizer_state(optimizer)
            self._save_periodic_checkpoint(model, epoch, checkpoint_dir)
            if stop:
                break

        set_environment_rotation(model, False, False)
        self._record_optimizer_state(optimizer)
        distributed.stop(self._processes)

    def _prepare_model(
        self, model: PET, dtype: torch.dtype, devices: List[torch.device]
    ) -> None:
        """Refuse bad options, join the other processes of a distributed training,
        then move the model to the first device (or to that of this process) and to
        ``dtype``; the additive models and the scaler stay in float64."""
        if dtype not in PET.__supported_dtypes__:
            raise ValueError(f"PET cannot be trained in {dtype}")
        check_trainer_hypers(self.hypers, model.dataset_info.targets)
        self._processes = distributed.start(
            self.hypers["distributed"], self.hypers["distributed_port"], devices[0]
        )
        if self._processes.distributed and self.hypers["invariance_weight"] > 0.0:
            raise ValueError(
                "training option `invariance_weight` does not work in distributed "
                "training (DDP takes one forward pass per step, the penalty two): "
                "train on one process or set it to 0"
            )
        device = self._processes.device
        logging.info(
            f"Training on device {device} with dtype {dtype}, "
            f"{self._processes.world_size} process(es)"
        )
        model.to(device=device, dtype=dtype)
        for additive_model in model.additive_models:
            additive_model.to(dtype=torch.float64)
        model.scaler.to(dtype=torch.float64)

    def _start_finetuning(self, model: PET) -> None:
        """When fine-tuning starts (``finetune.read_from``, not on a restart),
        apply ``finetune.method``: freeze, inject adapters, inherit heads."""
        if self.hypers["finetune"]["read_from"] is None or self.epoch is not None:
            return
        config = finetuning.strategy(self.hypers["finetune"])
        finetuning.apply(model, config, first_time=True)
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logging.info(
            f"Fine-tuning with method '{config['method']}': {trained} parameters "
            "are trained"
        )

    def _per_structure_targets(self, model: PET) -> List[str]:
        """The targets whose loss is on per-structure values: none with the
        per-atom energy loss of C.2, all of them otherwise."""
        if self.hypers["per_atom_energy_loss"]:
            return []
        return list(model.dataset_info.targets.keys())

    def _fit_baselines(
        self, model: PET, train_datasets: Datasets, checkpoint_dir: str
    ) -> None:
        """Fit (or load) the composition baseline on the training set and, with
        ``scale_targets``, the scale of every target."""
        train_or_load_composition_model(
            composition_model=model.additive_models[0],
            atomic_baseline=self.hypers["atomic_baseline"],
            train_datasets=train_datasets,
            other_additive_models=list(model.additive_models[1:]),
            batch_size=self.hypers["batch_size"],
            is_distributed=self._processes.distributed,
            checkpoint_dir=checkpoint_dir,
        )
        check_composition_baseline(model.additive_models[0], train_datasets)
        if self.hypers["scale_targets"]:
            train_or_load_scaler(
                scaler=model.scaler,
                train_datasets=train_datasets,
                additive_models=list(model.additive_models),
                batch_size=self.hypers["batch_size"],
                is_distributed=self._processes.distributed,
                per_structure_targets=self._per_structure_targets(model),
                checkpoint_dir=checkpoint_dir,
            )

    def _dataloaders(
        self, model: PET, train_datasets: Datasets, val_datasets: Datasets
    ) -> Tuple[CombinedDataLoader, CombinedDataLoader]:
        """Batches of ``batch_size`` structures: shuffled for training, in order for
        validation; each process of a distributed training takes its share."""
        collate_train, collate_val = self._collate_fns(model)
        batch_size = self.hypers["batch_size"]
        num_workers = self.hypers["num_workers"]
        train_loaders, self._epoch_samplers = build_train_dataloaders(
            train_datasets=train_datasets,
            train_distributed_samplers=distributed.train_samplers(
                train_datasets, self._processes
            ),
            collate_fn_train=collate_train,
            batch_size=batch_size,
            max_atoms_per_batch=None,
            min_atoms_per_batch=0,
            num_workers=num_workers,
        )
        val_loaders = build_val_dataloaders(
            val_datasets=distributed.validation_share(val_datasets, self._processes),
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

    def _collate_fns(self, model: PET) -> Tuple[CollateFn, CollateFn]:
        """How training and validation batches are made: neighbour lists, and the
        composition baseline and the scales (float64 copies on the CPU) removed
        from the targets; for training, first the structure rotations."""
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
        # the inputs go onto the dataset's own systems (which rotations copy), so
        # that metatrain's final evaluation of the training and validation sets,
        # which gives models per-system inputs only, finds the per-atom ones there
        inputs = attach_extra_data(_extra_inputs(model))
        train_callables: List[Any] = [inputs]
        if self.hypers["augmentation"] == "structure":
            train_callables.append(
                StructureRotation(train_targets, self.hypers["random_inversion"])
            )
        target_keys = list(train_targets.keys())
        return (
            CollateFn(target_keys=target_keys, callables=train_callables + common),
            CollateFn(target_keys=target_keys, callables=[inputs] + common),
        )

    def _build_loss(self, model: PET) -> NormalizedLoss:
        """The loss of Eq. 8: metatrain's terms and weights (``energy_weight`` on the
        energies), each divided by its moving average in ``loss_normalization``,
        which checkpoints save."""
        targets = model.dataset_info.targets
        aggregator = LossAggregator(
            targets=targets,
            config=expand_loss_hypers(
                self.hypers["loss"], targets, self.hypers["energy_weight"]
            ),
        )
        return NormalizedLoss(aggregator, self.loss_normalization)

    def _build_optimizer(self, model: PET) -> torch.optim.Adam:
        """Adam (App. B), resuming on restart the Adam state (unless the model has
        new targets), the optimisation step and the start of the fast decay; with
        no best epoch yet, the best validation metric starts at infinity."""
        trained = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trained, lr=self.hypers["learning_rate"])
        if self.optimizer_state_dict is not None and not model.has_new_targets:
            optimizer.load_state_dict(self.optimizer_state_dict)
        if self.scheduler_state_dict is not None:
            self.step = self.scheduler_state_dict["step"]
            self.fast_decay_start = self.scheduler_state_dict["fast_decay_start"]
        if self.best_metric is None:
            self.best_metric = math.inf
        return optimizer

    def _run_epoch(
        self,
        model: PET,
        dataloader: CombinedDataLoader,
        loss_fn: NormalizedLoss,
        optimizer: Optional[torch.optim.Optimizer],
    ) -> Tuple[Dict[str, Any], Dict[str, float]]:
        """One pass over ``dataloader``: optimisation steps when an ``optimizer`` is
        given, evaluation only otherwise. Returns the loss with the RMSE and MAE of
        every target (in the units of the data), and the MSE of every loss term."""
        per_structure_targets = self._per_structure_targets(model)
        errors = (RMSEAccumulator(), MAEAccumulator())
        losses: List[float] = []
        terms: List[Dict[str, float]] = []
        for batch in self._progress(dataloader, optimizer is not None):
            systems, targets, extra_data = _to_model(batch, model)
            predictions, targets, loss, batch_terms = self._step(
                model,
                (systems, targets, extra_data),
                loss_fn,
                per_structure_targets,
                optimizer,
                len(dataloader),
            )
            losses.append(loss)
            terms.append(batch_terms)
            _accumulate_errors(errors, model, systems, predictions, targets, extra_data)
        return _epoch_metrics(
            losses, terms, errors, per_structure_targets, self._processes
        )

    def _progress(self, dataloader: CombinedDataLoader, training: bool) -> Iterable:
        """The batches of ``dataloader``, behind a progress bar with
        ``progress_bar``."""
        if not self.hypers["progress_bar"]:
            return dataloader
        from tqdm import tqdm

        return tqdm(
            dataloader,
            leave=False,
            desc="training" if training else "validation",
            unit="batch",
        )

    def _step(
        self,
        model: PET,
        batch: Batch,
        loss_fn: NormalizedLoss,
        per_structure_targets: List[str],
        optimizer: Optional[torch.optim.Optimizer],
        steps_per_epoch: int,
    ) -> Tuple[Dict[str, TensorMap], Dict[str, TensorMap], float, Dict[str, float]]:
        """One batch: predictions and loss on per-atom values (except for the
        ``per_structure_targets``) and, with an ``optimizer``, one Adam step at the
        scheduled learning rate with the gradient norm clipped to
        ``grad_clip_norm`` (averaged over the processes first, by DDP). Returns
        the predictions and targets that the loss saw, the loss and its terms."""
        systems, targets, extra_data = batch
        training = optimizer is not None
        train_targets = model.dataset_info.targets
        needs_gradients = any(info.gradients for info in train_targets.values())
        if training:
            self._set_learning_rate(optimizer, steps_per_epoch)
            optimizer.zero_grad()
        with torch.set_grad_enabled(training or needs_gradients):
            targets = average_by_num_atoms(targets, systems, per_structure_targets)
            predictions = self._predict(
                model, systems, targets, per_structure_targets, training
            )
            loss, terms = loss_fn(predictions, targets, extra_data)
            if training and self.hypers["invariance_weight"] > 0.0:
                second = self._predict(
                    model, systems, targets, per_structure_targets, True
                )
                loss = self._with_invariance_penalty(
                    loss, predictions, second, (targets, extra_data), loss_fn
                )
        if training:
            if self._processes.distributed:  # DDP wants every parameter in the graph
                loss = loss + 0.0 * sum(
                    p.sum() for p in optimizer.param_groups[0]["params"]
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                model.parameters(), self.hypers["grad_clip_norm"]
            )
            optimizer.step()
            self.step += 1
        return predictions, targets, loss.item(), terms

    def _predict(
        self,
        model: PET,
        systems: List[System],
        targets: Dict[str, TensorMap],
        per_structure_targets: List[str],
        training: bool,
    ) -> Dict[str, TensorMap]:
        """The predictions the loss compares with ``targets`` (per atom, except for
        the ``per_structure_targets``), by the training network or the model."""
        train_targets = model.dataset_info.targets
        predictions = evaluate_model(
            self._network if training else model,
            systems,
            {name: train_targets[name] for name in targets.keys()},
            is_training=training,
        )
        return average_by_num_atoms(predictions, systems, per_structure_targets)

    def _with_invariance_penalty(
        self,
        loss: torch.Tensor,
        predictions: Dict[str, TensorMap],
        second: Dict[str, TensorMap],
        data: Tuple[Dict[str, TensorMap], Dict[str, TensorMap]],
        loss_fn: NormalizedLoss,
    ) -> torch.Tensor:
        """L = (L(y_1, t) + L(y_2, t)) / 2 + λ L(y_1, y_2), where y_2 are the
        ``second`` predictions of the batch, made with fresh per-environment
        rotations, and λ = ``invariance_weight``: the disagreement of the two is
        measured by their own loss terms (same weights and normalisation).
        Augmentation alone weighs the variance of the predictions over rotations
        like the squared bias; the penalty weighs it 1 + 2λ times, pushing the
        messages towards the invariance that layer-wise ECSE needs (App. F.10)."""
        targets, extra_data = data
        second_loss, _ = loss_fn(second, targets, extra_data)
        disagreement, _ = loss_fn(predictions, second, extra_data)
        weight = self.hypers["invariance_weight"]
        return 0.5 * (loss + second_loss) + weight * disagreement

    def _seed_loss_normalization(
        self,
        model: PET,
        val_dataloader: CombinedDataLoader,
        loss_fn: NormalizedLoss,
    ) -> None:
        """Eq. 8 from the first step: seed every MSE_t with the validation error of
        the model before training (not on restart, which keeps its averages)."""
        if self.hypers["loss_normalization"] != "validation_ema":
            return
        if self.loss_normalization:
            return
        _, seed = self._run_epoch(model, val_dataloader, loss_fn, None)
        loss_fn.update_normalization(seed, self.hypers, True)

    def _set_learning_rate(
        self, optimizer: torch.optim.Optimizer, steps_per_epoch: int
    ) -> None:
        """The learning rate of the current step: warm-up, then StepLR, the fast
        decay or the cosine schedule."""
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

    def _log_epoch(
        self,
        metric_logger: Optional[MetricLogger],
        model: PET,
        epoch: int,
        metrics: List[Dict[str, Any]],
        optimizer: torch.optim.Optimizer,
    ) -> MetricLogger:
        """One summary line of the training and validation ``metrics`` every
        ``log_interval`` epochs. The logger is made at the first epoch, whose
        metrics set the widths of its columns."""
        if metric_logger is None:
            metric_logger = MetricLogger(
                log_obj=ROOT_LOGGER,
                dataset_info=model.dataset_info,
                initial_metrics=metrics,
                names=["training", "validation"],
            )
        if epoch % self.hypers["log_interval"] == 0:
            metric_logger.log(
                metrics=metrics,
                epoch=epoch,
                learning_rate=optimizer.param_groups[0]["lr"],
            )
        return metric_logger

    def _track_best(
        self,
        model: PET,
        optimizer: torch.optim.Optimizer,
        epoch: int,
        val_info: Dict[str, Any],
    ) -> None:
        """Keep the weights and Adam state of the epoch with the best validation
        ``best_model_metric``."""
        metric = get_selected_metric(val_info, self.hypers["best_model_metric"])
        if not self.validated:
            metric = -float(epoch)  # no validation data: the latest epoch is kept
        if metric < self.best_metric:
            self.best_metric = metric
            self.best_epoch = epoch
            self.best_model_state_dict = copy.deepcopy(model.state_dict())
            self.best_optimizer_state_dict = copy.deepcopy(optimizer.state_dict())

    def _warn_about_settings(self, start_epoch: int, val_datasets: Datasets) -> None:
        """Say it when nothing will be trained, or when there is no validation
        data to choose the best model with (the last epoch's is kept then)."""
        if start_epoch >= self.hypers["num_epochs"]:
            logging.warning(
                f"num_epochs is {self.hypers['num_epochs']}: no epoch will be "
                "trained, and the exported model holds the weights it starts with"
            )
        self.validated = sum(len(dataset) for dataset in val_datasets) > 0
        if not self.validated:
            logging.warning(
                "the validation set is empty: there is nothing to choose the best "
                "model with, so the model of the last epoch is kept and exported"
            )

    def _fast_decay_is_over(self, epoch: int) -> bool:
        """Whether the fast decay (App. C.5) has run for its ``fast_decay_epochs``
        before ``epoch``, which ends the training."""
        over = (
            self.fast_decay_start is not None
            and epoch >= self.fast_decay_start + self.hypers["fast_decay_epochs"]
        )
        if over:
            logging.info("The fast learning-rate decay is over: stopping")
        return over

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

    def _record_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep the Adam state and the schedule state, which checkpoints save."""
        self.optimizer_state_dict = optimizer.state_dict()
        self.scheduler_state_dict = self._scheduler_state()

    def _save_periodic_checkpoint(
        self, model: PET, epoch: int, checkpoint_dir: str
    ) -> None:
        """Save ``model_{epoch}.ckpt`` every ``checkpoint_interval`` epochs (from
        the main process only)."""
        interval = self.hypers["checkpoint_interval"]
        if self._processes.main and (epoch + 1) % interval == 0:
            self.save_checkpoint(model, Path(checkpoint_dir) / f"model_{epoch}.ckpt")

    def _scheduler_state(self) -> Dict[str, Any]:
        """What a restart needs to continue the learning-rate schedule."""
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
        save_checkpoint(checkpoint, check_file_extension(path, ".ckpt"))

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
    _check_invariance_weight(hypers)


def _check_invariance_weight(hypers: TrainerHypers) -> None:
    """``invariance_weight`` is a non-negative weight, and compares two
    evaluations that differ only by their per-environment rotations."""
    weight = hypers["invariance_weight"]
    if not weight >= 0.0:
        raise ValueError(
            f"training option `invariance_weight` must be >= 0, got {weight}"
        )
    if weight > 0.0 and hypers["augmentation"] != "environment":
        raise ValueError(
            "training option `invariance_weight` needs `augmentation: environment` "
            f"(got `{hypers['augmentation']}`): it compares two evaluations of a "
            "batch with different per-environment rotations"
        )


def _extra_inputs(model: PET) -> List[str]:
    """The extra inputs of ``model``, which the dataset must hold as
    ``extra_data`` (checked before any training)."""
    names = list(model.requested_inputs())
    declared = model.dataset_info.extra_data
    missing = [data_name(name) for name in names if data_name(name) not in declared]
    if len(missing) > 0:
        raise ValueError(
            f"the model reads the inputs {names}, but the training set does not "
            f"declare {missing}: add them to its `extra_data` section"
        )
    return names


def _to_model(batch: Any, model: PET) -> Batch:
    """The systems, targets and extra data of ``batch``, on the device and in the
    dtype of ``model``."""
    parameter = next(model.parameters())
    systems, targets, extra_data = unpack_batch(batch)
    return batch_to(
        systems, targets, extra_data, dtype=parameter.dtype, device=parameter.device
    )


def _accumulate_errors(
    errors: Errors,
    model: PET,
    systems: List[System],
    predictions: Dict[str, TensorMap],
    targets: Dict[str, TensorMap],
    extra_data: Dict[str, TensorMap],
) -> None:
    """Add the errors of one batch, in the units of the data (the scales of the
    model put back), to the RMSE and MAE accumulators."""
    scaled_predictions = model.scaler.apply_scales(
        systems, _detached(predictions), remove=False
    )
    scaled_targets = model.scaler.apply_scales(systems, targets, remove=False)
    for accumulator in errors:
        accumulator.update(scaled_predictions, scaled_targets, extra_data)


def _epoch_metrics(
    losses: List[float],
    terms: List[Dict[str, float]],
    errors: Errors,
    per_structure_targets: List[str],
    processes: distributed.Processes,
) -> Tuple[Dict[str, Any], Dict[str, float]]:
    """The summed loss with the RMSE and MAE of every target, and the mean over the
    batches of every loss term (the loss averaged over the processes, whose
    batches are shares of the global ones; the errors over all structures)."""
    not_per_atom = ["positions_gradients"] + per_structure_targets
    info = distributed.mean({"loss": sum(losses, 0.0)}, processes)
    for accumulator in errors:
        info.update(
            accumulator.finalize(
                not_per_atom=not_per_atom,
                is_distributed=processes.distributed,
                device=processes.device,
            )
        )
    term_sums: Dict[str, float] = {}
    for batch_terms in terms:
        for name, value in batch_terms.items():
            term_sums[name] = term_sums.get(name, 0.0) + value
    per_term_mse = {
        name: value / max(len(terms), 1) for name, value in term_sums.items()
    }
    return info, distributed.mean(per_term_mse, processes)


def _detached(tensor_maps: Dict[str, Any]) -> Dict[str, Any]:
    return {name: mts.detach(tensor_map) for name, tensor_map in tensor_maps.items()}
