"""
PET with ECSE (``experimental.pet_ecse``)
=========================================

The Point Edge Transformer of Pozdnyakov & Ceriotti (NeurIPS 2023): a message-passing
network whose every block is a transformer over the tokens of one atomic environment
(the central atom and one token per neighbour). Geometry enters through the Cartesian
edge vectors r_ij, so the model is not rotationally invariant by construction; it
learns the symmetry from rotational augmentation, and the Equivariant Coordinate
System Ensemble (ECSE, Sec. 5 and App. F of the paper) makes it exact when wanted.

Usage in an options file:

.. code-block:: yaml

    architecture:
      name: experimental.pet_ecse
      model:
        cutoff: 5.0
      training:
        num_epochs: 100

{{SECTION_INSTALLATION}}

Additional outputs
------------------

- ``feature``: the per-atom features (the central-atom token and the cutoff-weighted
  sum of the edge tokens of the last block, concatenated).
- ``mtt::aux::ecse_num_frames``: with ``ecse.enable``, the number of frames used per
  structure, to see what symmetrization costs (in ``per_atom`` and ``layerwise``
  modes every atom has its own frames: their sum over the structure's atoms).

{{SECTION_DEFAULT_HYPERS}}
"""

from typing import Any, Dict, Literal, Optional

from metatrain.composition.documentation import FixedCompositionWeights
from metatrain.utils.hypers import init_with_defaults
from metatrain.utils.long_range import LongRangeHypers
from metatrain.utils.loss import LossSpecification
from typing_extensions import TypedDict

from .ecse.hypers import ECSEHypers


class ModelHypers(TypedDict):
    """Hyper-parameters of the PET model (Fig. 2 and App. A of the paper). The
    defaults are the best of the ablation in ``docs/training.md``; the paper's
    model is spelled out in ``options/ethanol.yaml``."""

    cutoff: float = 5.0
    """Cutoff radius R_c of every message-passing block, in the length unit of the
    dataset. Neighbours are smoothly switched off between R_c - Δ_Rc and R_c."""
    cutoff_width: float = 0.5
    """Width Δ_Rc of the smooth cutoff function f_c (Eq. 9)."""
    d_pet: int = 128
    """Width d_PET of all tokens and messages."""
    num_heads: int = 4
    """Number of attention heads of every transformer layer."""
    d_feedforward: int = 512
    """Hidden dimension of the feed-forward network of every transformer layer."""
    num_attention_layers: int = 2
    """Number n_TL of transformer layers inside each message-passing block."""
    num_gnn_layers: int = 2
    """Number n_GNN of message-passing blocks. The interaction range of the exported
    model is ``num_gnn_layers * cutoff``."""
    transformer_type: Literal["PostLN", "PreLN"] = "PreLN"
    """Layer normalisation after each residual sum (``PostLN``, the paper's
    transformer) or before each sub-layer (``PreLN``)."""
    normalization: Literal["LayerNorm", "RMSNorm"] = "LayerNorm"
    """Normalisation of every transformer layer: ``LayerNorm`` (the paper's) or
    ``RMSNorm``."""
    activation: Literal["SiLU", "SwiGLU"] = "SiLU"
    """Feed-forward network of every transformer layer: two linear layers with a
    SiLU between them (the paper's) or a gated ``SwiGLU`` network."""
    attention_temperature: float = 1.0
    """Attention scores are divided by ``sqrt(d_pet / num_heads) * temperature``."""
    d_readout: int = 128
    """Hidden width of the atomic (H_c) and bond (H_n) prediction heads."""
    bond_aggregation: Literal["sum", "average"] = "sum"
    """How bond contributions of a block are aggregated on the central atom: the
    cutoff-weighted ``sum`` of Eq. 7 or the cutoff-weighted ``average`` of Eq. 6."""
    encode_length: bool = True
    """Also feed ‖r_ij‖ to the geometry embedding L (4 -> d_PET instead of 3)."""
    radial_basis: int = 16
    """Number of Gaussians of ‖r_ij‖ (centres evenly spaced from 0 to the cutoff)
    appended to the input of the geometry embedding L; 0 for the paper's raw
    r_ij. With them, forces on water64 start to be learned within 30 CPU-minutes
    (they did not without), see ``docs/training.md``."""
    use_only_lengths: bool = False
    """Encode only ‖r_ij‖ (1 -> d_PET): an exactly rotation- and inversion-invariant
    2-body PET, the auxiliary model of App. C.1 for the collinear fallback of ECSE."""
    species_as_first_message: bool = True
    """Use the neighbour-species embedding as the input message of the first block
    instead of concatenating it (App. A), so that every compression MLP M maps
    2 d_PET -> d_PET."""
    carry_central_token: bool = False
    """Start the central token of every block after the first from the output
    central token of the previous block plus the species embedding E_c(s_i),
    instead of E_c(s_i) alone (the paper's)."""
    readout: Literal["every_block", "last_block"] = "every_block"
    """Predict from every block and sum (the paper's, App. A) or from the last
    block only."""
    zbl: bool = False
    """Add metatrain's ZBL repulsion (the screened nuclear repulsion of Ziegler,
    Biersack and Littmark, switched off at the sum of the covalent radii) to the
    energy, so that atoms pushed together in hot MD or by a poor model are pushed
    apart; the network learns the difference to it."""
    long_range: LongRangeHypers = init_with_defaults(LongRangeHypers)
    """Long-range electrostatics (App. F.9), with metatrain's long-range
    featurizer: latent charges from PET's central tokens, their Coulomb potential
    beyond the cutoff by ``torch-pme`` (Ewald or P3M for periodic structures, a
    direct sum for molecules), mixed into every block's central tokens before the
    readout. In training, Ewald is used whatever ``use_ewald`` says (P3M makes
    training unstable, as metatrain's ``pet`` found). ``selected_atoms`` then
    only selects outputs: the charges of all atoms are needed."""
    atomic_inputs: list[str] = []
    """Per-atom scalar inputs that the systems carry (``System.get_data``), such as
    collinear magnetic moments (App. C.3): each is concatenated to r_ij in the
    geometry embedding of the neighbour's edges and embedded into the central
    token. In training they come from the dataset's ``extra_data`` (with
    ``sample_kind: atom``) under the name without its namespace
    (``initial_magmoms`` for ``ase::initial_magmoms``); in ASE, the name
    ``ase::initial_magmoms`` reads ``atoms.get_initial_magnetic_moments()``. An
    engine that does not give them gets an error that names them."""
    discretize_atomic_inputs: bool = False
    """Round the atomic inputs as App. C.3 rounds spins: (-inf, -0.25] -> -1,
    (-0.25, 0.25) -> 0, [0.25, inf) -> 1."""
    system_conditioning: bool = False
    """Condition on the total charge and spin multiplicity of every structure
    (per-system inputs ``charge`` and ``spin_multiplicity``, integers, from the
    dataset's ``extra_data`` or from the engine; metatomic's ASE calculator reads
    ``atoms.info["charge"]`` and ``atoms.info["spin_multiplicity"]``): their one-hot
    codes are extra inputs of every atom."""
    max_charge: int = 10
    """System conditioning: charges from ``-max_charge`` to ``max_charge``."""
    max_spin_multiplicity: int = 10
    """System conditioning: spin multiplicities 2S + 1 from 1 to this."""
    ecse: ECSEHypers = init_with_defaults(ECSEHypers)
    """Apply the Equivariant Coordinate System Ensemble in the forward pass (see
    :class:`metatrain_pet.ecse.hypers.ECSEHypers`)."""


class FinetuneHypers(TypedDict):
    """Where fine-tuning starts from and what it may change (metatrain's
    fine-tuning strategies, as for its ``pet``)."""

    read_from: Optional[str] = None
    """Checkpoint to fine-tune. The model hyper-parameters of the options file must
    match the checkpoint's, except ``ecse``: this is how a trained PET is
    symmetrized and then fine-tuned as a whole (App. F.7)."""
    method: Literal["full", "heads", "lora"] = "full"
    """``full``: every parameter is trained. ``heads``: only the parameters under the
    module prefixes of ``config.head_modules`` and ``config.last_layer_modules``
    (default: every prediction head, ``network.heads``). ``lora``: the weights stay
    frozen and low-rank adapters W + (α/r) B A are trained on the linear layers
    named in ``config.target_modules`` (default: the attention and feed-forward
    projections, ``input_projection`` and ``output_projection``), with
    ``config.rank`` r (default 4) and ``config.alpha`` α (default 8); the exported
    model has the adapters merged into the weights."""
    config: Dict[str, Any] = {}
    """Options of ``method`` (see there)."""
    inherit_heads: Dict[str, str] = {}
    """New target -> existing target whose heads initialise the new one's."""


class TrainerHypers(TypedDict):
    """Hyper-parameters of the PET trainer (App. B of the paper)."""

    batch_size: int = 16
    """Number of structures per batch."""
    num_epochs: int = 1000
    """Number of epochs."""
    learning_rate: float = 3e-4
    """Initial learning rate of Adam (App. B used 1e-4 with StepLR; 3e-4 with the
    cosine decay learned forces faster in the ablation of ``docs/training.md``)."""
    warmup_epochs: int = 1
    """Number of epochs of linear learning-rate warm-up (per optimisation step)."""
    scheduler: Literal["cosine", "step", "fast_decay"] = "cosine"
    """``cosine``: after the warm-up, a cosine decay from ``learning_rate`` to zero
    at the last of ``num_epochs``. ``step``: StepLR after the warm-up (App. B).
    ``fast_decay``: StepLR, then a rapid
    decay towards zero started from the best-validation epoch (App. C.2/C.5) once the
    validation error has not improved for ``fast_decay_patience`` epochs."""
    scheduler_step_size: int = 250
    """Epochs between two learning-rate reductions of StepLR."""
    scheduler_gamma: float = 0.5
    """Factor of each StepLR reduction."""
    fast_decay_patience: int = 50
    """Epochs without improvement that start the fast decay."""
    fast_decay_epochs: int = 50
    """Length of the fast decay, in epochs: the learning rate falls linearly to zero
    over them, starting from the weights of the best-validation epoch, and training
    then stops."""
    early_stopping_patience: int = 0
    """Stop when the validation metric has not improved for this many epochs
    (0 disables early stopping). The best model is kept either way."""
    grad_clip_norm: float = 10.0
    """Maximum norm of the gradients."""
    augmentation: Literal["none", "structure", "environment"] = "structure"
    """Rotational augmentation: ``structure`` rotates every structure (and its
    targets) randomly at every epoch; ``environment`` rotates every atomic
    environment independently (App. F.10), so that messages can only carry
    rotation-invariant content (scalar and Cartesian targets only: per-atom
    Cartesian predictions are rotated back); ``none`` disables it."""
    invariance_weight: float = 0.0
    """With ``augmentation: environment``, evaluate every training batch twice
    with independent per-environment rotations and add this weight times the
    loss between the two predictions to their mean loss: it penalises the
    disagreement between rotations, which augmentation alone weighs no more than
    the error itself, and makes the model closer to invariant (what layer-wise
    ECSE and its molecular dynamics depend on). Each step costs twice as much;
    0 (the default) switches it off."""
    random_inversion: bool = False
    """Also apply a random inversion along with the random rotations."""
    loss: str | dict[str, LossSpecification | str] = "mse"
    """Loss per target, as in metatrain (weights per target and gradient, e.g.
    ``{energy: {weight: 0.1, gradients: {positions: {weight: 1.0}}}}``)."""
    energy_weight: float = 0.1
    """Weight of the values of a target trained together with its gradients (the
    energy, when training on energies and forces), against weight 1 for each
    gradient term, unless ``loss`` sets it. In the ablation of ``docs/training.md``
    0.1 and 0.01 learned forces equally fast and much faster than 1 (metatrain's
    choice), with 4x smaller energy errors for 0.1 (App. B's Eq. 8 uses
    w_E = 0.03-0.1 after normalisation)."""
    loss_normalization: Literal["none", "validation_ema"] = "none"
    """``validation_ema``: divide the loss of every target by an exponential moving
    average of its validation MSE, updated once per epoch (Eq. 8)."""
    loss_ema_alpha: float = 0.1
    """Weight of the newest epoch in the validation-MSE moving average of Eq. 8."""
    per_atom_energy_loss: bool = True
    """Divide per-structure targets by the number of atoms before the loss
    (App. C.2)."""
    atomic_baseline: FixedCompositionWeights | str = {}
    """Atomic self-contributions (App. B), as metatrain's ``atomic_baseline``: fixed
    values per target (and per atomic type), or the path of a composition-model
    checkpoint; the others are fitted by least squares on the training set."""
    scale_targets: bool = True
    """Scale targets to unit standard deviation during training."""
    log_interval: int = 1
    """Print and log the metrics every this many epochs."""
    checkpoint_interval: int = 100
    """Save a checkpoint every this many epochs."""
    best_model_metric: Literal["rmse_prod", "mae_prod", "loss"] = "rmse_prod"
    """Validation metric that selects the best model."""
    num_workers: int = 0
    """Number of data-loading worker processes."""
    progress_bar: bool = False
    """Show a progress bar over the batches of each epoch."""
    distributed: Optional[bool] = None
    """Data-parallel training over several processes (``srun mtt train`` or
    ``torchrun -m metatrain_pet.torchrun train``): when unset, on exactly when more
    than one process was started. ``batch_size`` is then per process."""
    distributed_port: int = 39591
    """Port of the first node through which SLURM-started processes meet
    (``torchrun`` chooses its own)."""
    finetune: FinetuneHypers = init_with_defaults(FinetuneHypers)
    """Start from a trained checkpoint with a fresh optimizer (see
    :class:`FinetuneHypers`)."""
