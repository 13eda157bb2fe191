"""The fused LIF op against the pure-PyTorch reference (docs/neuron.md)."""

import itertools
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import pysnn
from pysnn import reference
from pysnn._validation import GRAD_MODES, SURROGATES

THRESHOLD = 0.6
DECAY = 0.75


def crowded_input(shape, dtype, device, threshold=THRESHOLD):
    """Inputs that put many membranes within rounding distance of the threshold,
    plus some exactly on it (which must fire: H(0) = 1)."""
    x = torch.rand(shape, dtype=torch.float64) * threshold * 0.9
    x = x + 1e-7 * torch.randn(shape, dtype=torch.float64)
    x.view(-1)[::7] = threshold * (1 - DECAY)  # settles at the threshold
    x[0].view(-1)[::5] = threshold  # fires at t = 0 exactly on the threshold
    return x.to(dtype=dtype, device=device)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
# (3, 20517): several 8192-neuron blocks, a short last one, and chunks split over threads
@pytest.mark.parametrize("shape", [(10, 64, 33), (4, 1000), (1, 7), (32, 3, 4, 5), (3, 20517)])
def test_forward_matches_reference(device, dtype, shape):
    x = crowded_input(shape, dtype, device)
    u0 = torch.rand(shape[1:], dtype=dtype, device=device) * THRESHOLD
    for init in (None, u0):
        spikes, state = pysnn.ops.lif(x, DECAY, THRESHOLD, u0=init, return_state=True)
        ref_spikes, ref_state = reference.lif(x, DECAY, THRESHOLD, u0=init, return_state=True)
        assert spikes.dtype == dtype and spikes.shape == x.shape
        assert torch.equal(spikes, ref_spikes)
        torch.testing.assert_close(state, ref_state, rtol=0, atol=1e-6)
    assert spikes.sum() > 0 and (spikes == 0).sum() > 0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_membrane_and_state_equal_the_reference_bit_for_bit(device, dtype):
    # u = decay * v + x with the product rounded before the sum, as eager
    # PyTorch does: a compiler that fuses them into one FMA (GCC does for
    # AVX-512 unless told -ffp-contract=off) changes about half of these
    # membranes by an ulp, and then, rarely, a spike.
    torch.manual_seed(0)
    x = torch.randn(12, 5000, dtype=dtype, device=device)
    u0 = torch.randn(5000, dtype=dtype, device=device)
    spikes, membrane, state = pysnn.ops.lif(x, DECAY, THRESHOLD, u0=u0, return_membrane=True, return_state=True)
    ref_spikes, ref_membrane, ref_state = reference.lif(
        x, DECAY, THRESHOLD, u0=u0, return_membrane=True, return_state=True
    )
    assert torch.equal(spikes, ref_spikes)
    assert torch.equal(membrane, ref_membrane)
    assert torch.equal(state, ref_state)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_uses_float32_state(device, dtype):
    # The kernel keeps the membrane in float32, so it equals the float32
    # reference on the same (exactly representable) inputs.
    x = crowded_input((10, 256), torch.float32, device).to(dtype)
    spikes, state = pysnn.ops.lif(x, DECAY, THRESHOLD, return_state=True)
    ref_spikes, ref_state = reference.lif(x.float(), DECAY, THRESHOLD, return_state=True)
    assert spikes.dtype == dtype
    assert torch.equal(spikes.float(), ref_spikes)
    torch.testing.assert_close(state.float(), ref_state.to(dtype).float())


def test_state_continues_the_sequence(device):
    x = crowded_input((12, 50), torch.float64, device)
    whole, whole_state = pysnn.ops.lif(x, DECAY, THRESHOLD, return_state=True)
    first, state = pysnn.ops.lif(x[:5], DECAY, THRESHOLD, return_state=True)
    second, final = pysnn.ops.lif(x[5:], DECAY, THRESHOLD, u0=state, return_state=True)
    assert torch.equal(torch.cat([first, second]), whole)
    torch.testing.assert_close(final, whole_state, rtol=0, atol=1e-12)


def test_non_contiguous_input_matches_contiguous(device):
    x = crowded_input((20, 8, 10), torch.float32, device)
    strided = x.transpose(1, 2)
    assert not strided.is_contiguous()
    torch.testing.assert_close(
        pysnn.ops.lif(strided, DECAY, THRESHOLD), pysnn.ops.lif(strided.contiguous(), DECAY, THRESHOLD), rtol=0, atol=0
    )


def test_empty_batch_returns_empty(device):
    x = torch.randn(6, 0, 4, device=device, requires_grad=True)
    spikes, state = pysnn.ops.lif(x, DECAY, THRESHOLD, return_state=True)
    assert spikes.shape == (6, 0, 4) and state.shape == (0, 4)
    spikes.sum().backward()
    assert x.grad.shape == x.shape


def _backward_pair(impl, x, u0, grad_spikes, grad_state, **options):
    x = x.detach().clone().requires_grad_()
    u0 = u0.detach().clone().requires_grad_()
    spikes, state = impl(x, DECAY, THRESHOLD, u0=u0, return_state=True, **options)
    loss = (spikes * grad_spikes).sum() + (state * grad_state).sum()
    return torch.autograd.grad(loss, (x, u0), allow_unused=True, materialize_grads=True)


@pytest.mark.parametrize("grad_mode,surrogate", list(itertools.product(GRAD_MODES, SURROGATES)))
def test_backward_matches_reference_autograd(device, grad_mode, surrogate):
    shape = (10, 16, 9)
    x = crowded_input(shape, torch.float64, device) + 0.2 * torch.randn(shape, dtype=torch.float64, device=device)
    u0 = torch.rand(shape[1:], dtype=torch.float64, device=device)
    grad_spikes = torch.randn(shape, dtype=torch.float64, device=device)
    grad_state = torch.randn(shape[1:], dtype=torch.float64, device=device)
    options = dict(surrogate=surrogate, alpha=2.5, grad_mode=grad_mode)
    fused = _backward_pair(pysnn.ops.lif, x, u0, grad_spikes, grad_state, **options)
    expected = _backward_pair(reference.lif, x, u0, grad_spikes, grad_state, **options)
    assert fused[0].abs().sum() > 0
    for got, want in zip(fused, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("return_membrane", [False, True])
def test_backward_across_neuron_blocks(device, return_membrane):
    """Both backward paths (the membrane recomputed block by block, or saved) on
    a layer of several 8192-neuron kernel blocks, fed a direct-coding stride-0 input."""
    n = 20517
    row = (crowded_input((1, n), torch.float64, device) * 1.4).requires_grad_()
    grad_spikes = torch.randn(5, n, dtype=torch.float64, device=device)
    grad_state = torch.randn(n, dtype=torch.float64, device=device)
    u0 = torch.rand(n, dtype=torch.float64, device=device)
    options = dict(u0=u0, return_state=True, surrogate="sigmoid", alpha=4.0, grad_mode="bptt")
    results = []
    for impl, extra in ((pysnn.ops.lif, dict(return_membrane=return_membrane)), (reference.lif, {})):
        out = impl(row.expand(5, n), DECAY, THRESHOLD, **options, **extra)
        loss = (out[0] * grad_spikes).sum() + (out[-1] * grad_state).sum()
        results.append((out[0].detach(), torch.autograd.grad(loss, row)[0]))
    (spikes, grad), (spikes_ref, grad_ref) = results
    assert torch.equal(spikes, spikes_ref) and 0.05 < spikes.mean() < 0.95
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backward_low_precision_close_to_float64(device, dtype):
    shape = (10, 512)
    x = crowded_input(shape, torch.float64, device)
    grad_spikes = torch.randn(shape, dtype=torch.float64, device=device)
    x_low = x.to(dtype).requires_grad_()
    (pysnn.ops.lif(x_low, DECAY, THRESHOLD) * grad_spikes.to(dtype)).sum().backward()
    x_ref = x_low.detach().double().requires_grad_()
    (reference.lif(x_ref, DECAY, THRESHOLD) * grad_spikes.to(dtype).double()).sum().backward()
    tol = 1e-5 if dtype == torch.float32 else 0.1
    torch.testing.assert_close(x_low.grad.double(), x_ref.grad, rtol=tol, atol=tol)


def _away_from_threshold(shape, device, alpha, seed=0):
    """float64 inputs whose membranes all stay outside the rectangular
    surrogate's support and far from flipping under gradcheck's perturbation,
    so the surrogate gradient equals the true one."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(shape, dtype=torch.float64, generator=gen)
        u0 = torch.randn(shape[1:], dtype=torch.float64, generator=gen)
        spikes, state = reference.lif(x, DECAY, THRESHOLD, u0=u0, return_state=True)
        v = u0
        ok = True
        for t in range(shape[0]):
            u = DECAY * v + x[t]
            ok &= bool(((u - THRESHOLD).abs() > 2 / alpha).all())
            v = u - THRESHOLD * spikes[t]
        if ok:
            return x.to(device).requires_grad_(), u0.to(device).requires_grad_()


@pytest.mark.parametrize("grad_mode", ["bptt", "detach_reset"])
def test_gradcheck_temporal_chain(device, grad_mode):
    alpha = 50.0
    x, u0 = _away_from_threshold((5, 3), device, alpha)

    def run(x, u0):
        return pysnn.ops.lif(
            x, DECAY, THRESHOLD, surrogate="rectangular", alpha=alpha, grad_mode=grad_mode, u0=u0, return_state=True
        )

    assert torch.autograd.gradcheck(run, (x, u0))


def _opcheck_samples(device):
    x = crowded_input((6, 4, 5), torch.float32, device)
    u0 = torch.rand(4, 5, device=device)
    for surrogate, grad_mode in [("sigmoid", "bptt"), ("atan", "detach_reset"), ("rectangular", "time_local")]:
        yield (x.clone().requires_grad_(), DECAY, THRESHOLD, surrogate, 4.0, grad_mode, None, True)
        yield (
            x.clone().requires_grad_(),
            DECAY,
            THRESHOLD,
            surrogate,
            4.0,
            grad_mode,
            u0.clone().requires_grad_(),
            True,
        )
    yield (x.double(), 0.5, 1.0, "exponential", 3.0, "bptt", None, False)
    yield (x.to(torch.bfloat16), 0.5, 0.5, "sigmoid", 3.0, "bptt", None, False)


def test_opcheck_lif_forward(device):
    for args in _opcheck_samples(device):
        torch.library.opcheck(torch.ops.pysnn.lif_forward.default, args)


def test_opcheck_lif_backward(device):
    membrane = torch.randn(5, 3, 2, device=device, dtype=torch.float64)
    grad = torch.randn_like(membrane)
    for grad_membrane, grad_state in [(None, None), (torch.randn_like(membrane), torch.randn_like(membrane[0]))]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_backward.default,
            (grad, grad_membrane, grad_state, membrane, 0.8, 0.45, "atan", 2.0, "bptt"),
        )


def test_torch_compile_fullgraph(device):
    def step(x, weight):
        spikes = pysnn.ops.lif(torch.tanh(x @ weight), DECAY, THRESHOLD, surrogate="atan")
        return spikes.mean(0).sum()

    x = torch.randn(6, 8, 16, device=device)
    weight = torch.randn(16, 12, device=device, requires_grad=True)
    eager_loss = step(x, weight)
    (eager_grad,) = torch.autograd.grad(eager_loss, weight)
    compiled = torch.compile(step, fullgraph=True)
    loss = compiled(x, weight)
    (grad,) = torch.autograd.grad(loss, weight)
    torch.testing.assert_close(loss, eager_loss)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_module_has_explicit_state(device):
    layer = pysnn.nn.LIF(decay=DECAY, threshold=THRESHOLD)
    x = crowded_input((8, 4, 6), torch.float32, device)
    first, state = layer(x)
    again, _ = layer(x)
    assert torch.equal(first, again)  # nothing carried over from the first call
    cont, _ = layer(x, state)
    assert not torch.equal(cont, first)
    ref_layer = pysnn.nn.LIF(decay=DECAY, threshold=THRESHOLD, backend="reference")
    assert torch.equal(ref_layer(x)[0], first)


# ---- bad input: one clear error naming the argument, from every entry point ----


def _ones(*shape, **kw):
    return torch.ones(*shape, **kw)


BAD_INPUTS = [
    ("int dtype", dict(x=lambda: _ones(4, 3, dtype=torch.int32)), TypeError, "x must be a floating"),
    ("1-d x", dict(x=lambda: _ones(5)), ValueError, "at least 2 dims"),
    ("T = 0", dict(x=lambda: _ones(0, 3)), ValueError, "T = 0"),
    ("negative decay", dict(decay=-0.1), ValueError, "decay"),
    ("decay above 1", dict(decay=1.5), ValueError, "decay"),
    ("nan decay", dict(decay=math.nan), ValueError, "decay"),
    ("zero threshold", dict(threshold=0.0), ValueError, "threshold"),
    ("negative threshold", dict(threshold=-1.0), ValueError, "threshold"),
    ("inf threshold", dict(threshold=math.inf), ValueError, "threshold"),
    ("nan threshold", dict(threshold=math.nan), ValueError, "threshold"),
    ("zero alpha", dict(alpha=0.0), ValueError, "alpha"),
    ("inf alpha", dict(alpha=math.inf), ValueError, "alpha"),
    ("unknown surrogate", dict(surrogate="relu"), ValueError, "surrogate"),
    ("unknown grad_mode", dict(grad_mode="truncated"), ValueError, "grad_mode"),
    ("u0 wrong shape", dict(u0=lambda: _ones(4)), ValueError, "u0 must have shape"),
    ("u0 wrong dtype", dict(u0=lambda: _ones(3, dtype=torch.float64)), TypeError, "u0 must have the dtype"),
    ("u0 wrong device", dict(u0=lambda: _ones(3, device="meta")), RuntimeError, "u0 must be on the device"),
]


def _call_with(impl, overrides):
    args = dict(
        x=lambda: _ones(4, 3), decay=0.5, threshold=1.0, alpha=4.0, surrogate="sigmoid", grad_mode="bptt", u0=None
    )
    args.update(overrides)
    make = lambda v: v() if callable(v) else v  # noqa: E731
    x, u0 = make(args.pop("x")), make(args.pop("u0"))
    return impl(x, args.pop("decay"), args.pop("threshold"), u0=u0, **args)


def _fake(impl):
    def run(x, *args, u0=None, **kwargs):
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            x = mode.from_tensor(x)
            u0 = None if u0 is None or u0.device.type == "meta" else mode.from_tensor(u0)
            return impl(x, *args, u0=u0, **kwargs)

    return run


@pytest.mark.parametrize("impl", ["fused", "fused-fake", "reference"])
@pytest.mark.parametrize("case,overrides,error,match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_the_argument(impl, case, overrides, error, match):
    if impl == "fused-fake" and case == "u0 wrong device":
        pytest.skip("meta tensors have no fake counterpart")
    fn = {"fused": pysnn.ops.lif, "fused-fake": _fake(pysnn.ops.lif), "reference": reference.lif}[impl]
    with pytest.raises(error, match=match):
        _call_with(fn, overrides)


def test_bad_backward_arguments():
    membrane = torch.randn(5, 3)
    with pytest.raises(ValueError, match="grad_spikes must have shape"):
        torch.ops.pysnn.lif_backward(torch.randn(4, 3), None, None, membrane, 0.5, 1.0, "atan", 2.0, "bptt")
    with pytest.raises(ValueError, match="grad_state must have shape"):
        torch.ops.pysnn.lif_backward(torch.randn(5, 3), None, torch.randn(5), membrane, 0.5, 1.0, "atan", 2.0, "bptt")
    with pytest.raises(TypeError, match="grad_membrane must have the dtype"):
        torch.ops.pysnn.lif_backward(
            torch.randn(5, 3), membrane.double(), None, membrane, 0.5, 1.0, "atan", 2.0, "bptt"
        )


def test_module_rejects_bad_options():
    with pytest.raises(ValueError, match="surrogate"):
        pysnn.nn.LIF(surrogate="step")
    with pytest.raises(ValueError, match="backend"):
        pysnn.nn.LIF(backend="gpu")


# ---- the backward that recomputes the membrane (no saved membrane) ----


def test_opcheck_lif_backward_input(device):
    x = torch.randn(5, 3, 2, device=device, dtype=torch.float64)
    grad = torch.randn_like(x)
    for grad_state, u0 in [(None, None), (torch.randn_like(x[0]), torch.randn_like(x[0]))]:
        torch.library.opcheck(
            torch.ops.pysnn.lif_backward_input.default, (grad, grad_state, x, u0, 0.8, 0.45, "atan", 2.0, "bptt")
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_recomputed_membrane_gives_the_saved_membrane_gradients_bit_for_bit(device, dtype):
    for surrogate, grad_mode in itertools.product(SURROGATES, GRAD_MODES):
        x = crowded_input((7, 3, 300), dtype, device)
        u0, grad, grad_state = (
            torch.randn(3, 300, device=device, dtype=dtype),
            torch.randn(7, 3, 300, device=device, dtype=dtype),
            torch.randn(3, 300, device=device, dtype=dtype),
        )
        options = (DECAY, THRESHOLD, surrogate, 4.0, grad_mode)
        _, membrane, _ = torch.ops.pysnn.lif_forward(x, DECAY, THRESHOLD, surrogate, 4.0, grad_mode, u0, True)
        saved = torch.ops.pysnn.lif_backward(grad, None, grad_state, membrane, *options)
        recomputed = torch.ops.pysnn.lif_backward_input(grad, grad_state, x, u0, *options)
        assert all(torch.equal(a, b) for a, b in zip(saved, recomputed)), (surrogate, grad_mode)


def test_direct_coding_input_is_never_materialised(device):
    # The same input at every step as a stride-0 view (the first layer's
    # direct coding): same spikes and gradient as the materialised input, and
    # autograd keeps only the view (one step's storage), no membrane.
    row = torch.rand(4, 50, device=device, dtype=torch.float64)
    view = row.unsqueeze(0).expand(6, 4, 50).requires_grad_()
    dense = view.detach().contiguous().requires_grad_()
    saved_bytes = []

    def pack(t):
        saved_bytes.append(t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spikes = pysnn.ops.lif(view, DECAY, THRESHOLD)
    assert max(saved_bytes) == row.numel() * 8
    grad = torch.randn_like(spikes)
    spikes.backward(grad)
    expected = pysnn.ops.lif(dense, DECAY, THRESHOLD)
    expected.backward(grad)
    assert torch.equal(spikes, expected)
    torch.testing.assert_close(view.grad, dense.grad, rtol=0, atol=0)


def test_forward_without_saved_membrane_is_still_differentiable():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    spikes, membrane, _ = torch.ops.pysnn.lif_forward(x, 0.5, 1.0, "sigmoid", 4.0, "bptt", None, False)
    assert membrane.numel() == 0
    spikes.sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    reference.lif(x_ref, 0.5, 1.0).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("steps", [None, 1], ids=["sequence", "repeated"])
@pytest.mark.parametrize("return_membrane", [False, True])
def test_one_step_from_a_constant_state_is_charged_first(device, dtype, steps, return_membrane):
    """One step from a u0 that needs no gradient (real-time learning's carried
    membrane) runs as x + decay·u0 from rest: the spikes, membrane, state and
    x's gradient equal those of the unfolded op (u0 requiring a gradient) bit
    for bit, autograd keeps one tensor of x's size instead of x and u0, and
    no gradient of u0 is computed."""
    shape = (3, 300)
    x = crowded_input((1, *shape), dtype, device)[0 if steps else slice(None)]
    u0 = crowded_input((1, *shape), dtype, device)[0] * 0.5
    grads = [torch.randn((1, *shape), dtype=dtype, device=device) for _ in range(2)]
    for grad_mode in GRAD_MODES:
        results = []
        for u0_grad in (False, True):
            xi, u0i = x.clone().requires_grad_(), u0.clone().requires_grad_(u0_grad)
            saved = []
            with torch.autograd.graph.saved_tensors_hooks(_recording(saved), lambda t: t):
                out = pysnn.ops.lif(
                    xi,
                    DECAY,
                    THRESHOLD,
                    grad_mode=grad_mode,
                    u0=u0i,
                    steps=steps,
                    return_membrane=return_membrane,
                    return_state=True,
                )
            loss = sum((o * g).sum() for o, g in zip(out[:-1], grads))
            (grad_x,) = torch.autograd.grad(loss, xi)
            results.append([o.detach() for o in out] + [grad_x])
            if not u0_grad:
                assert sum(t.numel() for t in saved) == x.numel()
        assert all(torch.equal(a, b) for a, b in zip(*results)), grad_mode


def test_no_gradient_of_an_absent_u0(device):
    """Without a u0 the backward ops return an empty dL/du0 (nothing to
    differentiate, nothing allocated); with one, dL/du0 has its shape."""
    x = torch.rand(4, 2, 50, device=device)
    grad = torch.randn_like(x)
    options = (DECAY, THRESHOLD, "sigmoid", 4.0, "bptt")
    _, grad_u0 = torch.ops.pysnn.lif_backward_input(grad, None, x, None, *options)
    assert grad_u0.shape == (0,)
    _, grad_u0 = torch.ops.pysnn.lif_backward_input(grad, None, x, torch.rand_like(x[0]), *options)
    assert grad_u0.shape == x.shape[1:]


def test_in_place_charge_keeps_the_graph_and_allocates_nothing():
    """charge_single_step(in_place=True), as real-time learning calls it on a
    block's fresh input (a view) and its own carried membrane: x + decay·u0 in
    x's buffer, bit for bit the out-of-place charge, with x's gradient path
    unchanged (no as_strided view whose backward would copy the base)."""
    from pysnn.ops.lif import charge_single_step

    base = torch.randn(2 * 30, requires_grad=True)
    x = (base * 3).view(1, 2, 30)  # a view of a non-leaf, as a folded block's output
    u0 = torch.randn(2, 30)
    want = x.detach() + u0 * DECAY
    pointer, grad_fn = x.data_ptr(), type(x.grad_fn)
    charged, rest = charge_single_step(x, u0.clone(), DECAY, 1, in_place=True)
    assert rest is None and charged is x and charged.data_ptr() == pointer
    assert torch.equal(charged.detach(), want) and type(charged.grad_fn) is grad_fn
    (grad,) = torch.autograd.grad(charged.sum(), base)
    assert torch.equal(grad, torch.full_like(base, 3.0))
    for steps, dtype in ((2, torch.float32), (1, torch.bfloat16)):  # more steps, or a kernel-side charge: untouched
        y, u = torch.randn(1, 2, 30).to(dtype), torch.randn(2, 30).to(dtype)
        assert charge_single_step(y, u, DECAY, steps, in_place=True)[1] is u


def _recording(saved):
    """A saved-tensor pack hook that appends each tensor to `saved`."""

    def pack(t):
        saved.append(t)
        return t

    return pack


def test_one_step_from_a_non_contiguous_state():
    """A transposed u0 (any layout the op accepts) is charged like a contiguous one."""
    x = torch.rand(1, 5, 3, dtype=torch.float64, requires_grad=True)
    u0 = torch.rand(3, 5, dtype=torch.float64).t()
    spikes, state = pysnn.ops.lif(x, DECAY, THRESHOLD, u0=u0, return_state=True)
    want, want_state = reference.lif(x.detach(), DECAY, THRESHOLD, u0=u0.contiguous(), return_state=True)
    assert torch.equal(spikes, want) and torch.equal(state, want_state)
