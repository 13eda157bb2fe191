"""Shared by the tests of a conv block's fused batch-norm ops: the inputs their
`*_applies` must refuse, the neuron options, twin norms and their comparison."""

import torch
from torch import nn

# Each leaves the op nothing it may overwrite or compute exactly.
REFUSED = ["leaf", "non-contiguous", "batch_norm_1d", "eval", "no_grad", "odd_width", "bfloat16", "zero_eps"]


def refused_case(case: str, shape: tuple):
    """(norm, x, grad enabled) for x [S, B, C, H, W] of `shape` that `case` spoils,
    or (norm, x, True) unchanged for a case the caller spoils itself."""
    norm, x, grad = nn.BatchNorm2d(shape[2]), torch.randn(shape, requires_grad=True) * 1.0, True
    if case == "leaf":
        x = x.detach().requires_grad_()
    elif case == "non-contiguous":
        x = (torch.randn(shape[:3] + shape[4:2:-1], requires_grad=True) * 1.0).transpose(3, 4)
    elif case == "batch_norm_1d":
        norm = nn.BatchNorm1d(shape[2])
    elif case == "eval":
        norm.eval()
    elif case == "no_grad":
        grad = False
    elif case == "odd_width":
        x = torch.randn(shape[:4] + (5,), requires_grad=True) * 1.0
    elif case == "bfloat16":
        x = x.bfloat16()
    elif case == "zero_eps":  # (1/√(var + eps) of a constant channel: native batch norm's 0, not inf)
        norm.eps = 0.0
    return norm, x, grad


def neuron_options(**overrides) -> dict:
    """The LIF's options as the fused conv-block ops take them."""
    return {"decay": 0.75, "threshold": 0.3, "surrogate": "sigmoid", "alpha": 4.0, "grad_mode": "bptt", **overrides}


def twin_norms(channels: int, dtype, affine: bool = True):
    """A BatchNorm2d with non-trivial weight and bias, and an equal twin for the separate ops."""
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(channels, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    twin = nn.BatchNorm2d(channels, affine=affine).to(dtype)
    twin.load_state_dict(norm.state_dict())
    return norm, twin


def assert_norms_match_and_reset(norm, twin, tol: float) -> None:
    """norm's gradients equal twin's to `tol`, its running statistics bit for
    bit; then both gradients are cleared for the next batch."""
    for got, want in zip(norm.parameters(), twin.parameters()):
        torch.testing.assert_close(got.grad, want.grad, rtol=tol, atol=tol)
    for name, buffer in norm.named_buffers():
        assert torch.equal(buffer, dict(twin.named_buffers())[name]), name
    for m in (norm, twin):
        m.zero_grad(set_to_none=True)
