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


class OneLayer:
    """A one-hidden-layer HLL trainer (T = 3, float64, SGD) with copies of its
    layer's, auxiliary module's and head's starting weights, for an
    independent computation to update."""

    def __init__(self, loss: str, aux: str) -> None:
        self.config, model, self.trainer = _trainer(loss=loss)
        self.images, self.labels = _batch()
        self.modules = {"layer": model.blocks[0].layer, "aux": getattr(self.trainer.aux[0], aux), "head": model.head}
        self.start = {k: [m.weight.detach().clone(), m.bias.detach().clone()] for k, m in self.modules.items()}
        self.weights = {k: [w.clone() for w in pair] for k, pair in self.start.items()}  # what the test updates
        self.x = self.images.flatten(1)
        self.onehot = F.one_hot(self.labels, CLASSES).to(self.x.dtype)
        c = self.config
        self.lr, self.th, self.alpha, self.m = c.lr / c.timesteps, c.threshold, c.alpha, len(self.labels)
        self.buffers = {}

    def sgd(self, module: str, grad_w: torch.Tensor, grad_b: torch.Tensor) -> None:
        w, b = self.weights[module]
        _sgd(w, grad_w, self.buffers, self.lr, module + ".w")
        _sgd(b, grad_b, self.buffers, self.lr, module + ".b")

    def head_step(self, s: torch.Tensor) -> None:
        """The head's CE on this step's spikes."""
        wh, bh = self.weights["head"]
        g_head = (torch.softmax(s @ wh.T + bh, 1) - self.onehot) / self.m
        self.sgd("head", g_head.T @ s, g_head.sum(0))

    def check(self) -> None:
        self.trainer.step(self.images, self.labels)
        for name, module in self.modules.items():
            for got, want in zip((module.weight, module.bias), self.weights[name]):
                torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-12)
        assert not torch.equal(self.start["layer"][0], self.weights["layer"][0])  # the batch did change W


def test_realtime_hll_pred_equals_the_equations():
    """One hidden layer, the pred loss, T = 3 steps, float64: the trainer's weights
    after one batch equal eqs. 3-1, 3-2, 3-4 and the time-local gradient 3-17
    applied at every step, with SGD at lr / T per step."""
    net = OneLayer("pred", "classifier")
    c, x = net.config, net.x
    state = torch.zeros(net.m, 8, dtype=x.dtype)
    for _ in range(c.timesteps):
        (w, b), (wp, bp) = net.weights["layer"], net.weights["aux"]
        u = c.decay * state + x @ w.T + b  # (3-1), from the carried post-reset membrane
        s = (u >= net.th).to(x.dtype)  # (3-2)
        state = u - net.th * s
        # L_pred[t] = CE(Wp s[t] + bp, y) (3-4); the gradient reaches W through s[t] only (3-17)
        g_logits = (torch.softmax(s @ wp.T + bp, 1) - net.onehot) / net.m
        sig = torch.sigmoid(net.alpha * (u - net.th))
        g_u = (g_logits @ wp) * net.alpha * sig * (1 - sig)
        net.sgd("layer", g_u.T @ x, g_u.sum(0))
        net.sgd("aux", g_logits.T @ s, g_logits.sum(0))
        net.head_step(s)
    net.check()


def test_realtime_hll_window_terms_equal_the_equations():
    """recon (3-10) in real time: no layer update before the window's last
    step; after it, recon on the rates of the running sums, its gradient
    reaching W through the last step's spikes only (3-17); the head learns
    at every step. float64, SGD at lr / T."""
    net = OneLayer("recon", "decoder")
    c, x, steps = net.config, net.x, net.config.timesteps
    state, spike_sum = torch.zeros(net.m, 8, dtype=x.dtype), torch.zeros(net.m, 8, dtype=x.dtype)
    for t in range(steps):
        (w, b), (wd, bd) = net.weights["layer"], net.weights["aux"]
        u = c.decay * state + x @ w.T + b
        s = (u >= net.th).to(x.dtype)
        state, spike_sum = u - net.th * s, spike_sum + s
        if t == steps - 1:  # L_recon = mean((Wd r + bd − x)²), r = Σ s / T
            r = spike_sum / steps
            g_out = 2 * (r @ wd.T + bd - x) / x.numel()
            sig = torch.sigmoid(net.alpha * (u - net.th))
            g_u = (g_out @ wd) / steps * net.alpha * sig * (1 - sig)
            net.sgd("layer", g_u.T @ x, g_u.sum(0))
            net.sgd("aux", g_out.T @ r, g_out.sum(0))
        net.head_step(s)
    net.check()


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
        (["--low-memory", "half"], "unrecognized arguments"),
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


@pytest.mark.parametrize(
    "rule, overrides",
    [
        ("hll", {"loss": "pred-sim"}),
        ("hbh", {}),  # the fused linear update
        ("hbh", {"batch_norm": True}),  # the learning signal through the layer's backward
        ("hll", {"model": "cnn", "loss": "pred-sim"}),  # the fused LIF and pool
        ("hbh", {"model": "cnn"}),
    ],
)
def test_charging_the_carried_membrane_in_place_changes_nothing(monkeypatch, rule, overrides):
    """Real-time steps charge the carried membrane into the layer's input in
    place and run from rest (HBH reading that input as the membrane): the
    weights after two batches equal, bit for bit, those of the same steps
    run with the membrane handed to the LIF op as u0."""
    from pysnn.learning import base

    images, labels = _batch(torch.float32)
    weights = []
    for charged in (True, False):
        if not charged:
            monkeypatch.setattr(base, "charge_single_step", lambda x, u0, *args, **kwargs: (x, u0))
        _, model, trainer = _trainer(rule, timesteps=4, dtype=torch.float32, **overrides)  # SGD: no normalised step
        for _ in range(2):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_conv_block_step_with_batch_norm_equals_the_separate_ops(monkeypatch):
    """A real-time HLL step of a conv block with batch norm runs as one
    norm_lif_pool_step (two layer-sized buffers): after two batches the
    weights equal those of batch norm, the charge and the LIF-pool op run
    one after another, up to the order of batch norm's gradient sums (float64)."""
    from pysnn.learning import base

    images, labels = _batch()
    taken = []
    applies = base.norm_lif_pool_applies
    monkeypatch.setattr(base, "norm_lif_pool_applies", lambda *a: taken.append(applies(*a)) or taken[-1])
    weights = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(base, "norm_lif_pool_applies", lambda *a: False)
        _, model, trainer = _trainer(timesteps=3, dtype=torch.float32, model="cnn", loss="pred-sim", batch_norm=True)
        model.double(), trainer.aux.double()  # (built in float32: the CNN's shape probe is float32)
        for _ in range(2):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert taken and all(taken)
    for got, want in zip(*weights):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "rule, update",
    [("hll", "realtime"), ("hbh", "realtime"), ("hll", "final"), ("hbh", "final"), ("bptt", "final")],
)
def test_low_memory_steps_equal_the_faster_ones(monkeypatch, rule, update):
    """Training steps take the memory-saving passes (pysnn.nn.low_memory:
    convolutions a few samples at a time, a conv block's batch norm output
    over a sequence formed again) unless --no-low-memory, which takes none:
    the weights after two batches are the same up to the order of the sums
    (float64)."""
    from pysnn.learning import hbh
    from pysnn.nn import chunks, conv, norm_lif_pool_sequence

    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(20, *SHAPE, generator=generator), torch.arange(20) % CLASSES
    calls = []
    for label, owner, name in [
        ("conv", conv._ChunkedConv2d, "apply"),
        ("sequence", norm_lif_pool_sequence._NormLifPoolSequence, "apply"),
        ("sequence", hbh, "norm_lif_rates"),
    ]:
        original = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, original=original, label=label: calls.append(label) or original(*a))
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)
    weights = []
    for in_chunks in (True, False):
        calls.clear()
        _, model, trainer = _trainer(
            rule,
            update=update,
            timesteps=3,
            dtype=torch.float32,
            batch_size=20,
            model="cnn",
            loss="pred-sim",
            batch_norm=True,
            low_memory=in_chunks,
        )
        model.double(), trainer.aux.double()
        for _ in range(2):
            trainer.step(images.double(), labels)
        weights.append([p.detach().clone() for p in model.parameters()])
        want = {"conv", "sequence"} if update == "final" else {"conv"}
        assert set(calls) == (want if in_chunks else set())
    for got, want in zip(*weights):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_window_sums_as_counts_change_nothing(monkeypatch):
    """Real-time window terms keep their spike sums (and a previous block's
    spikes' sums) as uint8 counts: the weights equal, bit for bit, those of
    float sums."""
    from pysnn.learning import hll

    images, labels = _batch()
    weights = []
    accumulate = hll._accumulate
    for counts in (True, False):
        if not counts:
            monkeypatch.setattr(hll, "_accumulate", lambda total, steps, counts: accumulate(total, steps, False))
        _, model, trainer = _trainer(timesteps=4, hidden=[8, 6], loss="pred-recon")
        for _ in range(2):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.mark.parametrize("overrides", [{"batch_norm": True}, {"model": "cnn"}])
def test_hbh_step_reading_the_unsettled_membrane_changes_nothing(monkeypatch, overrides):
    """A real-time HBH step through the layer's backward keeps the charged
    input as the membrane until the update is done, reads σ' from it a few
    samples at a time and settles it afterwards: the weights after two
    batches equal, bit for bit, those of σ' formed over the membrane and the
    LIF's own state (convolutions in chunks on both sides)."""
    from pysnn.learning import base
    from pysnn.nn import chunks

    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(12, *SHAPE, generator=generator), torch.arange(12) % CLASSES
    taken = []
    fire_unsettled = base.LocalTrainer.fire_unsettled
    monkeypatch.setattr(base.LocalTrainer, "fire_unsettled", lambda *a: taken.append(fire_unsettled(*a)) or taken[-1])
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)  # one sample at a time (8 in a convolution's forward)
    weights = []
    for unsettled in (True, False):
        if not unsettled:
            monkeypatch.setattr(base.LocalTrainer, "fire_unsettled", lambda *a: None)
        _, model, trainer = _trainer("hbh", timesteps=3, dtype=torch.float32, batch_size=12, **overrides)
        model.double()
        for _ in range(2):
            trainer.step(images.double(), labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert taken and all(t is not None for t in taken)
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.mark.parametrize(
    "dtype, overrides",
    [
        (torch.float64, {"batch_norm": True}),
        (torch.float64, {"model": "cnn"}),
        (torch.float32, {"model": "cnn", "dropout": 0.2}),
        (torch.float32, {"model": "cnn", "hsic_term": "input"}),
        (torch.float32, {"model": "cnn", "kernel": "laplacian"}),
    ],
)
def test_final_step_hbh_firing_step_by_step_changes_nothing(monkeypatch, dtype, overrides):
    """A final-step HBH update through the layer's backward fires one step at
    a time (SpikingBlock.fire_step_by_step: the membranes over the layer's
    output, no spike sequence): the weights after three batches equal, bit
    for bit, those of the LIF op's spikes and membranes over the whole
    sequence, for a repeated input (the first block) and a sequence."""
    from pysnn.learning import hbh

    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(12, *SHAPE, generator=generator, dtype=dtype), torch.arange(12) % CLASSES
    taken = []
    fires = hbh.HBHTrainer._fires_step_by_step
    monkeypatch.setattr(hbh.HBHTrainer, "_fires_step_by_step", lambda *a: taken.append(fires(*a)) or taken[-1])
    weights = []
    for step_by_step in (True, False):
        if not step_by_step:
            monkeypatch.setattr(hbh.HBHTrainer, "_fires_step_by_step", lambda *a: False)
        _, model, trainer = _trainer("hbh", update="final", timesteps=4, dtype=dtype, batch_size=12, **overrides)
        for _ in range(3):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert taken and all(taken)
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_fire_step_by_step_is_the_lif_op():
    """SpikingBlock.fire_step_by_step against the LIF op over the whole
    sequence: the membranes written over x, the rates and the pooled spikes
    bit for bit; for a repeated step, σ' averaged over the steps."""
    from pysnn.nn.blocks import NeuronConfig, SpikingBlock

    torch.manual_seed(0)
    neuron = NeuronConfig(decay=0.6, threshold=0.4)
    block = SpikingBlock(torch.nn.Conv2d(2, 3, 3, padding=1), neuron, pool=torch.nn.MaxPool2d(2))
    x = torch.randn(5, 4, 3, 6, 6, dtype=torch.float64)
    spikes, membrane = block.fire(x, return_membrane=True)
    own = x.clone()
    pooled, rates, post = block.fire_step_by_step(own, 5)
    assert post is None
    assert torch.equal(own, membrane)
    assert torch.equal(rates, spikes.mean(0))
    assert torch.equal(pooled, block.pooled(spikes))
    step = x[:1]
    spikes, membrane = block.fire(step.expand(5, *step.shape[1:]), return_membrane=True)
    pooled, rates, post = block.fire_step_by_step(step, 5)
    assert torch.equal(rates, spikes.mean(0)) and torch.equal(pooled, block.pooled(spikes))
    torch.testing.assert_close(post, block.surrogate_grad_(membrane).mean(0, keepdim=True), rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match="expected 5"):
        block.fire_step_by_step(x[:3].clone(), 5)


@pytest.mark.parametrize(
    "old_field, value, update, low_memory",
    [
        ("realtime_convolutions", "chunked", "realtime", True),
        ("realtime_convolutions", "whole", "realtime", False),
        ("realtime_convolutions", "chunked", "final", False),  # (it chunked real-time steps only)
        ("convolutions", "chunked", "final", True),
        ("convolutions", "whole", "realtime", False),
    ],
)
def test_saved_runs_convolutions_flag_reads_as_low_memory(old_field, value, update, low_memory):
    """A run saved when the flag was --realtime-convolutions or --convolutions
    chunked|whole loads as the --low-memory / --no-low-memory it ran with."""
    saved = TrainConfig(update=update).to_dict()
    del saved["low_memory"]
    saved[old_field] = value
    assert TrainConfig.from_dict(saved).low_memory is low_memory
    assert TrainConfig.from_dict(TrainConfig(low_memory=False).to_dict()) == TrainConfig(low_memory=False)


@pytest.mark.parametrize(
    "update, rule, given, want",
    [("realtime", "hll", None, True), ("final", "hll", None, False), ("final", "bptt", None, False)]
    + [("final", "bptt", True, True), ("realtime", "hbh", False, False)],
)
def test_low_memory_is_on_by_default_for_real_time_updates_only(update, rule, given, want):
    config = TrainConfig(update=update, rule=rule, low_memory=given)
    config.validate()
    assert config.uses_low_memory() is want


@pytest.mark.parametrize(
    "overrides",
    [{}, {"dropout": 0.2}, {"kernel": "laplacian"}, {"kernel": "laplacian", "hsic_norm": "cka", "hsic_term": "input"}],
)
def test_final_step_hbh_through_batch_norm_in_chunks_changes_nothing(monkeypatch, overrides):
    """A final-step HBH update of a conv block with batch norm over a sequence
    (the CNN's second block) forms batch norm's output and the membranes a
    few samples at a time (pysnn.nn.norm_lif_signal): the weights after
    three batches (and batch norm's running statistics) equal those of the
    ops over the whole sequence up to the order of batch norm's sums (float64)."""
    from pysnn.learning import hbh
    from pysnn.nn import chunks

    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(12, *SHAPE, generator=generator, dtype=torch.float64), torch.arange(12) % CLASSES
    taken = []
    through_norm = hbh.HBHTrainer._signal_through_norm
    monkeypatch.setattr(hbh.HBHTrainer, "_signal_through_norm", lambda *a: taken.append(through_norm(*a)) or taken[-1])
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)  # one sample at a time
    weights, buffers = [], []
    for in_chunks in (True, False):
        if not in_chunks:
            monkeypatch.setattr(hbh.HBHTrainer, "_signal_through_norm", lambda *a: False)
        _, model, trainer = _trainer(
            "hbh",
            update="final",
            timesteps=4,
            dtype=torch.float32,
            batch_size=12,
            model="cnn",
            batch_norm=True,
            low_memory=True,
            **overrides,
        )
        model.double()
        for _ in range(3):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in model.parameters()])
        buffers.append([b.clone() for b in model.buffers()])
    assert taken.count(True) == 3  # the second block's, once per batch
    for got, want in zip(weights[0] + buffers[0], weights[1] + buffers[1]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_bench_train_compares_each_low_memory_mode_with_its_own_bptt():
    """`pysnn bench train --low-memory on off auto`: a row per mode, each
    relative to BPTT in the same mode; auto says what it resolved to."""
    from pysnn.bench.train import run

    rows = run(
        ("hll", "bptt"),
        "cnn",
        8,
        (2,),
        rounds=1,
        measure_memory=False,
        updates=("final", "realtime"),
        low_memory=(True, False, None),
    )
    modes = [(r["rule"], r["update"], r["low_memory"]) for r in rows]
    assert modes[:3] == [("hll", "final", "on"), ("hll", "realtime", "on"), ("bptt", "final", "on")]
    assert modes[6:] == [("hll", "final", "auto off"), ("hll", "realtime", "auto on"), ("bptt", "final", "auto off")]
    for row in rows:
        mode = row["low_memory"].split()[0]
        bptt = next(r for r in rows if r["rule"] == "bptt" and r["low_memory"].split()[0] == mode)
        assert row["fused_vs_bptt"] == round(row["fused_samples_s"] / bptt["fused_samples_s"], 2)
