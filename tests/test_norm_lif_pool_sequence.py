"""`pysnn.nn.norm_lif_pool_sequence`: a conv block's batch norm,
LIF and 2×2 max pool over a whole sequence from rest, holding only the
convolution's output and the pooled spikes, against the separate ops: the
same spikes and running statistics bit for bit, the same gradients to the
order of the sums, dL/dx written over x."""

import pytest
import torch
from batch_norm_cases import REFUSED, assert_norms_match_and_reset, neuron_options, refused_case, twin_norms
from torch import nn

from pysnn.nn import chunks
from pysnn.nn.low_memory import low_memory
from pysnn.nn.norm_lif_pool_sequence import norm_lif_pool_sequence, norm_lif_pool_sequence_applies
from pysnn.ops import lif_max_pool2d

SHAPE = (4, 6, 3, 6, 4)  # [T, B, C, H, W]


def _separate(norm, x, neuron):
    """Batch norm over the T·B rows, then the fused LIF-pool over the T steps."""
    y = norm(x.reshape(-1, *x.shape[2:])).view(x.shape)
    options = {k: neuron[k] for k in ("surrogate", "alpha", "grad_mode")}
    return lif_max_pool2d(y, neuron["decay"], neuron["threshold"], **options)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("grad_mode", ["bptt", "time_local"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("one_sample_chunks", [False, True])
def test_equals_the_separate_ops(dtype, tol, grad_mode, affine, one_sample_chunks, monkeypatch):
    if one_sample_chunks:
        monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)
    neuron = neuron_options(grad_mode=grad_mode)
    norm, twin = twin_norms(SHAPE[2], dtype, affine)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # two batches: running statistics and their counter
        x = torch.randn(SHAPE, generator=gen, dtype=torch.float64).to(dtype)
        weights = torch.randn(*SHAPE[:3], SHAPE[3] // 2, SHAPE[4] // 2, generator=gen, dtype=dtype)

        leaf = x.clone().requires_grad_()
        with low_memory():
            assert norm_lif_pool_sequence_applies(norm, leaf * 1.0)
        pooled = norm_lif_pool_sequence(norm, leaf * 1.0, neuron)
        (pooled * weights).sum().backward()

        twin_leaf = x.clone().requires_grad_()
        want = _separate(twin, twin_leaf * 1.0, neuron)
        (want * weights).sum().backward()

        assert torch.equal(pooled, want.detach())
        torch.testing.assert_close(leaf.grad, twin_leaf.grad, rtol=tol, atol=tol)
        assert pooled.any() and not pooled.all()  # some windows spiked, some did not
        assert_norms_match_and_reset(norm, twin, tol)


def test_writes_the_gradient_over_x():
    norm, _ = twin_norms(SHAPE[2], torch.float32)
    x = torch.randn(SHAPE, requires_grad=True) * 1.0
    seen = []
    x.register_hook(seen.append)
    norm_lif_pool_sequence(norm, x, neuron_options()).sum().backward()
    assert seen[0].data_ptr() == x.data_ptr()


def test_runs_backward_once():
    norm, _ = twin_norms(SHAPE[2], torch.float32)
    x = torch.randn(SHAPE, requires_grad=True) * 1.0
    loss = norm_lif_pool_sequence(norm, x, neuron_options()).sum() + norm.weight.sum() * 0
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward once|cannot be run backward again"):
        loss.backward()


@pytest.mark.parametrize("case", REFUSED + ["one_step"])
def test_applies_only_where_it_may_overwrite(case):
    norm, x = nn.BatchNorm2d(SHAPE[2]), torch.randn(SHAPE, requires_grad=True) * 1.0
    with low_memory():
        assert norm_lif_pool_sequence_applies(norm, x)
    assert not norm_lif_pool_sequence_applies(norm, x)  # (only inside low_memory())
    norm, x, grad = refused_case(case, SHAPE)
    if case == "one_step":  # (a real-time step: norm_lif_pool_step)
        x = x[:1]
    with torch.set_grad_enabled(grad), low_memory():
        assert not norm_lif_pool_sequence_applies(norm, x)


@pytest.mark.parametrize("rule, loss", [("hll", "pred-sim"), ("hll", "pred-recon"), ("bptt", "pred-sim")])
def test_training_takes_it_with_the_same_weights(monkeypatch, rule, loss):
    """A final-step HLL update and a BPTT step of the CNN's second block (a
    sequence input) run as norm_lif_pool_sequence: the weights after two
    batches equal those of batch norm and the LIF-pool as separate ops up
    to the order of batch norm's sums (float64)."""
    from pysnn.config import TrainConfig
    from pysnn.learning import make_trainer
    from pysnn.models import build_model

    shape, classes = (1, 8, 8), 3
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(12, *shape, generator=generator, dtype=torch.float64)
    labels = torch.arange(12) % classes
    from pysnn.nn import blocks

    applies = blocks.norm_lif_pool_sequence_applies
    taken = []
    monkeypatch.setattr(blocks, "norm_lif_pool_sequence_applies", lambda *a: taken.append(applies(*a)) or taken[-1])
    weights = []
    for fused in (True, False):
        if not fused:
            monkeypatch.setattr(blocks, "norm_lif_pool_sequence_applies", lambda *a: False)
        torch.manual_seed(0)
        config = TrainConfig(model="cnn", rule=rule, loss=loss, low_memory=True, timesteps=3, batch_size=12, lr=0.01)
        model = build_model(config, shape, classes)
        trainer = make_trainer(model, config, classes, shape)
        model.double(), trainer.aux.double()
        trainer.train()
        for _ in range(2):
            trainer.step(images, labels)
        weights.append([p.detach().clone() for p in [*model.parameters(), *model.buffers()]])
    assert taken == [True] * 2  # the second block, once per batch (the first one's input repeats)
    for got, want in zip(*weights):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
