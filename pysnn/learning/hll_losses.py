"""SNN-HLL's layer-local losses (docs/learning-rules.md, thesis 3-3..3-16) and the
auxiliary modules they train with each hidden layer."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from ..nn.blocks import time_mean
from ..nn.conv import conv2d

# Thesis Table 3-5.
LOSS_WEIGHTS: Dict[str, Dict[str, float]] = {
    "pred": {"pred": 1.0},
    "sim": {"sim": 1.0},
    "contrast": {"contrast": 1.0},
    "recon": {"recon": 1.0},
    "pred-sim": {"pred": 0.99, "sim": 0.01},
    "pred-recon": {"pred": 0.5, "recon": 0.5},
    "sim-recon": {"sim": 0.01, "recon": 0.99},
    "pred-contrast": {"pred": 0.95, "contrast": 0.05},
    "sim-contrast": {"sim": 0.2, "contrast": 0.8},
    "pred-sim-contrast": {"pred": 0.95, "sim": 0.01, "contrast": 0.04},
}
CONTRAST_MARGIN = 1.0
WINDOW_TERMS = {"contrast", "recon"}  # on a whole window's rates, never per step


def similarity_matrix(features: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of centred rows (Nøkland & Eidnes); conv maps larger
    than 1×1 are first reduced to their per-channel std over H·W."""
    if features.dim() > 2 and features[0, 0].numel() > 1:
        features = spatial_std(features.flatten(2))
    centred = features.flatten(1) - features.flatten(1).mean(1, keepdim=True)
    unit = unit_rows(centred)
    return (unit @ unit.T).clamp(-1, 1)


def spatial_std(x: torch.Tensor) -> torch.Tensor:
    """``x.std(2, correction=0)`` for x [B, C, N], whose backward forms its
    x-sized gradient in one buffer (autograd's forms x − mean, then the
    product: two); the values are autograd's bit for bit."""
    return _SpatialStd.apply(x)


class _SpatialStd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        std = x.std(2, correction=0)
        ctx.save_for_backward(x, std)
        return std

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, std = ctx.saved_tensors
        # std's backward: grad / (2·std), 0 where std = 0; var's: (2/N)·that·(x − mean)
        grad_var = (grad / (std * 2)).masked_fill_(std == 0, 0)
        return (x - x.mean(2, keepdim=True)).mul_((2.0 / x.shape[2]) * grad_var.unsqueeze(2))


def unit_rows(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """F.normalize(x, dim=1), but a row of norm <= eps (a sample whose
    features are all equal once centred, e.g. one that did not spike in a
    real-time step) is 0 with a zero gradient: F.normalize's gradient there
    is x's upstream gradient / eps, which blows the layer's update up."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    has_direction = norm > eps
    return torch.where(has_direction, x / torch.where(has_direction, norm, torch.ones_like(norm)), 0.0)


def sim_loss(embedded: torch.Tensor, labels_onehot: torch.Tensor) -> torch.Tensor:
    """‖cos(E(S)) − cos(Y)‖²_F, the thesis' sum reduction (≈ B² × the mean)."""
    return (similarity_matrix(embedded) - similarity_matrix(labels_onehot)).square().sum()


def contrast_loss(rates: torch.Tensor, labels: torch.Tensor, margin: float = CONTRAST_MARGIN) -> torch.Tensor:
    """Σ_ij [y_ij D² + (1 − y_ij) max(0, m − D)²] over pairs i ≠ j, as a mean
    over pairs (the sum would grow with B²)."""
    flat = rates.flatten(1)
    norms = flat.square().sum(1)
    d2 = (norms[:, None] + norms[None, :] - 2 * flat @ flat.T).clamp_min(0)
    distance = (d2 + 1e-12).sqrt()
    same = (labels[:, None] == labels[None, :]).to(flat.dtype)
    terms = same * d2 + (1 - same) * (margin - distance).clamp_min(0).square()
    off_diagonal = 1 - torch.eye(len(flat), dtype=flat.dtype, device=flat.device)
    return (terms * off_diagonal).sum() / off_diagonal.sum()


def decoder_pool_size(channels: int, size: int, dim_in_decoder: int) -> int:
    """The side of the average-pooled map so that channels · side² <= dim_in_decoder."""
    return max(1, min(size, int(math.sqrt(dim_in_decoder / channels))))


class LayerObjective(nn.Module):
    """The auxiliary modules and weighted loss of one hidden layer."""

    def __init__(
        self, loss: str, output_shape: Tuple[int, ...], input_shape: Tuple[int, ...], classes: int, dim_in_decoder: int
    ) -> None:
        super().__init__()
        if loss not in LOSS_WEIGHTS:
            raise ValueError(f"--loss must be one of {', '.join(LOSS_WEIGHTS)}, got '{loss}'")
        self.weights = LOSS_WEIGHTS[loss]
        self.classes = classes
        conv = len(output_shape) == 3
        self.pool_size: Optional[int] = None
        if "pred" in self.weights:
            features = int(math.prod(output_shape))
            if conv:
                self.pool_size = decoder_pool_size(output_shape[0], output_shape[1], dim_in_decoder)
                features = output_shape[0] * self.pool_size**2
            self.classifier = nn.Linear(features, classes)
            nn.init.zeros_(self.classifier.weight)
            nn.init.zeros_(self.classifier.bias)
        if "sim" in self.weights:
            self.embedding = (
                nn.Conv2d(output_shape[0], output_shape[0], 3, padding=1, bias=False)
                if conv
                else nn.Linear(output_shape[0], output_shape[0], bias=False)
            )
        if "recon" in self.weights:
            self.input_shape = input_shape
            self.decoder = (
                nn.Conv2d(output_shape[0], input_shape[0], 3, padding=1)
                if conv
                else nn.Linear(int(math.prod(output_shape)), int(math.prod(input_shape)))
            )

    def _pred(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.pool_size is not None:
            features = F.adaptive_avg_pool2d(features, self.pool_size)
        return F.cross_entropy(self.classifier(features.flatten(1)), labels)

    def _recon(self, rates: torch.Tensor, input_rates: torch.Tensor) -> torch.Tensor:
        if rates.dim() == 4:
            rates = F.interpolate(rates, size=input_rates.shape[-2:], mode="nearest")
            return F.mse_loss(conv2d(self.decoder, rates), input_rates)
        return F.mse_loss(self.decoder(rates.flatten(1)), input_rates.flatten(1))

    def forward(
        self, spikes: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, update: str, batch=None
    ) -> torch.Tensor:
        """The layer's loss from its output spikes [T, B, ...] and input [T, B, ...].

        update="final": every term on the rates; "per-step-pred": `pred` is
        the mean of the per-step cross-entropies (the other terms use the
        rates either way); "realtime" (one step at a time): the per-step terms
        pred and sim only, the window terms come from `window` after the last
        step. `batch` (pysnn.learning.base.LocalBatch by default) says which
        samples the pairwise terms (sim, contrast) see and how each kind of
        term is weighted.
        """
        from .base import LocalBatch

        batch = batch or LocalBatch()
        rates = time_mean(spikes)
        total = spikes.new_zeros(())
        w = self.weights
        if "pred" in w:
            if update == "per-step-pred":
                steps = spikes.flatten(0, 1)
                pred = self._pred(steps, labels.repeat(spikes.shape[0]))
            else:
                pred = self._pred(rates, labels)
            total = total + w["pred"] * batch.sample_scale * pred
        all_labels = batch.gather(labels) if "sim" in w or "contrast" in w else labels  # one gather for both
        if "sim" in w:
            onehot = F.one_hot(all_labels, self.classes).to(rates.dtype)
            embedding = conv2d(self.embedding, rates) if rates.dim() == 4 else self.embedding(rates.flatten(1))
            embedded = batch.gather(embedding)
            total = total + w["sim"] * batch.coupled_scale * sim_loss(embedded, onehot)
        if update != "realtime":
            total = total + self.window(rates, inputs.mean(0), all_labels, batch)
        return total

    @property
    def has_window(self) -> bool:
        return bool(WINDOW_TERMS & set(self.weights))

    def window(self, rates: torch.Tensor, input_rates: torch.Tensor, all_labels: torch.Tensor, batch) -> torch.Tensor:
        """The terms on the whole window's rates (contrast 3-9, recon 3-10..3-12),
        weighted; `all_labels` are the labels of the samples `batch` gathers."""
        total = rates.new_zeros(())
        w = self.weights
        if "contrast" in w:
            contrast = contrast_loss(batch.gather(rates), all_labels)
            total = total + w["contrast"] * batch.coupled_scale * contrast
        if "recon" in w:
            recon = self._recon(rates, input_rates.reshape(-1, *self.input_shape))
            total = total + w["recon"] * batch.sample_scale * recon
        return total
