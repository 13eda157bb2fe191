"""Model shapes and one training step of every rule on the spiking MLP and VGG8."""

import pytest
import torch

from pysnn import models
from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.nn import NeuronConfig


@pytest.mark.parametrize("size,channels,flat", [(28, 1, 512), (32, 3, 2048)])
def test_vgg8_shapes(size, channels, flat):
    model = models.vgg8(channels, 10, input_size=size, timesteps=2)
    assert len(model.blocks) == 7 and model.blocks[-1].layer.in_features == flat
    assert model.blocks[-1].layer.out_features == 1024
    with torch.no_grad():
        assert model(torch.rand(2, channels, size, size)).shape == (2, 10)
    wide = models.vgg8(channels, 10, width_mult=2.0, input_size=size)
    assert wide.blocks[0].layer.out_channels == 256


def test_mlp_presets():
    assert [b.layer.out_features for b in models.mlp(784).blocks] == [1024]
    deep = models.mlp(784, hidden=(1024, 1024, 1024))
    assert [b.layer.in_features for b in deep.blocks] == [784, 1024, 1024]
    assert deep(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize(
    "rule,extra",
    [
        ("hll", {}),
        ("hll", {"loss": "pred-sim-contrast", "update": "per-step-pred"}),
        ("hll", {"loss": "pred-recon"}),
        ("hll", {"loss": "sim-recon"}),
        ("hbh", {}),
        ("hbh", {"kernel": "cosine"}),
        ("bptt", {}),
    ],
)
def test_vgg8_training_step_changes_every_layer(rule, extra):
    torch.manual_seed(0)
    config = TrainConfig(rule=rule, model="vgg8", width_mult=0.125, timesteps=3, threshold=0.3, lr=1e-2, **extra)
    model = models.build("vgg8", (1, 28, 28), 10, width_mult=0.125, timesteps=3, neuron=NeuronConfig(threshold=0.3))
    trainer = make_trainer(model, config, 10, (1, 28, 28))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    loss, logits = trainer.step(torch.rand(8, 1, 28, 28), torch.arange(8) % 10)
    assert logits.shape == (8, 10) and loss == loss  # finite
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed), f"{sum(changed)}/{len(changed)} parameters changed"


def test_full_width_vgg8_step_on_cpu():
    torch.manual_seed(0)
    config = TrainConfig(rule="hll", model="vgg8", timesteps=2)
    model = models.build("vgg8", (1, 28, 28), 10, timesteps=2)
    trainer = make_trainer(model, config, 10, (1, 28, 28))
    loss, logits = trainer.step(torch.rand(2, 1, 28, 28), torch.tensor([1, 2]))
    assert logits.shape == (2, 10)


def test_unknown_hll_loss():
    with pytest.raises(ValueError, match="--loss"):
        make_trainer(models.mlp(64), TrainConfig(loss="pred-magic"), 10, (1, 8, 8))


@pytest.mark.parametrize("kind,batch_norm", [("mlp", False), ("mlp", True), ("vgg8", True)])
def test_direct_coding_runs_the_first_layer_once_with_the_same_result(kind, batch_norm):
    # A stride-0 input over T (direct coding) takes the once-per-image path;
    # a materialised copy takes the per-step path: same spikes and gradients.
    torch.manual_seed(0)
    neuron = NeuronConfig(decay=0.75, threshold=0.6)
    if kind == "mlp":
        net = models.mlp(64, hidden=(32,), neuron=neuron, batch_norm=batch_norm, timesteps=4).double()
        images = torch.rand(6, 1, 8, 8, dtype=torch.float64)
    else:
        net = models.vgg8(1, width_mult=1 / 16, input_size=16, neuron=neuron, timesteps=3).double()
        images = torch.rand(4, 1, 16, 16, dtype=torch.float64)
    block = net.blocks[0]
    expanded = net.encode(images)
    assert expanded.stride(0) == 0
    results = []
    for h in (expanded, expanded.contiguous()):
        net.zero_grad()
        spikes = block.fire(block.integrate(h))
        (spikes * torch.linspace(-1, 1, spikes.numel(), dtype=spikes.dtype).view_as(spikes)).sum().backward()
        results.append((spikes.detach(), block.layer.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "rule,extra", [("hll", {}), ("hbh", {}), ("hbh", {"hsic_term": "input", "hsic_norm": "cka"}), ("bptt", {})]
)
def test_cnn_shapes_and_every_rule_updates_every_layer(rule, extra):
    torch.manual_seed(0)
    config = TrainConfig(rule=rule, model="cnn", timesteps=3, threshold=0.3, lr=1e-2, **extra)
    model = models.build("cnn", (1, 28, 28), 10, timesteps=3, neuron=NeuronConfig(threshold=0.3))
    assert [type(b.layer).__name__ for b in model.blocks] == ["Conv2d", "Conv2d", "Linear"]
    assert model.blocks[2].layer.in_features == 64 * 7 * 7
    trainer = make_trainer(model, config, 10, (1, 28, 28))
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    loss, logits = trainer.step(torch.rand(8, 1, 28, 28), torch.arange(8) % 10)
    assert logits.shape == (8, 10) and loss == loss
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed), f"{sum(changed)}/{len(changed)} parameters changed"
