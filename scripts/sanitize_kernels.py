"""Small runs of every CUDA kernel (LIF forward+backward for every surrogate,
grad mode and dtype; every HSIC op and kernel kind), to run under
`compute-sanitizer --tool memcheck`."""
import itertools

import torch

import pysnn
from pysnn._validation import GRAD_MODES, SURROGATES

for dtype, surrogate, grad_mode in itertools.product(
        (torch.float32, torch.float16, torch.bfloat16, torch.float64), SURROGATES, GRAD_MODES):
    x = torch.rand(5, 3, 37, device="cuda", dtype=dtype, requires_grad=True)
    u0 = torch.rand(3, 37, device="cuda", dtype=dtype, requires_grad=True)
    spikes, state = pysnn.ops.lif(x, 0.75, 0.6, surrogate=surrogate, grad_mode=grad_mode,
                                  u0=u0, return_state=True)
    (spikes.sum() + state.sum()).backward()
empty = torch.rand(4, 0, 3, device="cuda", requires_grad=True)
pysnn.ops.lif(empty, 0.5, 1.0).sum().backward()
for kind in ("gaussian", "laplacian", "cosine", "sigmoid", "linear"):
    z = torch.rand(37, 5, device="cuda", requires_grad=True)
    pysnn.ops.kernel_matrix(z, kind=kind).sum().backward()
kx = pysnn.ops.kernel_matrix(torch.rand(37, 20, device="cuda"))
ky = pysnn.ops.kernel_matrix(torch.rand(37, 4, device="cuda"), kind="cosine")
for estimator in ("approx", "biased", "unbiased"):
    pysnn.ops.hsic(kx, ky, estimator=estimator)
    mod = pysnn.ops.hsic_modulator(kx, ky, estimator=estimator)
rates = torch.rand(37, 300, device="cuda", requires_grad=True)
pysnn.ops.hsic_loss(rates, mod).backward()
pysnn.ops.hsic_update(torch.rand(3, 37, 11, device="cuda", dtype=torch.bfloat16),
                      torch.rand(3, 37, 300, device="cuda", dtype=torch.bfloat16),
                      rates.detach().bfloat16(), mod)
torch.cuda.synchronize()
print("sanitizer workload done")
