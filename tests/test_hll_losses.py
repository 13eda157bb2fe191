"""SNN-HLL's local losses against their equations (thesis 3-7..3-12), each
written here independently of pysnn.learning.hll_losses, in float64; and
every --loss setting trains."""

import math

import pytest
import torch

from pysnn.config import TrainConfig
from pysnn.learning.hll_losses import LOSS_WEIGHTS, LayerObjective, contrast_loss, sim_loss
from pysnn.train import train

F64 = torch.float64


def cosine_of_centred_rows(x):
    """S_ij = cos(x_i − mean(x_i), x_j − mean(x_j)), element by element (0 for a constant row)."""
    n = x.shape[0]
    rows = [x[i] - x[i].mean() for i in range(n)]
    out = torch.zeros(n, n, dtype=F64)
    for i in range(n):
        for j in range(n):
            a, b = rows[i].norm(), rows[j].norm()
            out[i, j] = 0.0 if a == 0 or b == 0 else torch.dot(rows[i], rows[j]) / (a * b)
    return out


def test_sim_is_the_frobenius_distance_of_the_similarity_matrices():
    # (3-7)/(3-8): L_sim = ‖S(E(r)) − S(Y)‖²_F, the thesis' sum over all i, j
    torch.manual_seed(0)
    embedded, labels = torch.randn(7, 5, dtype=F64), torch.tensor([0, 1, 2, 0, 1, 2, 2])
    onehot = torch.nn.functional.one_hot(labels, 3).to(F64)
    want = (cosine_of_centred_rows(embedded) - cosine_of_centred_rows(onehot)).square().sum()
    torch.testing.assert_close(sim_loss(embedded, onehot), want, rtol=1e-12, atol=1e-12)


def test_sim_of_conv_maps_uses_each_channels_spread():
    # conv features [B, C, H, W]: each channel reduced to its std over H·W first (Nøkland & Eidnes)
    torch.manual_seed(1)
    maps, labels = torch.rand(6, 3, 4, 4, dtype=F64), torch.tensor([0, 1, 0, 1, 1, 0])
    onehot = torch.nn.functional.one_hot(labels, 2).to(F64)
    spread = torch.stack([torch.stack([m[c].flatten().std(correction=0) for c in range(3)]) for m in maps])
    want = (cosine_of_centred_rows(spread) - cosine_of_centred_rows(onehot)).square().sum()
    torch.testing.assert_close(sim_loss(maps, onehot), want, rtol=1e-12, atol=1e-12)


def test_contrast_pulls_same_labels_together_and_pushes_others_past_the_margin():
    # (3-12): y_ij·D_ij² + (1 − y_ij)·max(0, m − D_ij)², D the Euclidean distance of
    # rates, m = 1, averaged over the pairs i ≠ j
    torch.manual_seed(2)
    rates, labels = torch.rand(6, 4, dtype=F64) * 0.6, torch.tensor([0, 0, 1, 1, 2, 0])
    total, pairs = 0.0, 0
    for i in range(6):
        for j in range(6):
            if i == j:
                continue
            d = (rates[i] - rates[j]).norm().item()
            total += d**2 if labels[i] == labels[j] else max(0.0, 1.0 - d) ** 2
            pairs += 1
    torch.testing.assert_close(contrast_loss(rates, labels), torch.tensor(total / pairs, dtype=F64), rtol=1e-9, atol=0)


def test_recon_is_the_decoders_squared_error_on_the_layers_input():
    # (3-11): ‖G_l(r_l) − r_{l−1}‖², as a mean over the elements
    torch.manual_seed(3)
    objective = LayerObjective("recon", (5,), (8,), classes=3, dim_in_decoder=64).double()
    spikes = (torch.rand(4, 6, 5, dtype=F64) < 0.4).to(F64)
    inputs = torch.rand(4, 6, 8, dtype=F64)
    decoded = objective.decoder.weight @ spikes.mean(0).T + objective.decoder.bias[:, None]
    want = (decoded.T - inputs.mean(0)).square().mean()
    got = objective(spikes, inputs, torch.zeros(6, dtype=torch.long), "final")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_loss_weights_are_the_thesis_table_3_5():
    assert LOSS_WEIGHTS == {
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


@pytest.mark.parametrize("loss", sorted(LOSS_WEIGHTS))
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_loss_setting_trains(loss, model, tmp_path):
    # a few steps each: the hidden layers' weights move and every figure is finite
    config = TrainConfig(
        dataset="digits",
        subset=96,
        epochs=1,
        batch_size=32,
        timesteps=3,
        hidden=[32],
        model=model,
        rule="hll",
        loss=loss,
        progress=False,
        out=str(tmp_path / "run"),
        seed=0,
    )
    from pysnn.models import build_model

    torch.manual_seed(config.seed)  # as train() does before building the network
    initial = build_model(config, (1, 8, 8), 10).blocks[0].layer.weight.detach().clone()
    metrics = train(config, log=lambda m: None)
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["blocks.0.layer.weight"]
    assert not torch.equal(initial, final), "the first layer did not learn"
    epoch = metrics["epochs"][0]
    assert all(math.isfinite(epoch[k]) for k in ("train_loss", "test_loss", "train_acc", "test_acc"))


def test_a_silent_sample_gives_sim_a_zero_similarity_and_a_finite_gradient():
    """A sample whose features are all equal (a step in which it did not
    spike) has no direction: its similarities are 0 and it sends no
    gradient, where F.normalize would send its upstream gradient / 1e-12.
    Every other row is F.normalize's, bit for bit."""
    from torch.nn import functional as F

    from pysnn.learning.hll_losses import similarity_matrix, unit_rows

    x = torch.randn(5, 7, dtype=torch.float64)
    assert torch.equal(unit_rows(x), F.normalize(x, dim=1))
    rates = torch.rand(4, 6, dtype=torch.float64)
    rates[1] = 0.0  # silent
    rates = rates.requires_grad_()
    onehot = F.one_hot(torch.tensor([0, 1, 0, 2]), 3).double()
    sim = similarity_matrix(rates)
    assert torch.equal(sim[1], torch.zeros(4, dtype=torch.float64))
    (grad,) = torch.autograd.grad(sim_loss(rates, onehot), rates)
    assert torch.isfinite(grad).all() and grad.abs().max() < 10
    assert torch.equal(grad[1], torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_spatial_std_is_autograds_std_bit_for_bit(dtype):
    """similarity_matrix's per-channel std: autograd's values and gradient,
    0 (not NaN) for a channel whose map is constant."""
    from pysnn.learning.hll_losses import spatial_std

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 49, generator=gen, dtype=dtype)
    x[1, 2] = 0.5
    grad = torch.randn(5, 3, generator=gen, dtype=dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = spatial_std(a), b.std(2, correction=0)
    got.backward(grad)
    want.backward(grad)
    assert torch.equal(got, want) and torch.equal(a.grad, b.grad)
    assert torch.equal(a.grad[1, 2], torch.zeros(49, dtype=dtype))
