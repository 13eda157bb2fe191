"""Data parallel: every process trains the whole network on its slice of each
global batch. BPTT goes through DistributedDataParallel; the local rules call
their blocks directly (DDP's hooks would never fire, and HBH's fused update
writes .grad by hand), so each layer's gradients are all-reduced by
`LayerAllReduce`, overlapped with the next layer's compute."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from ..models import dropout_seed
from .runtime import DistContext, guarded


class LayerAllReduce:
    """A trainer's `sync` under data parallelism. After a layer's gradients
    exist, they are scaled by this rank's share of the batch, flattened and
    summed over ranks asynchronously; the layer's optimiser steps when the
    next layer's gradients are launched (or at `flush`), so the reduce runs
    while the next layer computes. The deferral changes nothing: a layer's
    output was computed before its update, as in one process."""

    def __init__(self, context: DistContext) -> None:
        self.context = context
        self.share = 1.0 / context.world
        self._pending: Optional[Tuple[torch.optim.Optimizer, List[torch.Tensor], torch.Tensor, object]] = None

    def after_backward(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flat = _flatten_dense_tensors(grads).mul_(self.share) if grads else None
        work = guarded(dist.all_reduce, flat, async_op=True) if grads else None
        self.flush()
        self._pending = (optimizer, grads, flat, work)

    def flush(self) -> None:
        if self._pending is None:
            return
        optimizer, grads, flat, work = self._pending
        self._pending = None
        if work is not None:
            guarded(work.wait, self.context.timeout)
            for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads)):
                grad.copy_(reduced)
        optimizer.step()


class GlobalBatch:
    """--global-kernels: batch-coupled objectives see every rank's samples.
    Features are all-gathered (autograd-aware, so each rank's samples get
    their gradient back); each rank then computes the same global loss, so a
    loss over pairs is weighted 1/world (the gather's backward sums over
    ranks), a per-sample mean by the rank's share, and the gradients are
    summed over ranks unweighted."""

    is_global = True

    def __init__(self, context: DistContext) -> None:
        self.context = context
        self.sizes = [0] * context.world
        self.coupled_scale = 1.0 / context.world
        self.sample_scale = 1.0 / context.world
        self._last: tuple = (None, None)  # the last no-grad tensor gathered, and its gathered form

    def set_sizes(self, sizes: List[int]) -> None:
        self.sizes = sizes
        self.offset = sum(sizes[: self.context.rank])
        self.sample_scale = sizes[self.context.rank] / sum(sizes)
        self._last = (None, None)

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        # The batch's labels reach every layer as one tensor: gather them once
        # (which also lets the trainer reuse their kernel), not once per layer.
        if not t.requires_grad and self._last[0] is t:
            return self._last[1]
        gathered = self._gather(t)
        if not t.requires_grad:
            self._last = (t, gathered)
        return gathered

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        longest = max(self.sizes)
        padded = torch.cat([t, t.new_zeros(longest - len(t), *t.shape[1:])]) if len(t) < longest else t
        if t.requires_grad:
            from torch.distributed.nn.functional import all_gather

            parts = guarded(all_gather, padded)
        else:
            parts = [torch.empty_like(padded) for _ in self.sizes]
            guarded(dist.all_gather, parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, self.sizes)])

    def local_rows(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.offset : self.offset + self.sizes[self.context.rank]]


class DataParallel:
    """What a data-parallel run adds to the single-process loop: sharding of
    each global batch, the gradient all-reduce, and epoch-end averaging."""

    def __init__(self, context: DistContext, model: nn.Module, trainer, global_kernels: bool = False) -> None:
        self.context, self.model, self.trainer = context, model, trainer
        # Each rank's dropout draws its own masks (its own samples).
        for index, block in enumerate(model.blocks):
            if block.dropout is not None:
                block.dropout.reseed(dropout_seed(torch.initial_seed(), index, context.rank))
        if context.device.type == "cuda":  # batch statistics over the global batch (NCCL only)
            nn.SyncBatchNorm.convert_sync_batchnorm(model)  # swaps the BN layers in place
        self.global_batch = GlobalBatch(context) if global_kernels and hasattr(trainer, "batch") else None
        if self.global_batch is not None:
            trainer.batch = self.global_batch
        if hasattr(trainer, "layer_optimizers"):
            trainer.sync = LayerAllReduce(context)
        else:  # BPTT: one global backward, which DDP overlaps bucket by bucket
            ids = [context.device.index] if context.device.type == "cuda" else None
            trainer.forward_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def shard(self, images: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's contiguous slice of the global batch; gradients are then
        weighted by the slice's share, so their sum over ranks is the gradient
        of the global batch's mean loss (no sample is padded or repeated)."""
        c = self.context
        sizes = [len(labels) * (r + 1) // c.world - len(labels) * r // c.world for r in range(c.world)]
        share, start = sizes[c.rank], sum(sizes[: c.rank])
        if self.global_batch is not None:  # each rank's gradient is its part of the global loss's
            self.global_batch.set_sizes(sizes)
            self.trainer.sync.share = 1.0
        elif isinstance(self.trainer.sync, LayerAllReduce):
            self.trainer.sync.share = share / len(labels)
        else:  # DDP averages over ranks: scale the local mean so the average is the global mean
            self.trainer.loss_scale = share * c.world / len(labels)
        return images[start : start + share], labels[start : start + share]

    def end_epoch(self) -> None:
        """BatchNorm running statistics averaged over ranks."""
        for module in self.model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                for buffer in (module.running_mean, module.running_var):
                    guarded(dist.all_reduce, buffer)
                    buffer.div_(self.context.world)

    def dropout_states(self) -> dict:
        return {
            index: block.dropout.get_extra_state()
            for index, block in enumerate(self.model.blocks)
            if block.dropout is not None
        }

    def rank_state(self, state) -> dict:
        """What of a mid-epoch checkpoint is this rank's own beside its dropout
        streams (`dropout_states`, saved as at an epoch's end): its running
        statistics (averaged only at the epoch's end), its partial sums of the
        epoch's metrics, its global generator."""
        return {
            "buffers": {name: b.clone() for name, b in self.model.named_buffers()},
            "stats": state.stats,
            "torch_rng": torch.get_rng_state(),
        }

    def restore_rank_state(self, saved: dict, position: dict) -> dict:
        """Restores this rank's share; returns the position with its own sums."""
        buffers = dict(self.model.named_buffers())
        for name, value in saved["buffers"].items():
            buffers[name].copy_(value)
        torch.set_rng_state(saved["torch_rng"])
        loss_sum, correct, seen = saved["stats"]
        return {**position, "loss_sum": loss_sum, "correct": correct, "seen": seen}

    def restore_dropout_states(self, states: dict) -> None:
        for index, state in states.items():
            self.model.blocks[int(index)].dropout.set_extra_state(state)
