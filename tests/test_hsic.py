"""Kernel matrices, HSIC and the fused three-factor update against the
pure-PyTorch reference written from the equations (docs/hsic.md)."""

import importlib
import math

import pytest
import torch

from pysnn import ops, reference
from pysnn._validation import ESTIMATORS, KERNELS

reference_hsic = importlib.import_module("pysnn.reference.hsic")  # the module, not pysnn.reference.hsic()

F64 = torch.float64


def symmetric_kernel(m, device, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return reference.kernel_matrix(torch.rand(m, 12, generator=gen, dtype=F64), sigma=1.0).to(device, dtype)


def spike_rates(m, n, device, dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(m, n, generator=gen, dtype=F64) < 0.3).to(device, dtype)


# ---- forward values ----


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("sigma_scaling", ["none", "dim"])
@pytest.mark.parametrize("shape", [(16, 40), (9, 2, 3, 4)])
def test_kernel_matrix_matches_reference(device, kind, sigma_scaling, shape):
    z = torch.rand(shape, dtype=F64, device=device)
    options = dict(kind=kind, sigma=1.5, sigma_scaling=sigma_scaling, c1=0.3, c0=-0.1)
    k = ops.kernel_matrix(z, **options)
    assert k.shape == (shape[0], shape[0])
    torch.testing.assert_close(k, reference.kernel_matrix(z, **options), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["gaussian", "laplacian", "cosine"])
def test_kernel_matrix_degenerate_rows(device, kind):
    z = torch.rand(6, 5, dtype=F64, device=device)
    z[1] = z[0]  # identical rows
    z[2] = 0  # a silent row
    z.requires_grad_()
    k = ops.kernel_matrix(z, kind=kind)
    assert torch.isfinite(k).all()
    if kind != "cosine":
        assert torch.equal(k.diagonal(), torch.ones(6, dtype=F64, device=device))
        assert k[0, 1] == 1
    else:
        assert (k[2] == 0).all() and k[0, 0] == 1  # cosine of a zero vector is 0
    (k * torch.rand_like(k)).sum().backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_hsic_matches_reference(device, estimator):
    k, l = symmetric_kernel(20, device, seed=1), symmetric_kernel(20, device, seed=2)
    torch.testing.assert_close(
        ops.hsic(k, l, estimator=estimator), reference.hsic(k, l, estimator=estimator), rtol=1e-10, atol=1e-14
    )


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_modulator_defines_the_layer_objective(device, estimator):
    kx, ky, kz = (symmetric_kernel(24, device, seed=s) for s in (3, 4, 5))
    m = ops.hsic_modulator(kx, ky, beta=2.0, estimator=estimator)
    torch.testing.assert_close(
        m, reference.hsic_modulator(kx, ky, beta=2.0, estimator=estimator), rtol=1e-10, atol=1e-15
    )
    expected = reference.hsic(kx, kz, estimator=estimator) - 2.0 * reference.hsic(kz, ky, estimator=estimator)
    torch.testing.assert_close((m * kz).sum(), expected, rtol=1e-10, atol=1e-15)


def test_hsic_loss_value(device):
    z = torch.rand(16, 30, dtype=F64, device=device)
    mod = ops.hsic_modulator(symmetric_kernel(16, device, seed=1), symmetric_kernel(16, device, seed=2))
    for scaling in ("none", "dim"):
        torch.testing.assert_close(
            ops.hsic_loss(z, mod, sigma=2.0, sigma_scaling=scaling),
            reference.hsic_loss(z, mod, sigma=2.0, sigma_scaling=scaling),
            rtol=1e-12,
            atol=1e-15,
        )


# ---- gradients ----


@pytest.mark.parametrize("kind", KERNELS)
def test_kernel_matrix_backward_matches_reference(device, kind):
    z = torch.rand(10, 2, 7, dtype=F64, device=device)
    weights = torch.randn(10, 10, dtype=F64, device=device)
    options = dict(kind=kind, sigma=1.2, sigma_scaling="dim", c1=0.4, c0=0.1)
    grads = []
    for impl in (ops, reference):
        zz = z.clone().requires_grad_()
        (impl.kernel_matrix(zz, **options) * weights).sum().backward()
        grads.append(zz.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", KERNELS)
def test_kernel_matrix_gradcheck(device, kind):
    z = torch.rand(6, 4, dtype=F64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: ops.kernel_matrix(z, kind=kind, sigma=0.8, c1=0.5), (z,))


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_hsic_backward_on_symmetric_matrices(device, estimator):
    # Kernel matrices are symmetric: differentiate through a symmetric parametrisation.
    a = torch.rand(8, 8, dtype=F64, device=device, requires_grad=True)
    b = torch.rand(8, 8, dtype=F64, device=device, requires_grad=True)

    def run(impl, a, b):
        return impl.hsic(a + a.T, b + b.T, estimator=estimator)

    fused = torch.autograd.grad(run(ops, a, b), (a, b))
    expected = torch.autograd.grad(run(reference, a, b), (a, b))
    for got, want in zip(fused, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    assert torch.autograd.gradcheck(lambda a, b: run(ops, a, b), (a, b))


@pytest.mark.parametrize("sigma_scaling", ["none", "dim"])
def test_hsic_loss_closed_form_gradient(device, sigma_scaling):
    z = torch.rand(12, 9, dtype=F64, device=device)
    mod = ops.hsic_modulator(
        symmetric_kernel(12, device, seed=1), symmetric_kernel(12, device, seed=2), estimator="biased"
    )
    grads = []
    for impl in (ops, reference):
        zz = z.clone().requires_grad_()
        impl.hsic_loss(zz, mod, sigma=1.5, sigma_scaling=sigma_scaling).backward()
        grads.append(zz.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-12)
    zz = z.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda z: ops.hsic_loss(z, mod, sigma=1.5, sigma_scaling=sigma_scaling), (zz,))


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("m,d", [(12, 9000), (12, 3000), (40, 8192)])
def test_hsic_loss_grad_over_z_equals_the_backward(device, dtype, m, d):
    """The gradient written over z is hsic_loss's backward bit for bit (one
    GEMM, or column blocks past 4096 features, the last one narrower), and
    the loss is hsic_loss's."""
    gen = torch.Generator().manual_seed(6)
    z = (torch.rand(m, d, generator=gen, dtype=F64) < 0.3).to(device, dtype)
    kx = reference.kernel_matrix(torch.rand(m, 7, generator=gen, dtype=F64).to(device))
    mod = ops.hsic_modulator(kx, symmetric_kernel(m, device, seed=3)).to(dtype)
    zz = z.clone().requires_grad_()
    want_loss = ops.hsic_loss(zz, mod, sigma=0.7, sigma_scaling="dim")
    want_loss.backward()
    over = z.clone()
    loss = ops.hsic_loss_grad_(over, mod, sigma=0.7, sigma_scaling="dim")
    assert torch.equal(loss, want_loss.detach())
    assert torch.equal(over, zz.grad)
    ref = z.clone()
    ref_loss = reference.hsic_loss_grad_(ref, mod, sigma=0.7, sigma_scaling="dim")
    tol = 1e-10 if dtype == F64 else 1e-4
    torch.testing.assert_close(ref, over, rtol=tol, atol=tol * 1e-2)
    torch.testing.assert_close(ref_loss, loss, rtol=tol, atol=0.0)


@pytest.mark.parametrize("impl", ["ops", "reference"])
def test_hsic_loss_grad_needs_a_tensor_it_can_write(impl):
    lib = ops if impl == "ops" else reference
    z = torch.rand(4, 6)
    mod = torch.eye(4)
    with pytest.raises(ValueError, match="contiguous"):
        lib.hsic_loss_grad_(z.t().contiguous().t(), mod.clone())  # [4, 6], column-major
    with pytest.raises(ValueError, match="float32 or float64"):
        lib.hsic_loss_grad_(z.bfloat16(), mod.bfloat16())
    with pytest.raises(ValueError, match="2 samples"):
        lib.hsic_loss_grad_(z[:1].clone(), mod[:1, :1].clone())


@pytest.mark.parametrize("m,d", [(12, 9000), (300, 600)])
def test_hsic_loss_gradient_on_wide_and_tall_rates(device, m, d):
    # d > 4096 writes the gradient GEMM in column blocks; m >= 256 with d >= 512
    # builds the Gram matrix from symmetric blocks (csrc/ops/hsic.cpp).
    gen = torch.Generator().manual_seed(5)
    z = (torch.rand(m, d, generator=gen, dtype=F64) < 0.3).to(device, F64)
    kx = reference.kernel_matrix(torch.rand(m, 7, generator=gen, dtype=F64).to(device))
    mod = ops.hsic_modulator(kx, symmetric_kernel(m, device, seed=3))
    grads, losses = [], []
    for impl in (ops, reference):
        zz = z.clone().requires_grad_()
        loss = impl.hsic_loss(zz, mod, sigma=0.5, sigma_scaling="dim")
        loss.backward()
        grads.append(zz.grad)
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-8, atol=1e-12)


def test_hsic_loss_any_modulator_is_symmetrised(device):
    z = torch.rand(7, 5, dtype=F64, device=device, requires_grad=True)
    mod = torch.randn(7, 7, dtype=F64, device=device)  # not symmetric
    assert torch.autograd.gradcheck(lambda z: ops.hsic_loss(z, mod, sigma=1.0), (z,))


def _reference_spiking_layer_grads(pre, weight, bias, mod, sigma, sigma_scaling, decay, threshold):
    """W.grad and b.grad of the reference HSIC loss through a reference spiking
    linear layer with the time_local surrogate; also the layer's post_grad and rates."""
    weight = weight.clone().requires_grad_()
    bias = bias.clone().requires_grad_()
    x = pre @ weight.T + bias
    spikes, membrane = reference.lif(x, decay, threshold, grad_mode="time_local", return_membrane=True)
    rates = spikes.mean(0)
    loss = reference.hsic_loss(rates, mod, sigma=sigma, sigma_scaling=sigma_scaling)
    loss.backward()
    post_grad = reference.surrogate_grad(membrane.detach() - threshold, "sigmoid", 4.0)
    return weight.grad, bias.grad, loss.detach(), post_grad, rates.detach()


@pytest.mark.parametrize("sigma_scaling", ["none", "dim"])
def test_hsic_update_equals_autograd_through_a_spiking_layer(device, sigma_scaling):
    T, m, n_in, n_out = 6, 16, 20, 12
    gen = torch.Generator().manual_seed(7)
    pre = (torch.rand(T, m, n_in, generator=gen, dtype=F64) < 0.4).to(device, F64)
    weight = (torch.randn(n_out, n_in, generator=gen, dtype=F64) * 0.5).to(device)
    bias = (torch.rand(n_out, generator=gen, dtype=F64) * 0.3).to(device)
    kx = reference.kernel_matrix(pre.mean(0), sigma=2.0)
    ky = reference.kernel_matrix(torch.nn.functional.one_hot(torch.arange(m, device=device) % 4).to(F64), kind="cosine")
    mod = ops.hsic_modulator(kx, ky, beta=2.0)
    want_w, want_b, want_loss, post_grad, rates = _reference_spiking_layer_grads(
        pre, weight, bias, mod, 1.0, sigma_scaling, 0.75, 0.6
    )
    assert want_w.abs().max() > 0
    grad_w, grad_b, loss = ops.hsic_update(pre, post_grad, rates, mod, sigma=1.0, sigma_scaling=sigma_scaling)
    torch.testing.assert_close(grad_w, want_w, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(grad_b, want_b, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=1e-15)
    ref = reference.hsic_update(pre, post_grad, rates, mod, sigma=1.0, sigma_scaling=sigma_scaling)
    for got, want in zip((grad_w, grad_b, loss), ref):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)
    delta, loss2 = ops.hsic_post_signal(post_grad, rates, mod, sigma=1.0, sigma_scaling=sigma_scaling)
    torch.testing.assert_close(torch.einsum("tmo,tmi->oi", delta, pre), grad_w, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(loss2, loss)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_inputs_accumulate_in_float32(device, dtype):
    z = torch.rand(32, 64, device=device)
    k = ops.kernel_matrix(z.to(dtype), sigma_scaling="dim")
    assert k.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(k, reference.kernel_matrix(z.double(), sigma_scaling="dim").float(), rtol=tol, atol=tol)
    mod = ops.hsic_modulator(k, ops.kernel_matrix(z[:, :10].to(dtype), kind="cosine"))
    post_grad = torch.rand(4, 32, 64, device=device).to(dtype)
    grad_w, grad_b, loss = ops.hsic_update(post_grad, post_grad, z.to(dtype), mod, sigma_scaling="dim")
    assert grad_w.dtype == torch.float32 and torch.isfinite(grad_w).all() and torch.isfinite(loss)


# ---- torch.library integration ----


def _samples(device):
    z = torch.rand(8, 3, 4, device=device, dtype=F64)
    k, l = symmetric_kernel(8, device, seed=1), symmetric_kernel(8, device, seed=2)
    mod = ops.hsic_modulator(k, l)
    post_grad = torch.rand(3, 8, 5, device=device, dtype=F64)
    rates = spike_rates(8, 5, device)
    pre = torch.rand(3, 8, 6, device=device, dtype=F64)
    g = torch.randn(8, 8, device=device, dtype=F64)
    p = torch.ops.pysnn
    return [
        (p.kernel_matrix.default, (z.clone().requires_grad_(), "gaussian", 2.0, "dim", 1.0, 0.0)),
        (p.kernel_matrix.default, (z, "cosine", 1.0, "none", 1.0, 0.0)),
        (p.kernel_matrix.default, (z.float().requires_grad_(), "laplacian", 1.0, "none", 1.0, 0.0)),
        (p.kernel_matrix.default, (z.clone().requires_grad_(), "sigmoid", 1.0, "none", 0.5, 0.1)),
        (p.kernel_matrix_backward.default, (g, z, k, "gaussian", 1.0, "none", 1.0, 0.0)),
        (p.hsic.default, (k.clone().requires_grad_(), l.clone().requires_grad_(), "approx")),
        (p.hsic.default, (k, l, "unbiased")),
        (p.hsic_backward.default, (torch.tensor(1.0, dtype=F64, device=device), k, l, "biased")),
        (p.hsic_modulator.default, (k, l, 2.0, "biased")),
        (p.hsic_loss.default, (z.clone().requires_grad_(), mod, 5.0, "dim")),
        (p.hsic_loss_backward.default, (torch.tensor(1.0, dtype=F64, device=device), z, mod, 5.0, "none")),
        (p.hsic_loss_grad_.default, (z.clone(), mod, 5.0, "dim")),
        (p.hsic_post_signal.default, (post_grad, rates, mod, 1.0, "none")),
        (p.hsic_update.default, (pre, post_grad, rates, mod, 1.0, "dim")),
        (p._kernel_from_gram.default, (k, "gaussian", 0.5, 0.0)),
        (p._gaussian_weighted.default, (k, mod, 0.5)),
        (p._row_moments.default, (k, l)),
        (p._centre.default, (k, k.sum(1), k.sum(), "biased")),
        (
            p._spike_mm.default,
            (torch.randn(16, 5, dtype=F64, device=device), (torch.rand(16, 7, device=device) < 0.3).to(F64)),
        ),
    ]


def test_opcheck(device):
    for op, args in _samples(device):
        torch.library.opcheck(op, args)


def test_torch_compile_fullgraph(device):
    def step(x, labels, weight):
        kx = ops.kernel_matrix(x, sigma_scaling="dim")
        ky = ops.kernel_matrix(labels, kind="cosine")
        mod = ops.hsic_modulator(kx, ky)
        rates = torch.sigmoid(x @ weight)
        return ops.hsic_loss(rates, mod, sigma_scaling="dim") + ops.hsic(kx, ky)

    x = torch.rand(16, 20, device=device)
    labels = torch.nn.functional.one_hot(torch.arange(16, device=device) % 3).float()
    weight = torch.randn(20, 8, device=device, requires_grad=True)
    eager = step(x, labels, weight)
    (eager_grad,) = torch.autograd.grad(eager, weight)
    compiled = torch.compile(step, fullgraph=True)(x, labels, weight)
    (grad,) = torch.autograd.grad(compiled, weight)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-7)


# ---- bad input ----


def _good():
    k = symmetric_kernel(6, "cpu")
    return dict(
        z=torch.rand(6, 4, dtype=F64),
        k=k,
        l=k.clone(),
        mod=ops.hsic_modulator(k, k),
        pre=torch.rand(3, 6, 5, dtype=F64),
        post=torch.rand(3, 6, 4, dtype=F64),
        rates=torch.rand(6, 4, dtype=F64),
    )


BAD = [
    ("one sample", lambda g, impl: impl.kernel_matrix(g["z"][:1]), ValueError, "m >= 2"),
    ("int z", lambda g, impl: impl.kernel_matrix(torch.ones(4, 3, dtype=torch.int64)), TypeError, "floating"),
    ("unknown kind", lambda g, impl: impl.kernel_matrix(g["z"], kind="rbf"), ValueError, "kind"),
    ("zero sigma", lambda g, impl: impl.kernel_matrix(g["z"], sigma=0.0), ValueError, "sigma"),
    ("nan sigma", lambda g, impl: impl.hsic_loss(g["z"], g["mod"], sigma=math.nan), ValueError, "sigma"),
    (
        "inf sigma",
        lambda g, impl: impl.hsic_update(g["pre"], g["post"], g["rates"], g["mod"], sigma=math.inf),
        ValueError,
        "sigma",
    ),
    ("unknown scaling", lambda g, impl: impl.kernel_matrix(g["z"], sigma_scaling="sqrt"), ValueError, "sigma_scaling"),
    ("non-finite c1", lambda g, impl: impl.kernel_matrix(g["z"], kind="sigmoid", c1=math.inf), ValueError, "c1"),
    ("non-square k", lambda g, impl: impl.hsic(g["k"][:, :5], g["l"]), ValueError, "square"),
    ("k and l sizes", lambda g, impl: impl.hsic(g["k"], g["l"][:5, :5]), ValueError, "same shape"),
    ("unknown estimator", lambda g, impl: impl.hsic(g["k"], g["l"], estimator="exact"), ValueError, "estimator"),
    (
        "unbiased m < 4",
        lambda g, impl: impl.hsic(g["k"][:3, :3], g["l"][:3, :3], estimator="unbiased"),
        ValueError,
        "at least 4",
    ),
    ("mixed dtypes", lambda g, impl: impl.hsic(g["k"], g["l"].float()), TypeError, "dtype"),
    ("mixed devices", lambda g, impl: impl.hsic_modulator(g["k"], g["l"].to("meta")), RuntimeError, "is on"),
    ("kx ky batch", lambda g, impl: impl.hsic_modulator(g["k"], g["l"][:5, :5]), ValueError, "batch size"),
    ("modulator batch", lambda g, impl: impl.hsic_loss(g["z"][:5], g["mod"]), ValueError, "batch size"),
    ("modulator square", lambda g, impl: impl.hsic_loss(g["z"], g["mod"][:, :5]), ValueError, "square"),
    (
        "T mismatch",
        lambda g, impl: impl.hsic_update(g["pre"][:2], g["post"], g["rates"], g["mod"]),
        ValueError,
        "time steps",
    ),
    (
        "pre batch",
        lambda g, impl: impl.hsic_update(g["pre"][:, :5], g["post"], g["rates"], g["mod"]),
        ValueError,
        "pre must have batch size",
    ),
    (
        "post batch",
        lambda g, impl: impl.hsic_update(g["pre"], g["post"][:, :5], g["rates"], g["mod"]),
        ValueError,
        "post_grad must have batch size",
    ),
    ("neurons", lambda g, impl: impl.hsic_post_signal(g["post"][..., :3], g["rates"], g["mod"]), ValueError, "neurons"),
    (
        "rates dims",
        lambda g, impl: impl.hsic_post_signal(g["post"], g["rates"][None], g["mod"]),
        ValueError,
        "rates must be",
    ),
    ("T = 0", lambda g, impl: impl.hsic_post_signal(g["post"][:0], g["rates"], g["mod"]), ValueError, "T = 0"),
    (
        "pre dtype",
        lambda g, impl: impl.hsic_update(g["pre"].float(), g["post"], g["rates"], g["mod"]),
        TypeError,
        "dtype",
    ),
]


@pytest.mark.parametrize("impl", [ops, reference], ids=["fused", "reference"])
@pytest.mark.parametrize("case,call,error,match", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_problem(impl, case, call, error, match):
    with pytest.raises(error, match=match):
        call(_good(), impl)


def test_bad_input_under_torch_compile():
    g = _good()
    with pytest.raises(Exception, match="batch size"):
        torch.compile(lambda z, mod: ops.hsic_loss(z, mod), fullgraph=True)(g["z"][:5], g["mod"])


def test_modulator_requiring_grad_is_refused():
    g = _good()
    with pytest.raises(ValueError, match="modulator must not require grad"):
        ops.hsic_loss(g["z"], g["mod"].requires_grad_())


def test_hsic_update_with_input_repeated_over_time(device):
    # Direct coding feeds one image at every step: an expanded `pre` takes the
    # T-times smaller GEMM and must give the same update as the dense copy.
    T, m = 5, 10
    image = torch.rand(m, 7, dtype=F64, device=device)
    post_grad = torch.rand(T, m, 4, dtype=F64, device=device)
    rates = spike_rates(m, 4, device)
    mod = ops.hsic_modulator(symmetric_kernel(m, device, seed=1), symmetric_kernel(m, device, seed=2))
    expanded = image.expand(T, m, 7)
    assert expanded.stride(0) == 0
    fast = ops.hsic_update(expanded, post_grad, rates, mod)
    dense = ops.hsic_update(expanded.contiguous(), post_grad, rates, mod)
    for got, want in zip(fast, dense):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(
    "k,n,c,kind",
    [
        (640, 1024, 784, "spikes"),  # the benchmark's shape: 8-row groups, whole panels
        (37, 70, 13, "spikes"),  # a 5-row last group, a part panel
        (8, 1, 1, "spikes"),
        (5, 9, 4, "spikes"),  # fewer rows than one group: GEMM
        (40, 33, 20, "silent"),  # no spike at all
        (40, 33, 20, "rates"),  # not binary: GEMM
    ],
)
def test_spike_mm_is_a_transposed_product(device, dtype, k, n, c, kind):
    # The three-factor update's δᵀ·pre; on the CPU binary spikes take lookup tables.
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(k, n, generator=gen, dtype=dtype).to(device)
    spikes = {
        "spikes": (torch.rand(k, c, generator=gen) < 0.2).to(dtype),
        "silent": torch.zeros(k, c, dtype=dtype),
        "rates": torch.rand(k, c, generator=gen, dtype=dtype),
    }[kind].to(device)
    got = torch.ops.pysnn._spike_mm(a, spikes)
    want = (a.double().t() @ spikes.double()).to(dtype)
    assert got.shape == (n, c) and got.is_contiguous()
    tol = 1e-12 if dtype == F64 else 2e-5 * math.sqrt(k)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)


# ---- the normalised (CKA) modulator ----


def _psd_kernels(m, device, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.rand(m, d, generator=gen, dtype=dtype) for d in (30, 10, 40)]
    return [reference.kernel_matrix(f.to(device), kind="gaussian", sigma=1.0, sigma_scaling="dim") for f in feats]


@pytest.mark.parametrize("estimator", ["approx", "biased"])
def test_cka_modulator_is_the_gradient_of_the_normalised_bottleneck(device, estimator):
    kx, ky, kz = _psd_kernels(24, device)
    fused = ops.hsic_modulator(kx, ky, beta=2.0, estimator=estimator, normalize="cka", kz=kz)
    expected = reference.hsic_modulator(kx, ky, beta=2.0, estimator=estimator, normalize="cka", kz=kz)
    torch.testing.assert_close(fused, expected, rtol=1e-9, atol=1e-12)
    # no component along the layer's own centred kernel: descent cannot inflate it
    centred = kz - kz.mean() if estimator == "approx" else _centring(kz)
    assert abs((fused * centred).sum().item()) < 1e-10 * fused.norm().item() * centred.norm().item()


def _centring(k):
    h = torch.eye(len(k), dtype=k.dtype, device=k.device) - 1.0 / len(k)
    return h @ k @ h


def test_cka_modulator_of_a_silent_layer_is_zero(device):
    kx, ky, _ = _psd_kernels(16, device)
    silent = torch.ones(16, 16, dtype=torch.float64, device=device)  # every rate equal: Kz constant
    assert torch.equal(ops.hsic_modulator(kx, ky, normalize="cka", kz=silent), torch.zeros_like(silent))
    assert torch.equal(reference.hsic_modulator(kx, ky, normalize="cka", kz=silent), torch.zeros_like(silent))


def test_cka_modulator_opcheck_and_bad_input(device):
    kx, ky, kz = _psd_kernels(12, device)
    torch.library.opcheck(torch.ops.pysnn.hsic_modulator_cka.default, (kx, ky, kz, 2.0, "approx"))
    with pytest.raises(ValueError, match="needs the layer's kernel matrix"):
        ops.hsic_modulator(kx, ky, normalize="cka")
    with pytest.raises(ValueError, match="normalize must be"):
        ops.hsic_modulator(kx, ky, normalize="cca-ish", kz=kz)
    with pytest.raises(ValueError, match="approx or biased"):
        ops.hsic_modulator(kx, ky, estimator="unbiased", normalize="cka", kz=kz)
    with pytest.raises(ValueError, match="same m"):
        ops.hsic_modulator(kx, ky, normalize="cka", kz=kz[:6, :6])


def test_cca_modulator_is_the_gradient_of_ma_et_al_normalised_bottleneck(device):
    kx, ky, kz = _psd_kernels(20, device)
    fused = ops.hsic_modulator(kx, ky, beta=2.0, normalize="cca", kz=kz)
    expected = reference.hsic_modulator(kx, ky, beta=2.0, normalize="cca", kz=kz)
    torch.testing.assert_close(fused, expected, rtol=1e-7, atol=1e-10)
    torch.library.opcheck(torch.ops.pysnn.hsic_modulator_cca.default, (kx, ky, kz, 2.0))


def test_a_constant_label_kernel_drops_out_under_every_estimator(device):
    # Found by tests/test_properties.py: for a constant Ky (every label alike),
    # the biased estimator's HSIC(Ky, Ky) is 1e-34 of rounding, not 0, and the
    # reference divided by it; the op's centred Ky is exactly 0.
    z = torch.tensor([[0.3], [0.5], [0.9], [0.4], [0.7]], dtype=F64, device=device)
    kz = ops.kernel_matrix(z, sigma=0.5)
    ky = ops.kernel_matrix(z, kind="cosine")  # all ones: positive scalars
    for estimator in ("approx", "biased"):
        got = ops.hsic_modulator(kz, ky, beta=2.5, estimator=estimator, normalize="cka", kz=kz)
        want = reference_hsic.hsic_modulator_cka(kz, ky, kz, beta=2.5, estimator=estimator)
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("normalize", ["cka", "cca"])
def test_a_constant_input_kernel_gives_a_finite_normalised_modulator(device, normalize):
    # Found by tests/test_properties.py: with every sample alike (two equal
    # binary rows), Kx is constant and nHSIC(X, Z) is 0/0; the op takes it as
    # 0 (the term drops out), and the reference now does too (it gave NaN).
    kx = torch.ones(2, 2, dtype=F64, device=device)
    ky = ops.kernel_matrix(torch.tensor([[1.0], [0.0]], dtype=F64, device=device), kind="cosine")
    kz = symmetric_kernel(2, device)
    got = ops.hsic_modulator(kx, ky, beta=2.0, normalize=normalize, kz=kz)
    want = getattr(reference_hsic, f"hsic_modulator_{normalize}")(kx, ky, kz, beta=2.0)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("op", ["hsic_update", "hsic_post_signal"])
@pytest.mark.parametrize("sigma, sigma_scaling", [(float("nan"), "none"), (0.0, "none"), (1.0, "log")])
def test_three_factor_ops_name_themselves_in_sigma_errors(op, sigma, sigma_scaling, device):
    # Found by tests/test_properties.py: these reported a bad sigma as hsic_loss's.
    pre, post = torch.rand(2, 4, 3, dtype=F64, device=device), torch.rand(2, 4, 5, dtype=F64, device=device)
    rates, mod = spike_rates(4, 5, device), torch.rand(4, 4, dtype=F64, device=device)
    args = (pre, post, rates, mod) if op == "hsic_update" else (post, rates, mod)
    with pytest.raises(ValueError, match=f"^{op}: sigma"):
        getattr(ops, op)(*args, sigma=sigma, sigma_scaling=sigma_scaling)
