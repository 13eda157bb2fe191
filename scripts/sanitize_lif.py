"""A small LIF forward+backward on CUDA for every surrogate, grad mode and
dtype, to run under `compute-sanitizer --tool memcheck`."""
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
torch.cuda.synchronize()
print("sanitizer workload done")
