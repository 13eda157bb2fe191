"""Small runs of every CUDA kernel and every branch of it, to run under
`compute-sanitizer` (memcheck, racecheck, initcheck): LIF forward+backward
for every surrogate, grad mode and dtype, with and without u0, with and
without a gradient of the state or of the membrane, both backwards (saved
and recomputed membrane), a stride-0 input; every HSIC op and kernel
kind, with the row kernels both below and above one block's 256 rows."""

import itertools

import torch

import pysnn
from pysnn._validation import GRAD_MODES, SURROGATES

for dtype, surrogate, grad_mode in itertools.product(
    (torch.float32, torch.float16, torch.bfloat16, torch.float64), SURROGATES, GRAD_MODES
):
    x = torch.rand(5, 3, 37, device="cuda", dtype=dtype, requires_grad=True)
    u0 = torch.rand(3, 37, device="cuda", dtype=dtype, requires_grad=True)
    spikes, state = pysnn.ops.lif(x, 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode, u0=u0, return_state=True)
    (spikes.sum() + state.sum()).backward()
    # no u0; the membrane's gradient enters the sweep, the state's does not
    x = torch.rand(5, 3, 37, device="cuda", dtype=dtype, requires_grad=True)
    spikes, membrane = pysnn.ops.lif(x, 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode, return_membrane=True)
    (spikes.sum() + membrane.square().sum()).backward()
    # direct coding: a stride-0 input over time, read as one row both ways
    row = torch.rand(3, 37, device="cuda", dtype=dtype, requires_grad=True)
    pysnn.ops.lif(row.expand(5, 3, 37), 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode).sum().backward()
    # the repeated-input ops: one step driven 5 times, its gradient summed in the kernel
    spikes, state = pysnn.ops.lif(
        row, 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode, u0=u0, steps=5, return_state=True
    )
    (spikes.sum() + state.sum()).backward()
    # the LIF fused with a 2×2 max pool: a sequence, and one step repeated 5 times
    maps = torch.rand(5, 3, 6, 10, device="cuda", dtype=dtype, requires_grad=True)
    map_u0 = torch.rand(3, 6, 10, device="cuda", dtype=dtype, requires_grad=True)
    for x, steps in ((maps, None), (maps[0], 5)):
        pooled, state = pysnn.ops.lif_max_pool2d(
            x, 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode, u0=map_u0, steps=steps, return_state=True
        )
        (pooled.sum() + state.sum()).backward()
empty = torch.rand(4, 0, 3, device="cuda", requires_grad=True)
pysnn.ops.lif(empty, 0.5, 1.0).sum().backward()
for m in (37, 300):  # one partial block of rows; more rows than one block's 256 threads
    for kind in ("gaussian", "laplacian", "cosine", "sigmoid", "linear"):
        z = torch.rand(m, 5, device="cuda", requires_grad=True)
        pysnn.ops.kernel_matrix(z, kind=kind).sum().backward()
    kx = pysnn.ops.kernel_matrix(torch.rand(m, 20, device="cuda"))
    ky = pysnn.ops.kernel_matrix(torch.rand(m, 4, device="cuda"), kind="cosine")
    for estimator in ("approx", "biased", "unbiased"):
        pysnn.ops.hsic(kx, ky, estimator=estimator).item()
        mod = pysnn.ops.hsic_modulator(kx, ky, estimator=estimator)
    rates = torch.rand(m, 300, device="cuda", requires_grad=True)
    pysnn.ops.hsic_loss(rates, mod).backward()
    pysnn.ops.hsic_post_signal(torch.rand(3, m, 300, device="cuda"), rates.detach(), mod)
    pysnn.ops.hsic_update(
        torch.rand(3, m, 11, device="cuda", dtype=torch.bfloat16),
        torch.rand(3, m, 300, device="cuda", dtype=torch.bfloat16),
        rates.detach().bfloat16(),
        mod,
    )
torch.cuda.synchronize()
print("sanitizer workload done")
