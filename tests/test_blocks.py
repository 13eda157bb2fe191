"""The spiking block's memory savings change nothing but memory: the spike
max pool, batch norm over an input that repeats over time, and HBH's
summed learning signal for such an input."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model
from pysnn.nn.blocks import fold, repeated_batch_norm
from pysnn.nn.pooling import spike_max_pool


def _saved(fn):
    """Every tensor autograd saves while fn runs."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return saved


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("density", [0.0, 0.2, 0.7, 1.0])
def test_spike_max_pool_is_max_pool_and_saves_a_byte_per_element(dtype, density):
    pool = nn.MaxPool2d(2)
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(5, 3, 8, 6, generator=generator) < density).to(dtype).requires_grad_()
    grad = torch.randn(5, 3, 4, 3, generator=generator).to(dtype)
    want = pool(spikes)
    (want_grad,) = torch.autograd.grad((want * grad).sum(), spikes)
    saved = _saved(lambda: setattr(spikes, "_out", spike_max_pool(spikes, pool)))
    got = spikes.__dict__.pop("_out")
    (got_grad,) = torch.autograd.grad((got * grad).sum(), spikes)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)  # ties go to the first spike, as in max_pool2d
    assert [t.dtype for t in saved] == [torch.uint8]


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, ceil_mode=True)])
def test_other_pools_and_odd_maps_fall_back_to_the_module(pool):
    spikes = (torch.rand(2, 3, 7, 7) < 0.5).float().requires_grad_()
    assert torch.equal(spike_max_pool(spikes, pool), pool(spikes))
    assert torch.equal(spike_max_pool(spikes, nn.MaxPool2d(2)), nn.MaxPool2d(2)(spikes))  # 7×7: not even


@pytest.mark.parametrize("shape", [(1, 8, 5), (1, 8, 3, 4, 4)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_repeated_batch_norm_is_batch_norm_over_the_copies(shape, momentum):
    norm_class = nn.BatchNorm1d if len(shape) == 3 else nn.BatchNorm2d
    copies, repeated = (
        norm_class(shape[2], momentum=momentum).double(),
        norm_class(shape[2], momentum=momentum).double(),
    )
    with torch.no_grad():
        copies.weight.uniform_(0.5, 1.5)
        repeated.weight.copy_(copies.weight)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):  # the second batch meets running statistics from the first
        x = torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=True)
        grad = torch.randn(4, *shape[1:], generator=generator, dtype=torch.float64)
        want = fold(copies, x.expand(4, *shape[1:]))
        want_grads = torch.autograd.grad((want * grad).sum(), (x, copies.weight, copies.bias))
        got = repeated_batch_norm(repeated, x, 4).expand(4, *shape[1:])
        got_grads = torch.autograd.grad((got * grad).sum(), (x, repeated.weight, repeated.bias))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
        for g, w in zip(got_grads, want_grads):
            torch.testing.assert_close(g, w, rtol=0, atol=1e-13)
        torch.testing.assert_close(repeated.running_var, copies.running_var, rtol=0, atol=1e-15)
        torch.testing.assert_close(repeated.running_mean, copies.running_mean, rtol=0, atol=1e-15)
        assert repeated.num_batches_tracked == copies.num_batches_tracked


def _cnn_step(rule, repeat_input: bool, fuse_pool: bool = True, **overrides):
    torch.manual_seed(0)
    config = TrainConfig(rule=rule, model="cnn", dataset="fashion-mnist", timesteps=3, optimizer="sgd", **overrides)
    model = build_model(config, (1, 12, 12), 4)
    trainer = make_trainer(model, config, 4, (1, 12, 12))
    model.double(), trainer.aux.double(), trainer.train()
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(8, 1, 12, 12, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (8,), generator=generator)
    if not repeat_input:  # the same steps, materialised: every block takes the general path
        model.encode = lambda x: x.unsqueeze(0).repeat(3, 1, 1, 1, 1)
    if not fuse_pool:  # the LIF, then the uint8-saving spike max pool: two ops
        for block in model.blocks:
            block.fuses_pool = lambda x: False
    for _ in range(2):
        trainer.step(images, labels)
    return model.state_dict()


@pytest.mark.parametrize("rule, overrides", [("hbh", {}), ("hbh", {"kernel": "cosine"}), ("hll", {}), ("bptt", {})])
def test_an_input_repeated_over_time_trains_as_its_copies(rule, overrides):
    """Direct coding's stride-0 input (layer and batch norm run once, HBH's
    signal summed over T before the layer's backward) against the same input
    copied T times, float64: equal weights and running statistics."""
    once, copied = _cnn_step(rule, True, **overrides), _cnn_step(rule, False, **overrides)
    for name in once:
        torch.testing.assert_close(once[name], copied[name], rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize(
    "rule, overrides",
    [("hll", {}), ("hll", {"update": "realtime"}), ("bptt", {}), ("bptt", {"surrogate": "atan"})],
)
def test_fused_lif_and_pool_train_as_the_two_ops(rule, overrides):
    """The conv blocks' LIF fused with their 2×2 spike max pool against the
    LIF followed by the pool, float64: equal weights after two steps."""
    fused, apart = _cnn_step(rule, True, **overrides), _cnn_step(rule, True, fuse_pool=False, **overrides)
    for name in fused:
        torch.testing.assert_close(fused[name], apart[name], rtol=1e-10, atol=1e-12, msg=name)


def test_direct_coding_keeps_no_time_sized_copy_of_the_first_layer():
    """A BPTT step of the CNN at T = 10 saves no tensor of the first layer's
    full T·B map (the fused LIF and pool keeps the one-step input)."""
    torch.manual_seed(0)
    config = TrainConfig(rule="bptt", model="cnn", dataset="fashion-mnist", timesteps=10)
    model = build_model(config, (1, 28, 28), 10)
    trainer = make_trainer(model, config, 10, (1, 28, 28))
    trainer.train()
    images, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    saved = _saved(lambda: trainer.step(images, labels))
    full_map = 10 * 8 * 32 * 28 * 28
    assert not [t for t in saved if t.numel() >= full_map]  # pooled outputs hold a quarter


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_spike_max_pool_without_a_gradient_is_the_max_of_each_window(dtype):
    """Outside autograd the 2×2 spike pool takes the maximum of each window's
    corners itself (no int64 indices): max_pool2d's values, NaN included."""
    x = torch.randn(5, 3, 8, 6).to(dtype)
    x[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        got = spike_max_pool(x, nn.MaxPool2d(2))
    assert torch.equal(got.nan_to_num(), F.max_pool2d(x, 2).nan_to_num())
    assert got[0, 0, 0, 0].isnan()


def test_time_mean_of_one_step_is_a_view():
    from pysnn.nn.blocks import time_mean

    x = torch.rand(1, 4, 5)
    assert time_mean(x).data_ptr() == x.data_ptr() and torch.equal(time_mean(x), x.mean(0))
    y = torch.rand(7, 4, 5, dtype=torch.float64)
    torch.testing.assert_close(time_mean(y), y.mean(0))
