"""The LIF ops for an input repeated at every step (`pysnn.ops.lif(x, ...,
steps=T)`, direct coding) against the expanded input and the reference."""

import itertools

import pytest
import torch

import pysnn
from pysnn import reference
from pysnn._validation import GRAD_MODES, SURROGATES

DECAY, THRESHOLD = 0.75, 0.6


def _grads(impl, x, u0, grad_spikes, grad_state, expand, **options):
    x = x.detach().clone().requires_grad_()
    u0 = u0.detach().clone().requires_grad_()
    steps = grad_spikes.shape[0]
    if expand:
        spikes, state = impl(x.expand(steps, *x.shape), DECAY, THRESHOLD, u0=u0, return_state=True, **options)
    else:
        spikes, state = impl(x, DECAY, THRESHOLD, u0=u0, return_state=True, steps=steps, **options)
    loss = (spikes * grad_spikes).sum() + (state * grad_state).sum()
    grads = torch.autograd.grad(loss, (x, u0), allow_unused=True, materialize_grads=True)
    return (spikes.detach(), state.detach(), *grads)


def _case(shape, steps, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (0.3 + 0.5 * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype=dtype, device=device)
    u0 = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    grad_spikes = torch.randn((steps, *shape), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    grad_state = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    return x, u0, grad_spikes, grad_state


@pytest.mark.parametrize("grad_mode,surrogate", list(itertools.product(GRAD_MODES, SURROGATES)))
def test_equals_the_expanded_input_in_float64(device, grad_mode, surrogate):
    x, u0, grad_spikes, grad_state = _case((16, 9), 10, torch.float64, device)
    options = dict(surrogate=surrogate, alpha=2.5, grad_mode=grad_mode)
    repeated = _grads(pysnn.ops.lif, x, u0, grad_spikes, grad_state, expand=False, **options)
    expanded = _grads(pysnn.ops.lif, x, u0, grad_spikes, grad_state, expand=True, **options)
    from_reference = _grads(reference.lif, x, u0, grad_spikes, grad_state, expand=False, **options)
    assert repeated[0].sum() > 0 and repeated[2].abs().sum() > 0
    assert torch.equal(repeated[0], expanded[0]) and torch.equal(repeated[1], expanded[1])
    for got, want, ref in zip(repeated[2:], expanded[2:], from_reference[2:]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
# (3, 20517): several 8192-neuron blocks, a short last one, and chunks split over threads
@pytest.mark.parametrize("shape,steps", [((4, 33), 10), ((3, 20517), 4), ((2, 3, 5, 5), 1)])
def test_low_precision_and_block_edges(device, dtype, shape, steps):
    x, u0, grad_spikes, grad_state = _case(shape, steps, dtype, device, seed=1)
    repeated = _grads(pysnn.ops.lif, x, u0, grad_spikes, grad_state, expand=False)
    expanded = _grads(pysnn.ops.lif, x, u0, grad_spikes, grad_state, expand=True)
    assert torch.equal(repeated[0], expanded[0]) and torch.equal(repeated[1], expanded[1])
    assert torch.equal(repeated[3], expanded[3])  # grad_u0: the same sweep
    # grad_x: the same per-step terms, summed in a different order
    tol = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(repeated[2].double(), expanded[2].double(), rtol=tol, atol=tol * steps)


def test_gradient_buffer_is_one_step(device):
    """The backward allocates its gradient as x ([...]), never [T, ...]: the
    op's output, and what reaches x's AccumulateGrad, have x's shape; dL/du0
    is x's shape with a u0 and empty without one."""
    x = torch.rand(8, 100, device=device, requires_grad=True)
    grad_spikes = torch.randn(32, 8, 100, device=device)
    grad_x, grad_u0 = torch.ops.pysnn.lif_repeated_backward(
        grad_spikes, None, x.detach(), None, DECAY, THRESHOLD, "sigmoid", 4.0, "bptt"
    )
    assert grad_x.shape == x.shape and grad_u0.shape == (0,)
    u0 = torch.rand(8, 100, device=device)
    with_u0 = torch.ops.pysnn.lif_repeated_backward(
        grad_spikes, None, x.detach(), u0, DECAY, THRESHOLD, "sigmoid", 4.0, "bptt"
    )
    assert with_u0[0].shape == x.shape and with_u0[1].shape == x.shape
    spikes = pysnn.ops.lif(x, DECAY, THRESHOLD, steps=32)
    assert spikes.shape == (32, 8, 100)
    assert spikes.grad_fn.next_functions[0][0].name().endswith("AccumulateGrad")


def test_gradcheck(device):
    alpha = 50.0
    gen = torch.Generator().manual_seed(3)
    # inputs whose membranes stay out of the rectangular surrogate's support,
    # so the surrogate gradient is the true one (see test_lif.py)
    while True:
        x = torch.randn(3, 4, dtype=torch.float64, generator=gen)
        u0 = torch.randn(3, 4, dtype=torch.float64, generator=gen)
        v, ok = u0, True
        for _ in range(5):
            u = DECAY * v + x
            ok &= bool(((u - THRESHOLD).abs() > 2 / alpha).all())
            v = u - THRESHOLD * (u >= THRESHOLD).double()
        if ok:
            break
    x, u0 = x.to(device).requires_grad_(), u0.to(device).requires_grad_()

    def run(x, u0):
        return pysnn.ops.lif(
            x, DECAY, THRESHOLD, surrogate="rectangular", alpha=alpha, u0=u0, steps=5, return_state=True
        )

    assert torch.autograd.gradcheck(run, (x, u0))


def test_opcheck(device):
    x = torch.rand(4, 5, device=device)
    for grad_mode, u0 in [("bptt", None), ("detach_reset", torch.rand(4, 5, device=device)), ("time_local", None)]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_repeated_forward.default,
            (x.clone().requires_grad_(), 6, DECAY, THRESHOLD, "atan", 4.0, grad_mode, u0),
        )
    x64 = x.double()
    for grad_state, u0 in [(None, None), (torch.randn_like(x64), torch.randn_like(x64))]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_repeated_backward.default,
            (torch.randn(6, 4, 5, device=device, dtype=torch.float64), grad_state, x64, u0)
            + (DECAY, THRESHOLD, "sigmoid", 4.0, "bptt"),
        )


def test_torch_compile_fullgraph(device):
    def step(image, weight):
        return pysnn.ops.lif(torch.tanh(image @ weight), DECAY, THRESHOLD, steps=6).mean(0).sum()

    image = torch.randn(8, 16, device=device)
    weight = torch.randn(16, 12, device=device, requires_grad=True)
    eager = step(image, weight)
    (eager_grad,) = torch.autograd.grad(eager, weight)
    compiled = torch.compile(step, fullgraph=True)(image, weight)
    (grad,) = torch.autograd.grad(compiled, weight)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_with_membrane_falls_back_to_the_expanded_input(device):
    x = torch.rand(3, 7, device=device, dtype=torch.float64)
    spikes, membrane = pysnn.ops.lif(x, DECAY, THRESHOLD, steps=4, return_membrane=True)
    want_spikes, want_membrane = reference.lif(x.expand(4, 3, 7), DECAY, THRESHOLD, return_membrane=True)
    assert torch.equal(spikes, want_spikes)
    torch.testing.assert_close(membrane, want_membrane, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", [pysnn.ops.lif, reference.lif])
@pytest.mark.parametrize(
    "steps,x,u0,error,match",
    [
        (0, torch.ones(3), None, ValueError, "steps must be"),
        (2.0, torch.ones(3), None, ValueError, "steps must be"),
        (2, torch.ones((), dtype=torch.float32), None, ValueError, "at least 1 dim"),
        (2, torch.ones(3, dtype=torch.int64), None, TypeError, "floating-point"),
        (2, torch.ones(3), torch.ones(4), ValueError, "u0 must have shape"),
        (2, torch.ones(3), torch.ones(3, dtype=torch.float64), TypeError, "u0 must have the dtype"),
    ],
)
def test_bad_input_names_the_argument(impl, steps, x, u0, error, match):
    with pytest.raises(error, match=match):
        impl(x, DECAY, THRESHOLD, steps=steps, u0=u0)


def test_bad_backward_arguments():
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="grad_spikes must have shape"):
        torch.ops.pysnn.lif_repeated_backward(torch.rand(5, 3, 5), None, x, None, DECAY, THRESHOLD, "atan", 4.0, "bptt")
    with pytest.raises(ValueError, match="grad_state must have shape"):
        torch.ops.pysnn.lif_repeated_backward(
            torch.rand(5, 3, 4), torch.rand(4), x, None, DECAY, THRESHOLD, "atan", 4.0, "bptt"
        )
    with pytest.raises(ValueError, match="steps must be >= 1"):
        torch.ops.pysnn.lif_repeated_forward(x, 0, DECAY, THRESHOLD, "atan", 4.0, "bptt", None)


def test_empty_input_returns_empty(device):
    x = torch.rand(0, 5, device=device, requires_grad=True)
    spikes = pysnn.ops.lif(x, DECAY, THRESHOLD, steps=3)
    assert spikes.shape == (3, 0, 5)
    spikes.sum().backward()
    assert x.grad.shape == x.shape
