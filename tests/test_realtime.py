"""Real-time local learning (--update realtime, Algorithm 3.1): every layer and
the head update at every time step, carrying only the membranes."""

import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model
from pysnn.train import train

SHAPE, CLASSES = (1, 4, 4), 3


def _trainer(rule="hll", timesteps=3, update="realtime", dtype=torch.float64, **overrides):
    torch.manual_seed(0)
    settings = dict(
        rule=rule,
        loss="pred",
        update=update,
        timesteps=timesteps,
        hidden=[8],
        batch_norm=False,
        optimizer="sgd",
        lr=0.5,
        decay=0.75,
        threshold=0.3,
        batch_size=6,
    )
    config = TrainConfig(**{**settings, **overrides})
    config.validate()
    model = build_model(config, SHAPE, CLASSES).to(dtype)
    trainer = make_trainer(model, config, CLASSES, SHAPE)
    trainer.aux.to(dtype)
    trainer.train()
    return config, model, trainer


def _batch(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    return torch.rand(6, *SHAPE, generator=generator, dtype=dtype), torch.tensor([0, 1, 2, 0, 1, 2])


def _sgd(param, grad, buffers, lr, key):
    """SGD with momentum 0.9, as torch.optim.SGD (first step: the buffer is the gradient)."""
    buffers[key] = grad.clone() if key not in buffers else 0.9 * buffers[key] + grad
    param -= lr * buffers[key]


def test_realtime_hll_pred_equals_the_equations():
    """One hidden layer, the pred loss, T = 3 steps, float64: the trainer's weights
    after one batch equal eqs. 3-1, 3-2, 3-4 and the time-local gradient 3-17
    applied at every step, with SGD at lr / T per step."""
    config, model, trainer = _trainer()
    images, labels = _batch()
    block, head, classifier = model.blocks[0], model.head, trainer.aux[0].classifier
    w, b = block.layer.weight.detach().clone(), block.layer.bias.detach().clone()
    wp, bp = classifier.weight.detach().clone(), classifier.bias.detach().clone()
    wh, bh = head.weight.detach().clone(), head.bias.detach().clone()
    x = images.flatten(1)
    onehot = F.one_hot(labels, CLASSES).to(x.dtype)
    lr, th, alpha, m = config.lr / config.timesteps, config.threshold, config.alpha, len(labels)
    state = torch.zeros(m, 8, dtype=x.dtype)
    buffers = {}
    for _ in range(config.timesteps):
        u = config.decay * state + x @ w.T + b  # (3-1), from the carried post-reset membrane
        s = (u >= th).to(x.dtype)  # (3-2)
        state = u - th * s
        # L_pred[t] = CE(Wp s[t] + bp, y) (3-4); the gradient reaches W through s[t] only (3-17)
        g_logits = (torch.softmax(s @ wp.T + bp, 1) - onehot) / m
        sig = torch.sigmoid(alpha * (u - th))
        g_u = (g_logits @ wp) * alpha * sig * (1 - sig)
        grads = {"w": g_u.T @ x, "b": g_u.sum(0), "wp": g_logits.T @ s, "bp": g_logits.sum(0)}
        for name, param in (("w", w), ("b", b), ("wp", wp), ("bp", bp)):
            _sgd(param, grads[name], buffers, lr, name)
        g_head = (torch.softmax(s @ wh.T + bh, 1) - onehot) / m  # the head's CE on this step's spikes
        _sgd(wh, g_head.T @ s, buffers, lr, "wh")
        _sgd(bh, g_head.sum(0), buffers, lr, "bh")

    trainer.step(images, labels)
    for got, want in (
        (block.layer.weight, w),
        (block.layer.bias, b),
        (classifier.weight, wp),
        (classifier.bias, bp),
        (head.weight, wh),
        (head.bias, bh),
    ):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(w, _trainer()[1].blocks[0].layer.weight.detach())  # the batch did change W


def test_realtime_hll_window_terms_equal_the_equations():
    """recon (3-10) in real time: no layer update before the window's last
    step; after it, recon on the rates of the running sums, its gradient
    reaching W through the last step's spikes only (3-17); the head learns
    at every step. float64, SGD at lr / T."""
    config, model, trainer = _trainer(loss="recon")
    images, labels = _batch()
    block, head, decoder = model.blocks[0], model.head, trainer.aux[0].decoder
    w, b = block.layer.weight.detach().clone(), block.layer.bias.detach().clone()
    wd, bd = decoder.weight.detach().clone(), decoder.bias.detach().clone()
    wh, bh = head.weight.detach().clone(), head.bias.detach().clone()
    x = images.flatten(1)
    onehot = F.one_hot(labels, CLASSES).to(x.dtype)
    lr, th, alpha, m, steps = (
        config.lr / config.timesteps,
        config.threshold,
        config.alpha,
        len(labels),
        config.timesteps,
    )
    state, spike_sum, buffers = torch.zeros(m, 8, dtype=x.dtype), torch.zeros(m, 8, dtype=x.dtype), {}
    for t in range(steps):
        u = config.decay * state + x @ w.T + b
        s = (u >= th).to(x.dtype)
        state, spike_sum = u - th * s, spike_sum + s
        if t == steps - 1:  # L_recon = mean((Wd r + bd − x)²), r = Σ s / T
            r = spike_sum / steps
            g_out = 2 * (r @ wd.T + bd - x) / x.numel()
            sig = torch.sigmoid(alpha * (u - th))
            g_u = (g_out @ wd) / steps * alpha * sig * (1 - sig)
            grads = {"w": g_u.T @ x, "b": g_u.sum(0), "wd": g_out.T @ r, "bd": g_out.sum(0)}
            for name, param in (("w", w), ("b", b), ("wd", wd), ("bd", bd)):
                _sgd(param, grads[name], buffers, lr, name)
        g_head = (torch.softmax(s @ wh.T + bh, 1) - onehot) / m
        _sgd(wh, g_head.T @ s, buffers, lr, "wh")
        _sgd(bh, g_head.sum(0), buffers, lr, "bh")

    trainer.step(images, labels)
    for got, want in ((block.layer.weight, w), (block.layer.bias, b), (decoder.weight, wd), (decoder.bias, bd)):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)
    for got, want in ((head.weight, wh), (head.bias, bh)):
        torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)
    assert not torch.equal(w, _trainer(loss="recon")[1].blocks[0].layer.weight.detach())


@pytest.mark.parametrize(
    "rule, loss", [("hll", "pred-sim"), ("hll", "pred-sim-contrast"), ("hll", "sim-recon"), ("hbh", None)]
)
def test_one_step_realtime_is_the_final_step_update(rule, loss):
    """With T = 1 there is one step per batch: both modes make the same update."""
    loss = {"loss": loss} if loss else {}
    images, labels = _batch(torch.float32)
    weights = []
    for update in ("final", "realtime"):
        _, model, trainer = _trainer(rule, timesteps=1, update=update, dtype=torch.float32, optimizer="adam", **loss)
        for _ in range(2):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*weights):
        assert torch.equal(a, b)


def _largest_saved_tensor(trainer, images, labels) -> int:
    """The most elements in one tensor autograd saved during a training step."""
    largest = 0

    def pack(t):
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        trainer.step(images, labels)
    return largest


@pytest.mark.parametrize(
    "rule, loss", [("hll", "pred-sim"), ("hll", "pred-sim-contrast"), ("hll", "pred-recon"), ("hbh", None)]
)
def test_realtime_keeps_no_sequence(rule, loss):
    """What autograd holds does not grow with T in real-time mode; in
    final-step mode it does (so this test can fail)."""
    overrides = {"batch_norm": True} if rule == "hbh" else {"loss": loss}  # HBH with BN: autograd path
    images, labels = _batch(torch.float32)
    saved = {}
    for update in ("final", "realtime"):
        for steps in (2, 16):
            _, _, trainer = _trainer(rule, timesteps=steps, update=update, dtype=torch.float32, **overrides)
            saved[update, steps] = _largest_saved_tensor(trainer, images, labels)
    assert saved["realtime", 2] == saved["realtime", 16]
    assert saved["final", 16] > saved["final", 2]


@pytest.mark.parametrize("rule, target", [("hll", 0.85), ("hbh", 0.65)])
def test_realtime_trains_digits(tmp_path, rule, target):
    config = TrainConfig(
        rule=rule, update="realtime", subset=600, epochs=3, hidden=[256], progress=False, out=str(tmp_path / rule)
    )
    metrics = train(config, log=lambda message: None)
    assert metrics["test_acc"] >= target, metrics["test_acc"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--rule", "bptt"], "--update realtime is for the local rules"),
        (["--realtime-lr", "half"], "invalid choice"),
    ],
)
def test_bad_realtime_combinations_are_one_line(tmp_path, flags, message):
    result = subprocess.run(
        [sys.executable, "-m", "pysnn", "train", "--update", "realtime", *flags, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_realtime_refuses_data_parallel():
    with pytest.raises(ValueError, match="--parallel data updates once per batch"):
        TrainConfig(update="realtime", parallel="data").validate()


def test_old_checkpoints_online_mode_is_per_step_pred():
    assert TrainConfig(update="online").update == "per-step-pred"
