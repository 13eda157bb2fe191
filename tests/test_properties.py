"""Property-based tests of every public op: hypothesis draws shapes, layouts,
dtypes and parameters; each op's forward and gradients are compared with the
pure-PyTorch reference (float64: 1e-10 relative or tighter where the math is
one rounding apart; float32: bitwise for LIF, 1e-4 otherwise), and every
invalid input must be refused with one clear line, inputs untouched.

Profiles (tests/conftest.py): "ci" (fixed seed, 200 examples per test) by
default; PYSNN_HYPOTHESIS_PROFILE=deep runs 5000 per test with a random seed."""

import importlib
import math

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pysnn import ops, reference  # noqa: E402

# the module, not the `hsic` function that pysnn.reference exports under its name
reference_hsic = importlib.import_module("pysnn.reference.hsic")

F64 = torch.float64
SURROGATES = ["sigmoid", "atan", "exponential", "rectangular"]
GRAD_MODES = ["bptt", "detach_reset", "time_local"]
KINDS = ["gaussian", "laplacian", "cosine", "sigmoid", "linear"]
ESTIMATORS = ["approx", "biased", "unbiased"]
# Neuron counts around the CPU kernel's blocks (kGrain 4096, kBlock 8192) and
# the CUDA launch's 256 threads, and the degenerate 0 and 1.
EDGES = [0, 1, 2, 3, 255, 256, 257, 4095, 4096, 4097, 8191, 8192, 8193]


def close(got, want, dtype, rtol=1e-10, atol=1e-12):
    if dtype != F64:
        rtol, atol = 1e-4, 1e-5
    torch.testing.assert_close(got, want.to(got.dtype), rtol=rtol, atol=atol)


def unchanged(before, after):
    """The op wrote nothing into its inputs."""
    for b, a in zip(before, after):
        if isinstance(a, torch.Tensor):
            assert torch.equal(b, a), "an op changed its input"


def snapshot(*tensors):
    return [t.detach().clone() if isinstance(t, torch.Tensor) else t for t in tensors]


def one_line_error(call, op):
    """`call` must raise a ValueError, TypeError or RuntimeError whose single
    line names the op: never a crash, never a wrong answer."""
    with pytest.raises((ValueError, TypeError, RuntimeError)) as error:
        call()
    message = str(error.value)
    assert op in message and "\n" not in message.strip(), message


# ---- lif ----


@st.composite
def lif_inputs(draw):
    """(x as the op receives it, the leaf tensor x is made from, u0 or None,
    `steps`: None, or T for one step's input repeated T times)."""
    T = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([F64, torch.float32, torch.bfloat16, torch.float16]))
    layout = draw(st.sampled_from(["contiguous", "transposed", "stride0-time", "strided", "repeated"]))
    if draw(st.booleans()):
        neurons = (draw(st.sampled_from(EDGES)),)
    else:
        neurons = tuple(draw(st.lists(st.integers(0, 5), min_size=2, max_size=3)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([0.5, 1.0, 3.0]))

    def randn(*shape):
        return (torch.randn(shape, generator=gen, dtype=F64) * scale).to(dtype)

    if layout == "transposed" and len(neurons) >= 2:
        leaf = randn(T, *neurons[::-1]).requires_grad_()
        x = leaf.transpose(1, len(neurons))
    elif layout == "stride0-time":
        leaf = randn(1, *neurons).requires_grad_()
        x = leaf.expand(T, *neurons)
    elif layout == "repeated":
        leaf = randn(*neurons).requires_grad_()
        x = leaf
    elif layout == "strided":
        leaf = randn(T, *neurons[:-1], 2 * neurons[-1]).requires_grad_()
        x = leaf[..., ::2]
    else:
        leaf = randn(T, *neurons).requires_grad_()
        x = leaf
    u0 = randn(*neurons).requires_grad_() if draw(st.booleans()) else None
    return x, leaf, u0, (T if layout == "repeated" else None)


@given(
    inputs=lif_inputs(),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 2.0),
    surrogate=st.sampled_from(SURROGATES),
    alpha=st.floats(0.25, 8.0),
    grad_mode=st.sampled_from(GRAD_MODES),
    return_membrane=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_lif_matches_the_reference(inputs, decay, threshold, surrogate, alpha, grad_mode, return_membrane, seed):
    x, leaf, u0, steps = inputs
    options = dict(surrogate=surrogate, alpha=alpha, grad_mode=grad_mode, u0=u0, steps=steps)
    options.update(return_membrane=return_membrane, return_state=True)
    before = snapshot(x, u0)
    got = ops.lif(x, decay, threshold, **options)
    unchanged(before, (x, u0))
    low = x.dtype in (torch.bfloat16, torch.float16)
    # Half and bfloat16 keep the membrane in float32: the float32 reference on
    # the same values; float32 and float64: the same roundings in the same order.
    leaf64 = leaf.detach().float().requires_grad_() if low else leaf
    x_ref = _same_view(x, leaf, leaf64)
    u0_ref = u0.detach().float().requires_grad_() if (low and u0 is not None) else u0
    want = reference.lif(x_ref, decay, threshold, **{**options, "u0": u0_ref})
    for g, w in zip(got, want):  # spikes, membrane, state
        assert g.dtype == x.dtype and g.shape == w.shape
        assert torch.equal(g, w.to(g.dtype)), "differs from the reference"
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(w.shape, generator=gen, dtype=F64).to(x.dtype) for w in want]
    leaves, ref_leaves = [leaf], [leaf64]
    if u0 is not None:
        leaves, ref_leaves = leaves + [u0], ref_leaves + [u0_ref]
    if x.numel() == 0 or (low and surrogate == "rectangular"):
        return  # (low precision: the box's edge may fall between the membrane and its rounding)
    got_grads = torch.autograd.grad(got, leaves, upstream, allow_unused=True)
    want_grads = torch.autograd.grad(
        want, ref_leaves, [u.to(w.dtype) for u, w in zip(upstream, want)], allow_unused=True
    )
    for g, w, t in zip(got_grads, want_grads, leaves):
        zero = torch.zeros_like(t)  # autograd's None: no path (time_local's u0), a zero gradient
        g, w = zero if g is None else g, zero if w is None else w
        if low:  # the surrogate is taken at the membrane rounded to x's dtype (csrc/ops/lif_math.h)
            # Each step's term (at most alpha·|upstream|) is rounded to the dtype before
            # autograd sums the steps, so terms that cancel keep their roundings; and a
            # gradient below the dtype's normal range keeps few or no bits.
            info, scale = torch.finfo(g.dtype), 0.05 if g.dtype == torch.bfloat16 else 0.01
            terms = alpha * max(u.abs().max().item() for u in upstream) * want[0].shape[0]
            atol = scale * w.abs().max().item() + 4 * info.eps * terms + info.smallest_normal
            torch.testing.assert_close(g.float(), w.float(), rtol=scale, atol=atol)
        else:
            close(g, w, x.dtype, rtol=1e-9, atol=1e-11)


def _same_view(x, leaf, other):
    """`x` as the same view of `other` that it is of `leaf`."""
    if other is leaf:
        return x
    return other.as_strided(x.shape, x.stride(), x.storage_offset() - leaf.storage_offset())


@given(
    d=st.lists(st.floats(-50, 50, allow_nan=False), min_size=0, max_size=40),
    surrogate=st.sampled_from(SURROGATES),
    alpha=st.floats(0.1, 20.0),
)
def test_surrogate_grad_is_its_equation(d, surrogate, alpha):
    # written here from docs/neuron.md, independently of pysnn.reference
    t = torch.tensor(d, dtype=F64)
    before = t.clone()
    got = ops.surrogate_grad(t, surrogate, alpha)
    assert torch.equal(t, before)
    if surrogate == "sigmoid":
        s = torch.sigmoid(alpha * t)
        want = alpha * s * (1 - s)
    elif surrogate == "atan":
        want = (alpha / 2) / (1 + (math.pi / 2 * alpha * t) ** 2)
    elif surrogate == "exponential":
        want = alpha * torch.exp(-alpha * t.abs())
    else:
        want = (t.abs() <= 1 / alpha).to(F64) * alpha / 2
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@given(
    case=st.sampled_from(
        [
            ("decay", 1.5),
            ("decay", -0.1),
            ("decay", math.nan),
            ("threshold", 0.0),
            ("threshold", math.inf),
            ("alpha", 0.0),
            ("alpha", math.nan),
            ("surrogate", "relu"),
            ("grad_mode", "none"),
            ("x", "int"),
            ("x", "scalar"),
            ("x", "no-steps"),
            ("u0", "shape"),
            ("u0", "dtype"),
        ]
    ),
    n=st.integers(1, 9),
)
def test_lif_refuses_bad_input_with_one_line(case, n):
    x, u0 = torch.rand(3, n, dtype=F64), None
    args = dict(decay=0.5, threshold=0.5, surrogate="sigmoid", alpha=4.0, grad_mode="bptt")
    name, value = case
    if name in args:
        args[name] = value
    elif value == "int":
        x = torch.ones(3, n, dtype=torch.int64)
    elif value == "scalar":
        x = torch.tensor(1.0, dtype=F64)
    elif value == "no-steps":
        x = torch.rand(0, n, dtype=F64)
    elif value == "shape":
        u0 = torch.zeros(n + 1, dtype=F64)
    else:
        u0 = torch.zeros(n, dtype=torch.float32)
    before = snapshot(x, u0)
    decay, threshold = args.pop("decay"), args.pop("threshold")
    one_line_error(lambda: ops.lif(x, decay, threshold, u0=u0, **args), "lif")
    unchanged(before, (x, u0))


# ---- lif_max_pool2d ----


@st.composite
def lif_pool_inputs(draw):
    """(x as the op receives it, its leaf, u0 or None, `steps` or None): maps of
    even sides with 0-2 leading dims, as a sequence, a stride-0 expand over
    time, channels-last, or one step repeated."""
    T = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([F64, torch.float32]))
    layout = draw(st.sampled_from(["contiguous", "stride0-time", "channels-last", "repeated"]))
    lead = tuple(draw(st.lists(st.integers(0, 3), min_size=1, max_size=2)))
    h, w = 2 * draw(st.integers(1, 4)), 2 * draw(st.integers(1, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([0.5, 1.0, 3.0]))

    def randn(*shape):
        return (torch.randn(shape, generator=gen, dtype=F64) * scale).to(dtype)

    if layout == "stride0-time":
        leaf = randn(1, *lead, h, w).requires_grad_()
        x = leaf.expand(T, *lead, h, w)
    elif layout == "channels-last":
        leaf = randn(T, *lead, w, h).requires_grad_()
        x = leaf.transpose(-1, -2)
    elif layout == "repeated":
        leaf = randn(*lead, h, w).requires_grad_()
        x = leaf
    else:
        leaf = randn(T, *lead, h, w).requires_grad_()
        x = leaf
    u0 = randn(*lead, h, w).requires_grad_() if draw(st.booleans()) else None
    return x, leaf, u0, (T if layout == "repeated" else None)


def _gradients_under_one_upstream(got, want, leaves, seed):
    """The gradients of both outputs' tuples for the leaves under the same
    random upstream gradient (None where a leaf has no path)."""
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(w.shape, generator=gen, dtype=F64).to(w.dtype) for w in want]
    return (
        torch.autograd.grad(got, leaves, upstream, allow_unused=True),
        torch.autograd.grad(want, leaves, upstream, allow_unused=True),
    )


@given(
    inputs=lif_pool_inputs(),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 2.0),
    surrogate=st.sampled_from(SURROGATES),
    alpha=st.floats(0.25, 8.0),
    grad_mode=st.sampled_from(GRAD_MODES),
    seed=st.integers(0, 2**31),
)
def test_lif_max_pool2d_matches_the_reference(inputs, decay, threshold, surrogate, alpha, grad_mode, seed):
    x, leaf, u0, steps = inputs
    options = dict(surrogate=surrogate, alpha=alpha, grad_mode=grad_mode, u0=u0, steps=steps, return_state=True)
    before = snapshot(x, u0)
    got = ops.lif_max_pool2d(x, decay, threshold, **options)
    unchanged(before, (x, u0))
    want = reference.lif_max_pool2d(x, decay, threshold, **options)
    for g, w in zip(got, want):  # pooled spikes, state: the same roundings in the same order
        assert g.dtype == x.dtype and g.shape == w.shape
        assert torch.equal(g, w), "differs from the reference"
    if x.numel() == 0:
        return
    leaves = [leaf] + ([u0] if u0 is not None else [])
    for g, w, t in zip(*_gradients_under_one_upstream(got, want, leaves, seed), leaves):
        zero = torch.zeros_like(t)  # autograd's None: no path (time_local's u0), a zero gradient
        close(zero if g is None else g, zero if w is None else w, x.dtype, rtol=1e-9, atol=1e-11)


@given(
    inputs=lif_pool_inputs(),
    decay=st.floats(0.0, 1.0),
    threshold=st.floats(0.05, 2.0),
    grad_mode=st.sampled_from(GRAD_MODES),
    seed=st.integers(0, 2**31),
)
def test_lif_max_pool2d_over_its_input_equals_the_allocating_op(inputs, decay, threshold, grad_mode, seed):
    """overwrite_input on an intermediate laid out as x is: the same outputs
    and gradients, bit for bit (non-contiguous layouts take the allocating op)."""
    x, leaf, u0, steps = inputs
    fresh = leaf * 1.0  # (exact: the gradient passes through unchanged)
    if x is not leaf:  # the layouts of lif_pool_inputs: an expand over time or a transpose
        fresh = fresh.expand(x.shape) if "Expand" in type(x.grad_fn).__name__ else fresh.transpose(-1, -2)
    options = dict(grad_mode=grad_mode, u0=u0, steps=steps, return_state=True)
    want = ops.lif_max_pool2d(x, decay, threshold, **options)
    got = ops.lif_max_pool2d(fresh, decay, threshold, overwrite_input=True, **options)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    if x.numel() == 0:
        return
    leaves = [leaf] + ([u0] if u0 is not None else [])
    for g, w in zip(*_gradients_under_one_upstream(got, want, leaves, seed)):
        assert (g is None and w is None) or torch.equal(g, w)


# ---- kernel matrices and HSIC ----


def random_rows(draw, m, dtype=F64):
    features = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=2)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    z = torch.rand((m, *features), generator=gen, dtype=F64)
    if draw(st.booleans()):  # spike-like binary rows: ties and zero rows
        z = (z < 0.4).to(F64)
    return z.to(dtype)


@st.composite
def kernel_cases(draw):
    m = draw(st.integers(2, 10))
    dtype = draw(st.sampled_from([F64, torch.float32]))
    kind = draw(st.sampled_from(KINDS))
    options = dict(
        kind=kind,
        sigma=draw(st.floats(0.1, 10.0)),
        sigma_scaling=draw(st.sampled_from(["none", "dim"])),
        c1=draw(st.floats(-2.0, 2.0)),
        c0=draw(st.floats(-2.0, 2.0)),
    )
    return random_rows(draw, m, dtype), options


@given(case=kernel_cases(), seed=st.integers(0, 2**31))
def test_kernel_matrix_matches_the_reference(case, seed):
    z, options = case
    z = z.requires_grad_()
    before = snapshot(z)
    got = ops.kernel_matrix(z, **options)
    want = reference.kernel_matrix(z.detach().double().requires_grad_(), **options)
    unchanged(before, (z,))
    assert got.shape == (z.shape[0], z.shape[0])
    close(got, want.detach(), z.dtype)
    if options["kind"] == "cosine" and (z.detach().flatten(1).norm(dim=1) == 0).any():
        return  # a zero row's cosine kernel is 0 by definition: no derivative there
    if options["kind"] == "laplacian" and torch.unique(z.detach().flatten(1), dim=0).shape[0] < z.shape[0]:
        return  # ‖a − b‖ has no derivative at a = b between distinct samples
    upstream = torch.randn(got.shape, generator=torch.Generator().manual_seed(seed), dtype=F64)
    (got_grad,) = torch.autograd.grad(got, z, upstream.to(got.dtype))
    leaf = z.detach().double().requires_grad_()
    (want_grad,) = torch.autograd.grad(reference.kernel_matrix(leaf, **options), leaf, upstream)
    if z.dtype == F64:
        close(got_grad, want_grad, F64, rtol=1e-9, atol=1e-10)
        return
    rows = z.detach().double().flatten(1)
    rtol, atol = 1e-4, 1e-5
    if options["kind"] == "gaussian":
        # −(1/σ²)(diag(A·1) − A)·z sums m terms of |A|·‖z‖ that cancel (to 0 for equal rows)
        sigma2 = options["sigma"] ** 2 * (rows.shape[1] if options["sigma_scaling"] == "dim" else 1)
        terms = len(rows) * upstream.abs().max().item() * rows.abs().max().item() / sigma2
        atol = 1e-5 + 4 * torch.finfo(torch.float32).eps * terms
    if options["kind"] == "cosine":  # the gradient grows as 1/‖a‖
        atol = 1e-5 * max(1.0, 1 / rows.norm(dim=1).min().item())
    if options["kind"] == "laplacian":
        # ‖a − b‖² = ‖a‖² + ‖b‖² − 2aᵀb from the Gram matrix keeps ~eps·‖a‖²/‖a − b‖²
        # of its value, and the gradient divides by ‖a − b‖: a tolerance of that
        # condition number; near-duplicate rows are compared in float64 only.
        gaps = torch.cdist(rows, rows) + torch.eye(len(rows), dtype=F64) * 1e9
        condition = ((rows * rows).sum(1).max() / gaps.min() ** 2).item()
        if condition > 1e3:
            return
        rtol = 1e-4 + 32 * torch.finfo(torch.float32).eps * condition
        atol = rtol * want_grad.abs().max().item()
    torch.testing.assert_close(got_grad.double(), want_grad, rtol=rtol, atol=atol)


def kernels(draw, m, count):
    """`count` symmetric [m, m] kernel matrices of random rows (float64)."""
    out = []
    for _ in range(count):
        kind = draw(st.sampled_from(["gaussian", "cosine", "linear"]))
        out.append(reference.kernel_matrix(random_rows(draw, m), kind=kind, sigma=1.0, sigma_scaling="dim"))
    return out


@given(data=st.data(), m=st.integers(1, 10), estimator=st.sampled_from(ESTIMATORS))
def test_hsic_matches_the_reference(data, m, estimator):
    if m < 2 or (estimator == "unbiased" and m < 4):
        k = torch.eye(m, dtype=F64)
        one_line_error(lambda: ops.hsic(k, k, estimator=estimator), "hsic")
        return
    k, l = (t.requires_grad_() for t in kernels(data.draw, m, 2))
    before = snapshot(k, l)
    got = ops.hsic(k, l, estimator=estimator)
    want = reference.hsic(k, l, estimator=estimator)
    unchanged(before, (k, l))
    close(got, want.detach(), F64, atol=1e-14)
    # The op's gradient is the one on symmetric matrices (csrc/ops/hsic.cpp): the
    # symmetric part of autograd's, equal to it along every symmetric direction.
    for g, w in zip(torch.autograd.grad(got, (k, l)), torch.autograd.grad(want, (k, l))):
        close(g, (w + w.T) / 2, F64, atol=1e-14)


@given(
    data=st.data(),
    m=st.integers(2, 10),
    estimator=st.sampled_from(ESTIMATORS),
    normalize=st.sampled_from(["none", "cka", "cca"]),
    beta=st.floats(-4.0, 32.0),
)
def test_hsic_modulator_matches_the_reference(data, m, estimator, normalize, beta):
    kx, ky, kz = kernels(data.draw, m, 3)
    before = snapshot(kx, ky, kz)
    if estimator == "unbiased" and normalize != "cca" and (m < 4 or normalize == "cka"):  # cca has no estimator
        one_line_error(
            lambda: ops.hsic_modulator(
                kx, ky, beta=beta, estimator=estimator, normalize=normalize, kz=None if normalize == "none" else kz
            ),
            "hsic",
        )
        return
    if normalize == "none":
        got = ops.hsic_modulator(kx, ky, beta=beta, estimator=estimator)
        want = reference.hsic_modulator(kx, ky, beta=beta, estimator=estimator)
        close(got, want, F64, atol=1e-14)
        # Σ M ∘ Kz is HSIC(X, Z) − β·HSIC(Z, Y) for any Kz (the modulator's definition)
        objective = reference.hsic(kx, kz, estimator=estimator) - beta * reference.hsic(kz, ky, estimator=estimator)
        close((got * kz).sum(), objective, F64, rtol=1e-9, atol=1e-12)
    elif normalize == "cka":
        got = ops.hsic_modulator(kx, ky, beta=beta, estimator=estimator, normalize="cka", kz=kz)
        want = reference_hsic.hsic_modulator_cka(kx, ky, kz, beta=beta, estimator=estimator)
        # M is an O(1 + |β|) bracket over ‖C(Kz)‖ ≈ m·sqrt(HSIC(Kz, Kz)); the reference's
        # estimators lose digits to cancellation as that norm shrinks: 1e-6 of M's scale
        norm = m * reference.hsic(kz, kz, estimator=estimator).clamp_min(0).sqrt().item()
        close(got, want, F64, 1e-6, 1e-12 + 1e-6 * (1 + abs(beta)) / max(norm, 1e-300))
    else:
        got = ops.hsic_modulator(kx, ky, beta=beta, normalize="cca", kz=kz)
        # M = H·εm A⁻¹(R_X − β·R_Y)ᵀA⁻¹·H, A = K̃ + εmI: symmetric, and H makes its
        # rows sum to 0, up to the rounding of A⁻¹'s entries of up to 1/(εm).
        h, ridge = torch.eye(m, dtype=F64) - 1.0 / m, 1e-5 * m
        floor = 64 * torch.finfo(F64).eps * (1 + abs(beta)) / ridge
        torch.testing.assert_close(got, got.T, rtol=0, atol=floor)
        torch.testing.assert_close(got.sum(1), torch.zeros(m, dtype=F64), rtol=0, atol=m * floor)
        # The reference's autograd passes through A⁻¹ too: where a kernel is
        # rank-deficient on the samples' differences, M is a small residual and
        # the two roundings differ by up to a percent of it; they are compared
        # where each K̃'s condition there is <= 1e3.
        spectra = [torch.linalg.eigvalsh(h @ k @ h)[1:].clamp_min(0) + ridge for k in (kx, ky, kz)]
        if max((s.max() / s.min()).item() for s in spectra) <= 1e3:
            want = reference_hsic.hsic_modulator_cca(kx, ky, kz, beta=beta)
            close(got, want, F64, 1e-6, 1e-6 * want.abs().max().item() + floor)
    unchanged(before, (kx, ky, kz))
    assert torch.isfinite(got).all()


@given(m=st.integers(2, 10), beta=st.floats(-4.0, 32.0), seed=st.integers(0, 2**31))
def test_hsic_modulator_cca_matches_the_reference_on_full_rank_kernels(m, beta, seed):
    # Continuous rows with more features than samples: each K̃ has full rank on
    # the samples' differences, so every draw is compared (see the test above).
    gen = torch.Generator().manual_seed(seed)
    kx, ky, kz = (
        reference.kernel_matrix(torch.rand(m, m + 4, generator=gen, dtype=F64), sigma=0.3, sigma_scaling="dim")
        for _ in range(3)
    )
    h, ridge = torch.eye(m, dtype=F64) - 1.0 / m, 1e-5 * m
    spectra = [torch.linalg.eigvalsh(h @ k @ h)[1:] + ridge for k in (kx, ky, kz)]
    hypothesis.assume(max((s.max() / s.min()).item() for s in spectra) <= 1e3)
    got = ops.hsic_modulator(kx, ky, beta=beta, normalize="cca", kz=kz)
    want = reference_hsic.hsic_modulator_cca(kx, ky, kz, beta=beta)
    floor = 64 * torch.finfo(F64).eps * (1 + abs(beta)) / ridge
    close(got, want, F64, 1e-6, 1e-6 * want.abs().max().item() + floor)


@st.composite
def three_factor_cases(draw):
    m, n_in, n_out, T = (
        draw(st.integers(2, 9)),
        draw(st.integers(1, 7)),
        draw(st.integers(1, 7)),
        draw(st.integers(1, 4)),
    )
    dtype = draw(st.sampled_from([F64, torch.float32]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    pre = (torch.rand(T, m, n_in, generator=gen, dtype=F64) < 0.4).to(dtype)
    post_grad = torch.rand(T, m, n_out, generator=gen, dtype=F64).to(dtype)
    rates = (torch.rand(T, m, n_out, generator=gen, dtype=F64) < 0.3).to(F64).mean(0).to(dtype)
    kx, ky = kernels(draw, m, 2)
    modulator = reference.hsic_modulator(kx, ky, beta=draw(st.floats(0.0, 8.0))).to(dtype)
    options = dict(sigma=draw(st.floats(0.1, 8.0)), sigma_scaling=draw(st.sampled_from(["none", "dim"])))
    return pre, post_grad, rates, modulator, options


@given(case=three_factor_cases())
def test_hsic_loss_matches_the_reference(case):
    _, _, rates, modulator, options = case
    z = rates.clone().requires_grad_()
    before = snapshot(z, modulator)
    got = ops.hsic_loss(z, modulator, **options)
    want = reference.hsic_loss(z.detach().double().requires_grad_(), modulator.double(), **options)
    unchanged(before, (z, modulator))
    close(got, want.detach(), z.dtype)
    leaf = z.detach().double().requires_grad_()
    (want_grad,) = torch.autograd.grad(reference.hsic_loss(leaf, modulator.double(), **options), leaf)
    (got_grad,) = torch.autograd.grad(got, z)
    close(got_grad, want_grad, z.dtype, rtol=1e-9, atol=1e-11)


@given(case=three_factor_cases())
def test_hsic_loss_grad_over_z_equals_the_backward(case):
    _, _, rates, modulator, options = case
    z = rates.clone().requires_grad_()
    loss = ops.hsic_loss(z, modulator, **options)
    (grad,) = torch.autograd.grad(loss, z)
    over = rates.clone()
    assert torch.equal(ops.hsic_loss_grad_(over, modulator, **options), loss.detach())
    assert torch.equal(over, grad)


@given(case=three_factor_cases())
def test_hsic_update_and_post_signal_match_the_reference(case):
    pre, post_grad, rates, modulator, options = case
    before = snapshot(pre, post_grad, rates, modulator)
    got = ops.hsic_update(pre, post_grad, rates, modulator, **options)
    want = reference.hsic_update(pre.double(), post_grad.double(), rates.double(), modulator.double(), **options)
    for g, w in zip(got, want):
        close(g, w, pre.dtype, rtol=1e-9, atol=1e-11)
    delta, loss = ops.hsic_post_signal(post_grad, rates, modulator, **options)
    want_delta, want_loss = reference.hsic_post_signal(
        post_grad.double(), rates.double(), modulator.double(), **options
    )
    close(delta, want_delta, pre.dtype, rtol=1e-9, atol=1e-11)
    close(loss, want_loss, pre.dtype)
    unchanged(before, (pre, post_grad, rates, modulator))


@given(
    op=st.sampled_from(["kernel_matrix", "hsic_loss", "hsic_update", "hsic_post_signal", "hsic_modulator"]),
    fault=st.sampled_from(["sigma-nan", "sigma-zero", "m=1", "int", "dtype-mix", "shape", "choice", "T=0"]),
    m=st.integers(2, 6),
)
def test_hsic_ops_refuse_bad_input_with_one_line(op, fault, m):
    z, mod = torch.rand(m, 4, dtype=F64), torch.rand(m, m, dtype=F64)
    pre, post = torch.rand(2, m, 3, dtype=F64), torch.rand(2, m, 4, dtype=F64)
    sigma, scaling, kind, estimator = 1.0, "none", "gaussian", "approx"
    if fault == "sigma-nan":
        sigma = math.nan
    elif fault == "sigma-zero":
        sigma = 0.0
    elif fault == "m=1":
        z, mod, pre, post = z[:1], mod[:1, :1], pre[:, :1], post[:, :1]
    elif fault == "int":
        z, post = z.long(), post.long()
        mod = mod.long() if op == "hsic_modulator" else mod
    elif fault == "dtype-mix":  # (a modulator may differ from z: float32 beside bfloat16 spikes)
        post = post.float()
    elif fault == "shape":
        mod, pre = mod[:, :-1], pre[:, :-1]
    elif fault == "choice":
        scaling, kind, estimator = "log", "rbf", "fast"
    else:
        pre, post = pre[:0], post[:0]
    if fault == "T=0" and op in ("kernel_matrix", "hsic_loss", "hsic_modulator"):
        return  # no time axis
    if fault in ("sigma-nan", "sigma-zero") and op == "hsic_modulator":
        return  # no sigma
    rates = z
    calls = {
        "kernel_matrix": lambda: ops.kernel_matrix(z, kind=kind, sigma=sigma, sigma_scaling=scaling),
        "hsic_loss": lambda: ops.hsic_loss(z, mod, sigma=sigma, sigma_scaling=scaling),
        "hsic_update": lambda: ops.hsic_update(pre, post, rates, mod, sigma=sigma, sigma_scaling=scaling),
        "hsic_post_signal": lambda: ops.hsic_post_signal(post, rates, mod, sigma=sigma, sigma_scaling=scaling),
        "hsic_modulator": lambda: ops.hsic_modulator(
            mod, (mod.T.float() if fault == "dtype-mix" else mod.T).contiguous(), estimator=estimator
        ),
    }
    if fault == "shape" and op == "kernel_matrix":
        return  # any [m, ...] is a valid kernel input
    if fault == "dtype-mix" and op in ("kernel_matrix", "hsic_loss"):
        return
    if fault == "shape" and op == "hsic_modulator":
        return
    before = snapshot(z, mod, pre, post)
    one_line_error(calls[op], op.split("_")[0] if op == "hsic_modulator" else op)
    unchanged(before, (z, mod, pre, post))
