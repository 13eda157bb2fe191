"""`pysnn.nn.norm_lif_pool`: one real-time step of a conv block (batch norm,
charge, LIF, 2×2 max pool) against the separate ops: the same spikes,
membrane and running statistics bit for bit, the same gradients to the
order of the sums, dL/dx written over x and the membrane in u0's buffer."""

import pytest
import torch
from batch_norm_cases import REFUSED, assert_norms_match_and_reset, neuron_options, refused_case, twin_norms
from torch import nn

from pysnn.nn import chunks
from pysnn.nn.norm_lif_pool import norm_lif_pool_applies, norm_lif_pool_step, settle_membrane_
from pysnn.ops import lif_max_pool2d

SHAPE = (1, 6, 3, 6, 4)  # [T = 1, B, C, H, W]


def _separate(norm, x, u0, neuron):
    """batch norm, the in-place charge and the fused LIF-pool, as ops one after another."""
    y = norm(x[0]).unsqueeze(0)
    if u0 is not None:
        y = y + u0.clone().mul_(neuron["decay"])  # decay·u0 rounded first, as the step
    return lif_max_pool2d(y, **{k: neuron[k] for k in ("decay", "threshold")}, **_options(neuron), return_state=True)


def _options(neuron):
    return {k: neuron[k] for k in ("surrogate", "alpha", "grad_mode")}


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("with_u0", [False, True])
@pytest.mark.parametrize("surrogate", ["sigmoid", "atan"])
@pytest.mark.parametrize("one_sample_chunks", [False, True])
def test_equals_the_separate_ops(dtype, tol, with_u0, surrogate, one_sample_chunks, monkeypatch):
    if one_sample_chunks:
        monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)
    neuron = neuron_options(surrogate=surrogate)
    norm, twin = twin_norms(SHAPE[2], dtype)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # two steps: running statistics and their counter
        x = torch.randn(SHAPE, generator=gen, dtype=torch.float64).to(dtype)
        u0 = torch.randn(SHAPE[1:], generator=gen, dtype=torch.float64).to(dtype) if with_u0 else None
        weights = torch.randn(SHAPE[1], SHAPE[2], SHAPE[3] // 2, SHAPE[4] // 2, generator=gen, dtype=dtype)

        leaf = x.clone().requires_grad_()
        pooled, h = norm_lif_pool_step(norm, leaf * 1.0, [None if u0 is None else u0.clone()], neuron)
        (pooled[0] * weights).sum().backward()
        membrane = settle_membrane_(h, neuron)

        twin_leaf = x.clone().requires_grad_()
        want_pooled, want_state = _separate(twin, twin_leaf * 1.0, u0, neuron)
        (want_pooled[0] * weights).sum().backward()

        assert torch.equal(pooled, want_pooled.detach())
        assert torch.equal(membrane, want_state.detach())
        torch.testing.assert_close(leaf.grad, twin_leaf.grad, rtol=tol, atol=tol)
        assert pooled.any() and not pooled.all()  # some windows spiked, some did not
        assert_norms_match_and_reset(norm, twin, tol)


def test_writes_the_gradient_over_x_and_charges_into_u0():
    norm, _ = twin_norms(SHAPE[2], torch.float32)
    x = torch.randn(SHAPE, requires_grad=True) * 1.0
    u0 = torch.randn(SHAPE[1:])
    seen = []
    x.register_hook(seen.append)
    carried = [u0]
    pooled, h = norm_lif_pool_step(norm, x, carried, neuron_options())
    assert carried == [] and h.data_ptr() == u0.data_ptr()
    pooled.sum().backward()
    assert seen[0].data_ptr() == x.data_ptr()


def test_runs_backward_once():
    norm, _ = twin_norms(SHAPE[2], torch.float32)
    x = torch.randn(SHAPE, requires_grad=True) * 1.0
    pooled, _ = norm_lif_pool_step(norm, x, [None], neuron_options())
    loss = pooled.sum() + norm.weight.sum() * 0  # (a scalar whose graph can be retained)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="backward once|cannot be run backward again"):
        loss.backward()


def test_refuses_settling_before_the_backward():
    """The membrane replaces h in place: a backward after it would read the wrong h."""
    norm, _ = twin_norms(SHAPE[2], torch.float32)
    x = torch.randn(SHAPE, requires_grad=True) * 1.0
    pooled, h = norm_lif_pool_step(norm, x, [None], neuron_options())
    settle_membrane_(h, neuron_options())
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        pooled.sum().backward()


@pytest.mark.parametrize("case", REFUSED + ["u0_dtype", "two_steps"])
def test_applies_only_where_it_may_overwrite(case):
    norm, x, u0 = nn.BatchNorm2d(SHAPE[2]), torch.randn(SHAPE, requires_grad=True) * 1.0, torch.randn(SHAPE[1:])
    assert norm_lif_pool_applies(norm, x, u0) and norm_lif_pool_applies(norm, x, None)
    norm, x, grad = refused_case(case, SHAPE)
    if case == "u0_dtype":
        u0 = u0.double()
    elif case == "two_steps":
        x = torch.randn((2,) + SHAPE[1:], requires_grad=True) * 1.0
    with torch.set_grad_enabled(grad):
        assert not norm_lif_pool_applies(norm, x, u0)
