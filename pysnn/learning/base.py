"""What every trainer shares: its optimisers and schedules, the output
layer's own cross-entropy for the local rules, and state for checkpoints."""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, List, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from ..config import TrainConfig
from ..models import SpikingNetwork
from ..nn.low_memory import low_memory
from ..nn.norm_lif_pool import norm_lif_pool_applies, norm_lif_pool_step, settle_membrane_
from ..ops.lif import charge_single_step
from .optim import make_optimizer, make_scheduler


class Trainer:
    """Updates a SpikingNetwork from one batch at a time (`step`)."""

    grad_mode = "time_local"

    def __init__(self, model: SpikingNetwork, config: TrainConfig, classes: int) -> None:
        self.model, self.config, self.classes = model, config, classes
        model.set_grad_mode(self.grad_mode)
        self.aux = nn.ModuleList()  # trainable modules outside the model (auxiliary heads)
        self.optimizers: List[torch.optim.Optimizer] = []
        self.schedulers: list = []
        # The block each optimiser updates (None: the head or the whole model),
        # so a layer-parallel run can gather each optimiser from its owner.
        self.optimizer_blocks: List[Optional[int]] = []
        self.sync = ImmediateStep()

    @property
    def step_lr(self) -> float:
        """The learning rate of one optimiser step: config.lr, or with real-time
        updates (T steps per batch) lr / T unless --realtime-lr full."""
        c = self.config
        if c.update == "realtime" and c.realtime_lr == "scaled":
            return c.lr / c.timesteps
        return c.lr

    def add_optimizer(self, params, block: Optional[int] = None) -> torch.optim.Optimizer:
        optimizer = make_optimizer(params, self.config, self.step_lr)
        self.optimizers.append(optimizer)
        self.schedulers.append(make_scheduler(optimizer, self.config))
        self.optimizer_blocks.append(block)
        return optimizer

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        """One update; returns the output layer's loss and the batch's logits."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        self.aux.train(mode)

    def state_dict(self) -> dict:
        return {
            "aux": self.aux.state_dict(),
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state: dict) -> None:
        self.aux.load_state_dict(state["aux"])
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError("checkpoint has a different number of optimisers than this trainer")
        for optimizer, s in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(s)
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)


class StepMeans:
    """The head's loss and logits over a batch's `steps` calls of `train_head`,
    averaged after the last (with one call, returned as they are). Real-time
    training and the layer-parallel pipeline's last stage both use it, so they
    sum in one order."""

    def __init__(self, steps: int) -> None:
        self.steps, self.seen, self.loss, self.logits = steps, 0, 0.0, None

    def add(self, loss: float, logits: torch.Tensor) -> Optional[Tuple[float, torch.Tensor]]:
        """Adds one call's; returns the batch's (mean loss, mean logits) after its last, else None."""
        if self.steps == 1:
            return loss, logits
        self.loss += loss
        self.logits = logits if self.logits is None else self.logits + logits
        self.seen += 1
        if self.seen < self.steps:
            return None
        done = (self.loss / self.steps, self.logits / self.steps)
        self.seen, self.loss, self.logits = 0, 0.0, None
        return done


class ImmediateStep:
    """How a trainer applies an optimiser step once the gradients exist: at
    once, in one process. Data-parallel training swaps in an all-reducing
    version (pysnn.distributed.data_parallel.LayerAllReduce)."""

    def after_backward(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()

    def flush(self) -> None:
        pass


class LocalBatch:
    """How batch-coupled objectives (HSIC kernels, sim, contrast) see the
    batch: this process's samples only, with every loss at full weight.
    Data parallelism with --global-kernels swaps in the whole global batch
    (pysnn.distributed.data_parallel.GlobalBatch)."""

    sample_scale = 1.0  # the weight of a per-sample mean loss (cross-entropy, reconstruction)
    coupled_scale = 1.0  # the weight of a loss over pairs of samples

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def local_rows(self, t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def is_global(self) -> bool:
        return False


class LocalTrainer(Trainer):
    """A trainer whose hidden layers learn one at a time from their own
    signals, and whose output layer learns by its own cross-entropy on the
    detached spikes of the last hidden layer.

    A rule defines `update_layer` (one layer's gradients from its detached
    input, firing through `fire`) and, if every layer needs something of the
    batch beyond its input, `batch_context`. `step` runs them layer after
    layer; a layer-parallel stage worker runs `layer_step` for its own layers
    and `train_head` on the last stage: one code path for both.

    With `update="realtime"` (Algorithm 3.1's real-time branch) `step` runs the
    same code one time step at a time: every layer, then the head, updates at
    every step from that step's signals, and the only thing carried from one
    step to the next is each layer's membrane (`neuron_state`)."""

    def __init__(self, model: SpikingNetwork, config: TrainConfig, classes: int) -> None:
        super().__init__(model, config, classes)
        self._head_optimizer = self.add_optimizer(self.model.head.parameters())
        self.layer_optimizers: List[torch.optim.Optimizer] = []
        self.batch = LocalBatch()
        # Each layer's post-reset membrane between real-time steps (None: a
        # sequence starts from rest at every call of `fire`).
        self.neuron_state: Optional[List[Optional[torch.Tensor]]] = None
        # Charged inputs of `norm_lif_pool_step`s that become their layer's
        # membrane after the layer's update (`layer_step`), by block index.
        self._unsettled: dict = {}

    def start_sequence(self) -> None:
        """Every layer at rest: the next real-time step starts a new sequence."""
        self.neuron_state = [None] * len(self.model.blocks)

    @contextlib.contextmanager
    def sequence(self) -> Iterator[None]:
        """Real-time steps inside carry each layer's membrane from one `fire`
        to the next, starting at rest; outside, every call starts at rest."""
        self.start_sequence()
        try:
            yield
        finally:
            self.neuron_state = None

    def fire(
        self,
        index: int,
        x: torch.Tensor,
        return_membrane: bool = False,
        steps: Optional[int] = None,
        pooled: bool = False,
    ):
        """Block `index`'s LIF on x (one step repeated `steps` times if given:
        SpikingBlock.drive), its pool too with `pooled` (SpikingBlock.fire_pooled),
        continuing from its carried membrane in real-time mode (and carrying
        the new one, detached). A real-time step's membrane, outside autograd,
        is x itself once charged (not a copy): callers may overwrite it."""
        block = self.model.blocks[index]
        # x is the block's fresh input, this trainer's own: the pool's backward may overwrite it
        fire = (
            functools.partial(block.fire_pooled, overwrite_input=True)
            if pooled
            else functools.partial(block.fire, return_membrane=return_membrane)
        )
        if self.neuron_state is None:
            return fire(x, steps=steps)
        # x (the block's fresh synaptic input) and the carried membrane are this
        # trainer's own: one step is charged in place and the old membrane goes
        # before the op allocates the new one
        u0, self.neuron_state[index] = self.neuron_state[index], None
        x, u0 = charge_single_step(x, u0, block.neuron.decay, steps, in_place=True)
        if return_membrane and u0 is None and steps is None and x.shape[0] == 1 and not torch.is_grad_enabled():
            # one step from rest: its pre-reset membrane is x, bit for bit
            spikes, state = block.fire(x, return_state=True)
            outputs = [spikes, x]
        else:
            *outputs, state = fire(x, u0=u0, return_state=True, steps=steps)
        del u0
        self.neuron_state[index] = state.detach()
        return tuple(outputs) if len(outputs) > 1 else outputs[0]

    def fire_unsettled(self, index: int, x: torch.Tensor) -> Optional[torch.Tensor]:
        """Real time: block `index`'s spikes for one step x [1, B, ...] (its
        fresh input, this trainer's own), with x charged in place from the
        carried membrane: x then is the step's pre-reset membrane, and becomes
        the block's post-reset one only after the update (`layer_step`), so the
        update can read it and no third buffer of the layer's size exists
        while it runs. None (x untouched) where the charge cannot run in place
        (or x is not float32/64, whose spikes the kernels compute in x's dtype)."""
        block = self.model.blocks[index]
        if self.neuron_state is None or x.shape[0] != 1 or x.dtype not in (torch.float32, torch.float64):
            return None
        x, u0 = charge_single_step(x, self.neuron_state[index], block.neuron.decay, None, in_place=True)
        if u0 is not None:
            return None
        self.neuron_state[index] = None
        self._unsettled[index] = x[0]
        return block.spikes_of(x)  # (the LIF's state would be a buffer of the layer's size)

    def drive_pooled(self, index: int, inputs: torch.Tensor) -> torch.Tensor:
        """Block `index`'s pooled spikes for its detached input: `drive`, then
        `fire` with `pooled`; a whole sequence from rest as the block does it
        (`SpikingBlock.drive_pooled`). A real-time step of a conv block with
        batch norm and a fused pool runs as one `norm_lif_pool_step`, which
        holds two buffers of the layer's size instead of three; its charged
        input becomes the block's membrane after the update (`layer_step`)."""
        block = self.model.blocks[index]
        if self.neuron_state is None:
            return block.drive_pooled(inputs)
        if block.neuron.backend == "fused" and inputs.shape[0] == 1:
            x, steps = block.layer_output(inputs), None  # (one step: `drive` without its norm)
            if block.fuses_pool(x) and norm_lif_pool_applies(block.norm, x, self.neuron_state[index]):
                carried = [self.neuron_state[index]]
                self.neuron_state[index] = None  # (the step charges into its buffer)
                pooled, self._unsettled[index] = norm_lif_pool_step(block.norm, x, carried, block.neuron_args())
                return pooled
            x = block.normalise(x)
        else:
            x, steps = block.drive(inputs)
        return self.fire(index, x, steps=steps, pooled=True)

    def batch_context(self, images: torch.Tensor, labels: torch.Tensor) -> Optional[torch.Tensor]:
        """A tensor every layer needs for this batch, built from the input
        (sent between layer-parallel stages), or None."""
        return None

    def update_layer(
        self, index: int, inputs: torch.Tensor, labels: torch.Tensor, context: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """Sets the gradients of block `index` (and its auxiliary modules) from
        its detached input; returns the block's output spikes, detached."""
        raise NotImplementedError

    def layer_step(
        self, index: int, h: torch.Tensor, labels: torch.Tensor, context: Optional[torch.Tensor]
    ) -> torch.Tensor:
        optimizer = self.layer_optimizers[index]
        optimizer.zero_grad(set_to_none=True)
        with low_memory(self.config.uses_low_memory()):  # (pysnn.nn.low_memory)
            out = self.update_layer(index, h.detach(), labels, context)
        charged = self._unsettled.pop(index, None)
        if charged is not None:
            self.neuron_state[index] = settle_membrane_(charged, self.model.blocks[index].neuron_args())
        self.sync.after_backward(optimizer)
        return out

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        if self.config.update == "realtime":
            return self.step_realtime(images, labels)
        context = self.batch_context(images, labels)
        h = self.model.encode(images)
        for index in range(len(self.model.blocks)):
            h = self.layer_step(index, h, labels, context)
        return self.train_head(h, labels)

    def step_realtime(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        """T updates of every layer and the head, one per time step: step t's
        spikes go from layer l (after its update at t) to layer l + 1, and
        nothing of steps < t is kept but the membranes. Returns the head's mean
        per-step loss and its logits averaged over the steps."""
        context = self.batch_context(images, labels)  # per batch, shared by every step
        steps = self.model.encode(images)  # [T, B, ...]; direct coding: a stride-0 view, no copy
        window = StepMeans(steps.shape[0])
        with self.sequence():
            for t in range(steps.shape[0]):
                h = steps[t : t + 1]
                for index in range(len(self.model.blocks)):
                    h = self.layer_step(index, h, labels, context)
                done = window.add(*self.train_head(h, labels))
        return done

    def train_head(self, h: torch.Tensor, labels: torch.Tensor) -> Tuple[float, torch.Tensor]:
        logits = self.model.readout(h.detach())
        loss = F.cross_entropy(logits, labels)
        self._head_optimizer.zero_grad(set_to_none=True)
        (loss * self.batch.sample_scale).backward()
        self.sync.after_backward(self._head_optimizer)
        self.sync.flush()
        return loss.item(), logits.detach()
