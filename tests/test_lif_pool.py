"""The LIF fused with a 2×2 max pool of its spikes (`pysnn.ops.lif_max_pool2d`)
against the reference (`lif` then `F.max_pool2d`), in both input layouts: a
sequence [T, ..., H, W] and one step repeated `steps` times."""

import itertools

import pytest
import torch
from torch.nn import functional as F

import pysnn
from pysnn import reference
from pysnn._validation import GRAD_MODES, SURROGATES
from pysnn.reference.lif import max_pool_last_2x2

DECAY, THRESHOLD = 0.75, 0.6


def _case(shape, steps, dtype, device, repeated, seed=0):
    """x ([T, *shape] or one step [*shape]), u0, and the output gradients."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*size):
        return torch.randn(size, generator=gen, dtype=torch.float64)

    x = 0.3 + 0.5 * randn(*shape) if repeated else 0.3 + 0.5 * randn(steps, *shape)
    u0 = torch.rand(shape, generator=gen, dtype=torch.float64)
    grad_pooled = randn(steps, *shape[:-2], shape[-2] // 2, shape[-1] // 2)
    grad_state = randn(*shape)
    return [t.to(dtype=dtype, device=device) for t in (x, u0, grad_pooled, grad_state)]


def _run(impl, x, u0, grad_pooled, grad_state, repeated, **options):
    """Outputs and the gradients of x and u0 under the given output gradients."""
    x = x.detach().clone().requires_grad_()
    u0 = u0.detach().clone().requires_grad_()
    steps = grad_pooled.shape[0] if repeated else None
    pooled, state = impl(x, DECAY, THRESHOLD, u0=u0, return_state=True, steps=steps, **options)
    loss = (pooled * grad_pooled).sum() + (state * grad_state).sum()
    grads = torch.autograd.grad(loss, (x, u0), allow_unused=True, materialize_grads=True)
    return (pooled.detach(), state.detach(), *grads)


def _unfused(x, decay, threshold, steps=None, return_state=False, **options):
    """The fused LIF, then F.max_pool2d: the same per-element math, two ops."""
    spikes, state = pysnn.ops.lif(x, decay, threshold, steps=steps, return_state=True, **options)
    pooled = max_pool_last_2x2(spikes)
    return (pooled, state) if return_state else pooled


@pytest.mark.parametrize("repeated", [False, True], ids=["sequence", "repeated"])
@pytest.mark.parametrize("grad_mode,surrogate", list(itertools.product(GRAD_MODES, SURROGATES)))
def test_equals_the_reference_in_float64(device, grad_mode, surrogate, repeated):
    tensors = _case((2, 3, 6, 8), 7, torch.float64, device, repeated)
    options = dict(surrogate=surrogate, alpha=2.5, grad_mode=grad_mode)
    fused = _run(pysnn.ops.lif_max_pool2d, *tensors, repeated, **options)
    want = _run(reference.lif_max_pool2d, *tensors, repeated, **options)
    # windows with no spike, one, and several (ties go to the first)
    assert 0 < fused[0].mean() < 1 and fused[2].abs().sum() > 0
    assert torch.equal(fused[0], want[0])
    for got, expected in zip(fused[1:], want[1:]):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("repeated", [False, True], ids=["sequence", "repeated"])
# (3, 2, 4100): a pooled row wider than a neuron block; (40 steps, 37 planes):
# blocks cut short by the backward's stash, split over threads
@pytest.mark.parametrize("shape,steps", [((5, 4, 6), 10), ((3, 2, 4100), 3), ((37, 8, 16), 40)])
def test_low_precision_and_block_edges(device, dtype, repeated, shape, steps):
    tensors = _case(shape, steps, dtype, device, repeated, seed=1)
    fused = _run(pysnn.ops.lif_max_pool2d, *tensors, repeated)
    unfused = _run(_unfused, *tensors, repeated)
    assert torch.equal(fused[0], unfused[0]) and torch.equal(fused[1], unfused[1])
    assert torch.equal(fused[3], unfused[3])  # grad_u0: the same sweep
    if repeated:  # the same per-step terms, summed in another order
        tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
        torch.testing.assert_close(fused[2].double(), unfused[2].double(), rtol=tol, atol=tol * steps)
    else:
        assert torch.equal(fused[2], unfused[2])


def test_saves_only_its_inputs(device):
    """Autograd keeps x (one step, if repeated) and u0: no spikes of any size."""
    x = torch.rand(2, 4, 8, 8, device=device, requires_grad=True)
    u0 = torch.rand(2, 4, 8, 8, device=device)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        pooled = pysnn.ops.lif_max_pool2d(x, DECAY, THRESHOLD, u0=u0, steps=16)
    assert pooled.shape == (16, 2, 4, 4, 4)
    assert sum(t.numel() for t in saved) == x.numel() + u0.numel()
    pooled.sum().backward()
    assert x.grad.shape == x.shape


def test_expanded_input_runs_its_one_step(device):
    x = torch.rand(2, 3, 4, 6, device=device, dtype=torch.float64, requires_grad=True)
    pooled = pysnn.ops.lif_max_pool2d(x.expand(5, *x.shape), DECAY, THRESHOLD)
    want = reference.lif_max_pool2d(x.expand(5, *x.shape), DECAY, THRESHOLD)
    assert torch.equal(pooled, want)
    (grad,) = torch.autograd.grad(pooled.sum(), x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)


def test_gradcheck(device):
    alpha = 50.0
    gen = torch.Generator().manual_seed(3)
    # membranes out of the rectangular surrogate's support and no window
    # with two spikes at once, so the surrogate gradient is the true one
    while True:
        x = torch.randn(4, 1, 2, 4, dtype=torch.float64, generator=gen)
        u0 = torch.randn(1, 2, 4, dtype=torch.float64, generator=gen)
        ok = True
        v = u0
        for t in range(4):
            u = DECAY * v + x[t]
            ok &= bool(((u - THRESHOLD).abs() > 2 / alpha).all())
            s = (u >= THRESHOLD).double()
            ok &= bool((F.avg_pool2d(s, 2) <= 0.25).all())
            v = u - THRESHOLD * s
        if ok:
            break
    x, u0 = x.to(device).requires_grad_(), u0.to(device).requires_grad_()

    def run(x, u0):
        return pysnn.ops.lif_max_pool2d(
            x, DECAY, THRESHOLD, surrogate="rectangular", alpha=alpha, u0=u0, return_state=True
        )

    assert torch.autograd.gradcheck(run, (x, u0))


def test_opcheck(device):
    x = torch.rand(3, 2, 4, 6, device=device)
    u0 = torch.rand(2, 4, 6, device=device)
    for grad_mode, x_, u0_, steps in [("bptt", x, None, 3), ("detach_reset", x[:1], u0, 5), ("time_local", x, u0, 3)]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_pool_forward.default,
            (x_.clone().requires_grad_(), steps, DECAY, THRESHOLD, "atan", 4.0, grad_mode, u0_),
        )
    x64, u64 = x.double(), u0.double()
    for x_, grad_state, u0_ in [(x64, None, None), (x64[:1], torch.randn_like(u64), u64)]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_pool_backward.default,
            (torch.randn(3, 2, 2, 3, device=device, dtype=torch.float64), grad_state, x_, u0_)
            + (DECAY, THRESHOLD, "sigmoid", 4.0, "bptt"),
        )


def test_torch_compile_fullgraph(device):
    def step(image, weight):
        x = F.conv2d(image, weight, padding=1)
        return pysnn.ops.lif_max_pool2d(x, DECAY, THRESHOLD, steps=4).mean(0).sum()

    image = torch.randn(2, 1, 6, 6, device=device)
    weight = torch.randn(3, 1, 3, 3, device=device, requires_grad=True)
    eager = step(image, weight)
    (eager_grad,) = torch.autograd.grad(eager, weight)
    compiled = torch.compile(step, fullgraph=True)(image, weight)
    (grad,) = torch.autograd.grad(compiled, weight)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", [pysnn.ops.lif_max_pool2d, reference.lif_max_pool2d])
@pytest.mark.parametrize(
    "x,steps,u0,error,match",
    [
        (torch.ones(3, 4, 5), None, None, ValueError, "H and W must be even"),
        (torch.ones(3, 4), None, None, ValueError, "at least 3 dims"),
        (torch.ones(3, 4, 4, dtype=torch.int64), None, None, TypeError, "floating-point"),
        (torch.ones(2, 4, 4), 0, None, ValueError, "steps must be"),
        (torch.ones(3, 2, 4), None, torch.ones(2, 2), ValueError, "u0 must have shape"),
        (torch.ones(3, 2, 4), None, torch.ones(2, 4, dtype=torch.float64), TypeError, "u0 must have the dtype"),
    ],
)
def test_bad_input_names_the_argument(impl, x, steps, u0, error, match):
    with pytest.raises(error, match=match):
        impl(x, DECAY, THRESHOLD, steps=steps, u0=u0)


def test_bad_backward_arguments():
    x = torch.rand(3, 2, 4, 4)
    with pytest.raises(ValueError, match="grad_pooled must have shape"):
        torch.ops.pysnn.lif_pool_backward(torch.rand(3, 2, 4, 4), None, x, None, DECAY, THRESHOLD, "atan", 4.0, "bptt")
    with pytest.raises(ValueError, match="1 step \\(repeated\\) or steps = 5"):
        torch.ops.pysnn.lif_pool_backward(torch.rand(5, 2, 2, 2), None, x, None, DECAY, THRESHOLD, "atan", 4.0, "bptt")
    with pytest.raises(ValueError, match="grad_state must have shape"):
        torch.ops.pysnn.lif_pool_backward(
            torch.rand(3, 2, 2, 2), torch.rand(4), x, None, DECAY, THRESHOLD, "atan", 4.0, "bptt"
        )


def test_empty_input_returns_empty(device):
    x = torch.rand(3, 0, 4, 4, device=device, requires_grad=True)
    pooled = pysnn.ops.lif_max_pool2d(x, DECAY, THRESHOLD)
    assert pooled.shape == (3, 0, 2, 2)
    pooled.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("repeated", [False, True], ids=["sequence", "repeated"])
def test_a_gradient_repeated_over_the_steps_is_read_in_place(device, repeated):
    """The gradient of a loss on the rates is one step expanded over T
    (stride 0): the backward reads it as it is and equals its copy's result."""
    x, u0, grad_pooled, grad_state = _case((2, 3, 4, 6), 6, torch.float64, device, repeated, seed=4)
    one_step = grad_pooled[0]
    x = x if not repeated else x.unsqueeze(0)
    args = (DECAY, THRESHOLD, "sigmoid", 4.0, "bptt")
    strided = torch.ops.pysnn.lif_pool_backward(one_step.expand(6, *one_step.shape), grad_state, x, u0, *args)
    copied = torch.ops.pysnn.lif_pool_backward(one_step.expand(6, *one_step.shape).clone(), grad_state, x, u0, *args)
    for got, want in zip(strided, copied):
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("repeated", [False, True], ids=["sequence", "repeated"])
def test_one_step_from_a_constant_state_is_charged_first(device, dtype, repeated):
    """As pysnn.ops.lif: one step from a u0 that needs no gradient runs as
    x + decay·u0 from rest, equal bit for bit to the unfolded op, saving one
    tensor of x's size and computing no dL/du0 (which is empty without u0)."""
    x, u0, grad_pooled, grad_state = _case((2, 3, 8, 6), 1, dtype, device, repeated)
    for grad_mode in GRAD_MODES:
        results = []
        for u0_grad in (False, True):
            xi, u0i = x.clone().requires_grad_(), u0.clone().requires_grad_(u0_grad)
            saved = []
            with torch.autograd.graph.saved_tensors_hooks(_recording(saved), lambda t: t):
                pooled, state = pysnn.ops.lif_max_pool2d(
                    xi, DECAY, THRESHOLD, grad_mode=grad_mode, u0=u0i, return_state=True, steps=1 if repeated else None
                )
            (grad_x,) = torch.autograd.grad((pooled * grad_pooled).sum() + (state * grad_state).sum(), xi)
            results.append((pooled.detach(), state.detach(), grad_x))
            if not u0_grad:
                assert sum(t.numel() for t in saved) == x.numel()
        assert all(torch.equal(a, b) for a, b in zip(*results)), grad_mode
    options = (DECAY, THRESHOLD, "sigmoid", 4.0, "bptt")
    one_step = x if not repeated else x.unsqueeze(0)
    _, grad_u0 = torch.ops.pysnn.lif_pool_backward(grad_pooled, None, one_step, None, *options)
    assert grad_u0.shape == (0,)


def _recording(saved):
    """A saved-tensor pack hook that appends each tensor to `saved`."""

    def pack(t):
        saved.append(t)
        return t

    return pack


def _run_over_input(impl, x, u0, grad_pooled, grad_state, repeated, **options):
    """_run with x handed to the op as a fresh, non-leaf buffer it may overwrite."""
    leaf = x.detach().clone().requires_grad_()
    u0 = u0.detach().clone().requires_grad_()
    fresh = leaf.clone()
    steps = grad_pooled.shape[0] if repeated else None
    pooled, state = impl(
        fresh, DECAY, THRESHOLD, u0=u0, return_state=True, steps=steps, overwrite_input=True, **options
    )
    loss = (pooled * grad_pooled).sum() + (state * grad_state).sum()
    grads = torch.autograd.grad(loss, (leaf, u0))
    return (pooled.detach(), state.detach(), *grads), fresh


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("repeated", [False, True], ids=["sequence", "repeated"])
@pytest.mark.parametrize("grad_mode", GRAD_MODES)
def test_backward_over_the_input_equals_the_allocating_one(device, dtype, repeated, grad_mode):
    tensors = _case((3, 4, 6, 8), 5, dtype, device, repeated, seed=4)
    options = dict(surrogate="atan", grad_mode=grad_mode)
    over, fresh = _run_over_input(pysnn.ops.lif_max_pool2d, *tensors, repeated, **options)
    want = _run(pysnn.ops.lif_max_pool2d, *tensors, repeated, **options)
    assert over[2].abs().sum() > 0
    for got, expected in zip(over, want):
        assert torch.equal(got, expected)
    assert torch.equal(fresh.detach(), over[2])  # dL/dx was written over x


def test_backward_over_the_input_allocates_no_gradient_buffer(device):
    x = torch.rand(2, 4, 8, 8, device=device, requires_grad=True)
    fresh = x * 2.0
    pooled = pysnn.ops.lif_max_pool2d(fresh, DECAY, THRESHOLD, overwrite_input=True, steps=3)
    grads = []
    fresh.register_hook(grads.append)
    pooled.sum().backward()
    assert grads[0].data_ptr() == fresh.data_ptr()
    torch.testing.assert_close(x.grad, 2.0 * grads[0])


def test_backward_over_the_input_runs_once(device):
    fresh = torch.rand(2, 1, 4, 4, device=device, requires_grad=True).clone()
    pooled = pysnn.ops.lif_max_pool2d(fresh, DECAY, THRESHOLD, overwrite_input=True)
    pooled.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="cannot be run backward again"):
        pooled.sum().backward()


@pytest.mark.parametrize("kind", ["leaf", "view_of_leaf", "expanded_leaf", "non_contiguous", "no_grad"])
def test_overwrite_input_is_not_taken_where_it_cannot_be(device, kind):
    """A leaf or a view of one (its .grad would alias it), a non-contiguous x
    and a forward without grad run the allocating op; x keeps its values."""
    base = torch.rand(2, 2, 4, 8, device=device, requires_grad=True)
    x = {
        "leaf": base,
        "view_of_leaf": base.view(base.shape),
        "expanded_leaf": base[:1].expand(3, 2, 4, 8),  # (its one step is a view of the leaf)
        "non_contiguous": base.clone().transpose(-1, -2),
        "no_grad": base.detach().clone(),
    }[kind]
    before = x.detach().clone()
    pooled = pysnn.ops.lif_max_pool2d(x, DECAY, THRESHOLD, overwrite_input=True)
    if pooled.requires_grad:
        pooled.sum().backward()
        assert base.grad is not None
    assert torch.equal(x.detach(), before)


def test_opcheck_backward_over_input(device):
    x = torch.rand(3, 2, 4, 6, device=device)
    u0 = torch.rand(2, 4, 6, device=device)
    grad = torch.randn(3, 2, 2, 3, device=device)
    for x_, u0_, grad_state in [(x, None, None), (x, u0, torch.randn_like(u0)), (x[:1], u0, None)]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_pool_backward_over_input.default,
            (grad, grad_state, x_.clone(), u0_, DECAY, THRESHOLD, "sigmoid", 4.0, "bptt"),
        )
    with pytest.raises(ValueError, match="contiguous"):
        torch.ops.pysnn.lif_pool_backward_over_input(
            grad,
            None,
            x.transpose(-1, -2).contiguous().transpose(-1, -2),
            None,
            DECAY,
            THRESHOLD,
            "sigmoid",
            4.0,
            "bptt",
        )
