"""`pysnn.nn.batch_norm.batch_norm_over_input` against nn.BatchNorm: the same
output and running statistics, the same gradients (to the order of the sums),
dL/dx written over x, and the module itself wherever that is not allowed."""

import pytest
import torch
from torch import nn

from pysnn.nn.batch_norm import batch_norm_over_input


def _norms(kind, channels, dtype, momentum=0.1, affine=True):
    torch.manual_seed(0)
    norm = kind(channels, momentum=momentum, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    twin = kind(channels, momentum=momentum, affine=affine).to(dtype)
    twin.load_state_dict(norm.state_dict())
    return norm, twin


def _grads(norm, fn, x, grad):
    leaf = x.clone().requires_grad_()
    y = fn(norm, leaf * 1.0)
    y.backward(grad)
    params = [p.grad for p in norm.parameters()]
    return y.detach(), leaf.grad, params


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "kind,shape",
    [
        (nn.BatchNorm2d, (6, 3, 5, 4)),
        (nn.BatchNorm1d, (9, 5)),
        (nn.BatchNorm1d, (4, 3, 7)),
        (nn.BatchNorm3d, (3, 2, 3, 2, 2)),
    ],
)
@pytest.mark.parametrize("momentum,affine", [(0.1, True), (None, True), (0.3, False)])
def test_equals_the_module(kind, shape, dtype, momentum, affine):
    norm, twin = _norms(kind, shape[1], dtype, momentum, affine)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):  # two steps: running statistics and their counter
        x = (3 * torch.randn(shape, generator=gen, dtype=torch.float64) + 1).to(dtype)
        grad = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        got = _grads(norm, batch_norm_over_input, x, grad)
        want = _grads(twin, lambda m, v: m(v), x, grad)
        assert torch.equal(got[0], want[0])
        tol = 1e-12 if dtype == torch.float64 else 2e-5
        torch.testing.assert_close(got[1], want[1], rtol=tol, atol=tol)
        for g, w in zip(got[2], want[2]):
            torch.testing.assert_close(g, w, rtol=tol, atol=tol)
        for name, buffer in norm.named_buffers():
            assert torch.equal(buffer, dict(twin.named_buffers())[name]), name
        for m in (norm, twin):
            m.zero_grad(set_to_none=True)


def test_gradient_is_written_over_the_input():
    norm, _ = _norms(nn.BatchNorm2d, 3, torch.float32)
    leaf = torch.randn(4, 3, 2, 2, requires_grad=True)
    x = leaf * 1.0
    seen = []
    x.register_hook(seen.append)
    batch_norm_over_input(norm, x).square().sum().backward()
    assert seen[0].data_ptr() == x.data_ptr()


def test_without_running_statistics_is_batch_statistics_only():
    norm, twin = _norms(nn.BatchNorm2d, 3, torch.float64)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    grad = torch.randn_like(x)
    got = _grads(norm, lambda m, v: batch_norm_over_input(m, v, update_stats=False), x, grad)
    want = _grads(
        twin, lambda m, v: nn.functional.batch_norm(v, None, None, m.weight, m.bias, True, 0.0, m.eps), x, grad
    )
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1], rtol=1e-12, atol=1e-12)
    assert torch.equal(norm.running_mean, torch.zeros(3, dtype=torch.float64)) and int(norm.num_batches_tracked) == 0


def test_runs_backward_once():
    norm, _ = _norms(nn.BatchNorm1d, 3, torch.float32)
    y = batch_norm_over_input(norm, torch.randn(4, 3, requires_grad=True) * 1.0)
    y.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot be run backward again"):
        y.sum().backward()


@pytest.mark.parametrize("case", ["eval", "leaf", "view_of_leaf", "half", "no_grad", "non_contiguous", "sync"])
def test_falls_back_to_the_module_where_it_may_not_overwrite(case):
    kind = nn.SyncBatchNorm if case == "sync" else nn.BatchNorm2d
    norm = kind(3)
    if case == "eval":
        norm.eval()
    base = torch.randn(4, 3, 2, 2, requires_grad=True)
    x = {
        "leaf": base,
        "view_of_leaf": base.view(base.shape),
        "half": base.bfloat16(),
        "no_grad": base.detach().clone(),
        "non_contiguous": (base * 1.0).transpose(2, 3),
    }.get(case, base * 1.0)
    before = x.detach().clone()
    y = batch_norm_over_input(norm, x)  # (SyncBatchNorm without a process group runs as BatchNorm)
    if y.requires_grad:
        y.square().sum().backward()
    assert torch.equal(x.detach(), before)


def test_bad_input_gives_the_module_error():
    norm = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm_over_input(norm, torch.randn(1, 3, 1, 1, requires_grad=True) * 1.0)
    with pytest.raises(ValueError, match="expected 4D input"):
        batch_norm_over_input(norm, torch.randn(2, 3, requires_grad=True) * 1.0)
