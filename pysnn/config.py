"""The settings of one training run; every `pysnn train` flag is a field."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from .events import is_event_dataset

RULES = ("hll", "hbh", "bptt")
KERNELS = ("gaussian", "laplacian", "cosine", "sigmoid", "linear")  # pysnn.ops.kernel_matrix's kinds
OPTIMIZERS = ("adam", "adamw", "sgd")
PARALLEL = ("none", "data", "layer")
CPU_MEMORY_MODES = ("keep", "ops", "release")  # pysnn/cpu_memory.py


UPDATES = ("final", "per-step-pred", "realtime")
# Saved runs' fields that became another (TrainConfig.from_dict): old name ->
# (new name, the new value from the old one and the run's other values).
RENAMED_FIELDS = {
    # chunked convolutions in real-time steps only
    "realtime_convolutions": ("low_memory", lambda value, run: value == "chunked" and run.get("update") == "realtime"),
    "convolutions": ("low_memory", lambda value, run: value == "chunked"),
}
# HLL terms the thesis computes once per window on the rates, not per step.


@dataclass
class TrainConfig:
    dataset: str = "digits"
    data_dir: Optional[str] = None
    download: bool = False
    subset: Optional[int] = None
    model: str = "mlp"
    hidden: List[int] = field(default_factory=lambda: [1024])
    width_mult: float = 1.0
    batch_norm: Optional[bool] = None  # default: see uses_batch_norm
    encoder: str = "direct"
    rule: str = "hll"
    # HLL
    loss: str = "pred-sim"
    # When layers update (docs/learning-rules.md): "final" once per batch from
    # the rates; "per-step-pred" the same, with pred averaged over the per-step
    # cross-entropies; "realtime" at every time step (Algorithm 3.1), HLL and HBH.
    update: str = "final"
    # Real-time updates: each step's learning rate is lr / T ("scaled") or lr ("full").
    realtime_lr: str = "scaled"
    # Training steps trade time for memory (pysnn.nn.low_memory); default: see uses_low_memory.
    low_memory: Optional[bool] = None
    dim_in_decoder: int = 1024
    # HBH
    kernel: str = "gaussian"  # on the input X and on each layer's Z alike
    label_kernel: str = "cosine"
    # the sigmoid kernel tanh(c1·aᵀb + c0): (c1, c0). Measured on the Fashion-MNIST
    # MLP 784-1024-10 (HBH, 1 epoch, 3 seeds): 0.01, -1 gives 82.77 ± 0.19 %, 1, 0
    # (tanh saturated by a layer's ~100 coincident spikes) 69.87 ± 5.06 %.
    kernel_param: List[float] = field(default_factory=lambda: [0.01, -1.0])
    estimator: str = "approx"
    sigma: float = 0.2
    sigma_scaling: str = "dim"
    beta: float = 2.0
    # The bottleneck's first term: HSIC(Z, Z) ("self", Pogodin & Latham) or the
    # thesis' HSIC(X, Z) ("input", eq. 4-25). "self" is the default because it
    # is the one that trains: see BENCHMARKS.md, "HBH: which first term".
    hsic_term: str = "self"
    # "cka": the normalised bottleneck nHSIC(X, Z) − β·nHSIC(Z, Y) (with --hsic-term input)
    hsic_norm: str = "none"
    # neuron
    timesteps: int = 10
    decay: float = 0.75  # thesis ch. 4, Fashion-MNIST
    threshold: float = 0.6
    surrogate: str = "sigmoid"
    alpha: float = 4.0
    # optimisation
    epochs: int = 15
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    dropout: float = 0.0
    augment: Optional[bool] = None  # default: on for cifar10
    device: str = "cpu"
    seed: int = 0
    backend: str = "fused"
    out: Optional[str] = None
    progress: bool = True
    # "keep": freed large CPU blocks are cached for the next step; "ops": only
    # those of pysnn's ops; "release": none (pysnn/cpu_memory.py)
    cpu_memory: str = "keep"
    # scale-out (torchrun): see README "Scaling out"
    parallel: str = "none"  # "data" or "layer"
    stages_split: Optional[List[int]] = None  # blocks per stage; default: balanced on measured step time
    pipeline_depth: int = 2  # at most this many unfinished sends per link
    dist_timeout: float = 60.0  # seconds, for every collective and point-to-point call
    global_kernels: bool = False  # data parallel: batch-coupled objectives over the global batch
    # stop at the first test evaluation that reaches this fraction: at an epoch's
    # end, and every `stop_check_every` batches inside an epoch when that is > 0
    stop_at_accuracy: Optional[float] = None
    stop_check_every: int = 0
    # mid-epoch checkpoints (every epoch ends with one as well): every N batches
    # and/or every M minutes of wall clock; 0 or None: never
    checkpoint_every: Optional[int] = None
    checkpoint_minutes: float = 5.0

    def __post_init__(self) -> None:
        if self.update == "online":  # the name of "per-step-pred" in checkpoints written before it had one
            self.update = "per-step-pred"

    def validate(self) -> None:
        """Raises ValueError with one clear line for a bad setting."""
        checks = [
            (self.rule in RULES, f"--rule must be one of {', '.join(RULES)}, got '{self.rule}'"),
            (
                self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got '{self.optimizer}'",
            ),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2, got {self.batch_size}"),
            (self.timesteps >= 1, f"--timesteps must be >= 1, got {self.timesteps}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (self.width_mult > 0, f"--width-mult must be > 0, got {self.width_mult}"),
            (all(h >= 1 for h in self.hidden), f"--hidden sizes must be >= 1, got {self.hidden}"),
            (self.update in UPDATES, f"--update must be one of {', '.join(UPDATES)}, got '{self.update}'"),
            (
                self.realtime_lr in ("scaled", "full"),
                f"--realtime-lr must be scaled or full, got '{self.realtime_lr}'",
            ),
            (
                self.low_memory is None or isinstance(self.low_memory, bool),
                f"low_memory must be true, false or unset, got {self.low_memory!r}",
            ),
            (
                self.update != "realtime" or self.rule in ("hll", "hbh"),
                f"--update realtime is for the local rules (hll, hbh); --rule {self.rule} updates once per batch",
            ),
            (
                self.update != "realtime" or self.parallel != "data",
                "--update realtime runs in one process or under --parallel layer; --parallel data updates "
                "once per batch",
            ),
            (self.backend in ("fused", "reference"), f"--backend must be fused or reference, got '{self.backend}'"),
            (self.model in ("mlp", "cnn", "vgg8"), f"--model must be mlp, cnn or vgg8, got '{self.model}'"),
            (self.kernel in KERNELS, f"--kernel must be one of {', '.join(KERNELS)}, got '{self.kernel}'"),
            (
                self.label_kernel in KERNELS,
                f"--label-kernel must be one of {', '.join(KERNELS)}, got '{self.label_kernel}'",
            ),
            (
                len(self.kernel_param) == 2 and all(math.isfinite(v) for v in self.kernel_param),
                f"--kernel-param takes the sigmoid kernel's slope and offset, two finite numbers, got "
                f"{self.kernel_param}",
            ),
            (self.hsic_term in ("input", "self"), f"--hsic-term must be input or self, got '{self.hsic_term}'"),
            (self.hsic_norm in ("none", "cka", "cca"), f"--hsic-norm must be none, cka or cca, got '{self.hsic_norm}'"),
            (
                self.hsic_norm == "none" or self.hsic_term == "input",
                f"--hsic-norm {self.hsic_norm} normalises the thesis' term: it needs --hsic-term input "
                "(nHSIC(Z, Z) is constant)",
            ),
            (
                self.hsic_norm != "cka" or self.estimator in ("approx", "biased"),
                f"--hsic-norm cka needs --estimator approx or biased, got '{self.estimator}'",
            ),
            (self.parallel in PARALLEL, f"--parallel must be one of {', '.join(PARALLEL)}, got '{self.parallel}'"),
            (
                not (self.parallel == "layer" and self.rule == "bptt"),
                "--parallel layer needs a local rule (hll or hbh): BPTT's global backward couples every layer",
            ),
            (self.stages_split is None or self.parallel == "layer", "--stages-split needs --parallel layer"),
            (
                self.stages_split is None or all(n >= 1 for n in self.stages_split),
                f"--stages-split counts must be >= 1, got {self.stages_split}",
            ),
            (
                not self.global_kernels or (self.parallel == "data" and self.rule != "bptt"),
                "--global-kernels needs --parallel data and a local rule (hll or hbh)",
            ),
            (
                self.cpu_memory in CPU_MEMORY_MODES,
                f"--cpu-memory must be one of {', '.join(CPU_MEMORY_MODES)}, got '{self.cpu_memory}'",
            ),
            (
                self.encoder in ("direct", "poisson", "events"),
                f"--encoder must be direct, poisson or events, got '{self.encoder}'",
            ),
            (
                not is_event_dataset(self.dataset) or self.encoder in ("direct", "events"),
                f"--dataset {self.dataset} is event data, already spikes: --encoder {self.encoder} does not apply",
            ),
            (
                is_event_dataset(self.dataset) or self.encoder != "events",
                f"--encoder events needs an event data set (nmnist, dvs-gesture, shd), not {self.dataset}",
            ),
            (
                not (self.dataset == "shd" and self.model != "mlp"),
                f"--dataset shd is 700 channels over time, not an image: use --model mlp, not {self.model}",
            ),
            (
                self.stop_at_accuracy is None or 0 < self.stop_at_accuracy <= 1,
                f"--stop-at-accuracy is a fraction in (0, 1], e.g. 0.85, got {self.stop_at_accuracy}",
            ),
            (
                self.stop_check_every >= 0,
                f"--stop-check-every must be >= 0 batches, got {self.stop_check_every}",
            ),
            (
                not self.stop_check_every or self.stop_at_accuracy is not None,
                "--stop-check-every needs --stop-at-accuracy",
            ),
            (
                not self.stop_check_every or self.parallel != "layer",
                "--stop-check-every checks inside an epoch, which --parallel layer does not: "
                "the run stops at epoch ends there",
            ),
            (
                self.checkpoint_every is None or self.checkpoint_every >= 0,
                f"--checkpoint-every must be >= 0 batches, got {self.checkpoint_every}",
            ),
            (
                math.isfinite(self.checkpoint_minutes) and self.checkpoint_minutes >= 0,
                f"--checkpoint-minutes must be >= 0, got {self.checkpoint_minutes}",
            ),
            (self.pipeline_depth >= 1, f"--pipeline-depth must be >= 1, got {self.pipeline_depth}"),
            (
                math.isfinite(self.dist_timeout) and self.dist_timeout > 0,
                f"--dist-timeout must be > 0 seconds, got {self.dist_timeout}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def resolved_encoder(self) -> str:
        """Event data sets feed their frames ("events") whatever --encoder's default says."""
        return "events" if is_event_dataset(self.dataset) else self.encoder

    def uses_low_memory(self) -> bool:
        """--low-memory / --no-low-memory, else on for real-time updates (whose
        point is the least memory) and off for final-step updates and BPTT,
        which the memory-saving passes slow down by a fifth to a quarter on
        the spiking CNN (BENCHMARKS.md)."""
        if self.low_memory is not None:
            return self.low_memory
        return self.update == "realtime"

    def uses_batch_norm(self) -> bool:
        """--batch-norm / --no-batch-norm, else on, except for HBH on an MLP:
        its fused three-factor update needs each linear layer to feed its LIF
        directly (on Fashion-MNIST BN lifts HLL and BPTT from 86.5 / 87.6 % to
        89.3 / 89.3 % in 5 epochs; HBH's linear probe gains under 1 point)."""
        if self.batch_norm is not None:
            return self.batch_norm
        return not (self.model == "mlp" and self.rule == "hbh")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The config a run saved (`to_dict`), with fields renamed since under their new names."""
        values = dict(values)
        for old, (new, convert) in RENAMED_FIELDS.items():
            if old in values:
                old_value = values.pop(old)
                values.setdefault(new, convert(old_value, values))
        return cls(**values)
