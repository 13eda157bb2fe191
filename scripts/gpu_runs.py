"""Checks that only a GPU can run, for scripts/gpu_check.sh; each result is
printed and written to the JSON file as soon as it is known.

    python scripts/gpu_runs.py OUT.json

* every rule trains 30 steps of the MLP on CUDA with the fused and the
  reference backend from the same seed: losses must agree;
* torch.compile of a BPTT model step on CUDA against eager;
* the LIF op on more than 2^31 elements (64-bit indexing), checked against
  the same neurons run alone, when the GPU has the memory;
* hsic_update with TF32 matmuls on, against float64.
"""

import json
import os
import sys
import time
import traceback

import torch

import pysnn
from pysnn.bench.timing import JsonRows
from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model

# PYSNN_GPU_RUNS_DEVICE=cpu dry-runs the script on a machine without a GPU.
DEVICE = torch.device(os.environ.get("PYSNN_GPU_RUNS_DEVICE", "cuda"))
results = JsonRows(sys.argv[1] if len(sys.argv) > 1 else None)


def check(name):
    def wrap(fn):
        start = time.perf_counter()
        try:
            row = {"check": name, **fn()}
        except Exception as error:  # one failing check must not hide the others
            traceback.print_exc()
            row = {"check": name, "ok": False, "error": f"{type(error).__name__}: {error}"}
        row["seconds"] = round(time.perf_counter() - start, 2)
        print(json.dumps(row), flush=True)
        results(row)
        return fn

    return wrap


def trainer_losses(rule, backend, steps=30):
    torch.manual_seed(0)
    config = TrainConfig(rule=rule, backend=backend, hidden=[256], device=DEVICE.type, batch_size=64)
    model = build_model(config, (1, 28, 28), 10).to(DEVICE)
    trainer = make_trainer(model, config, 10, (1, 28, 28))
    trainer.aux.to(DEVICE)
    trainer.train()
    gen = torch.Generator(device=DEVICE).manual_seed(1)  # learnable: one noisy template per class
    templates = (torch.rand(10, 1, 28, 28, device=DEVICE, generator=gen) < 0.3).float()
    labels = torch.randint(0, 10, (steps, 64), device=DEVICE, generator=gen)
    images = 0.7 * templates[labels] + 0.3 * torch.rand(steps, 64, 1, 28, 28, device=DEVICE, generator=gen)
    return [trainer.step(images[i], labels[i])[0] for i in range(steps)]


for rule in ("hll", "hbh", "bptt"):

    @check(f"train {rule} fused vs reference")
    def _(rule=rule):
        # Rounding differs between backends and grows over steps: compare the
        # first step tightly and the end of the run loosely; both must learn.
        fused, ref = trainer_losses(rule, "fused"), trainer_losses(rule, "reference")
        end_fused, end_ref = sum(fused[-5:]) / 5, sum(ref[-5:]) / 5
        ok = abs(fused[0] - ref[0]) < 1e-3 and abs(end_fused - end_ref) < 0.1 * end_ref and end_fused < 0.5 * fused[0]
        return {"ok": ok, "first_loss": [fused[0], ref[0]], "last5_mean_loss": [end_fused, end_ref]}


@check("torch.compile BPTT model step")
def _():
    torch.manual_seed(0)
    config = TrainConfig(rule="bptt", hidden=[256], device=DEVICE.type)
    model = build_model(config, (1, 28, 28), 10).to(DEVICE)
    images = torch.rand(32, 1, 28, 28, device=DEVICE)

    def step(x):
        logits = model(x)
        logits.logsumexp(1).sum().backward()
        return logits

    eager = step(images).detach()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(step)(images).detach()
    gap = max((a - p.grad).abs().max().item() for a, p in zip(grads, model.parameters()))
    return {
        "ok": torch.allclose(eager, compiled, atol=1e-4) and gap < 1e-3,
        "max_logit_gap": (eager - compiled).abs().max().item(),
        "max_grad_gap": gap,
    }


@check("lif above 2^31 elements")
def _():
    T, n = 2, (1 << 30) + 4099  # 2^31 + 8198 elements, float16: 4 GiB per tensor
    free = torch.cuda.mem_get_info()[0] if DEVICE.type == "cuda" else 0
    if free < 6 * 2 * T * n:
        return {"ok": True, "skipped": f"needs about {6 * 2 * T * n / 2**30:.0f} GiB, {free / 2**30:.0f} free"}
    x = torch.rand(T, n, device=DEVICE, dtype=torch.float16)
    spikes = pysnn.ops.lif(x, 0.75, 0.6)
    tail = pysnn.ops.lif(x[:, -(1 << 20) :].contiguous(), 0.75, 0.6)
    ok = torch.equal(spikes[:, -(1 << 20) :], tail)
    return {"ok": bool(ok), "elements": T * n}


@check("hsic_update under TF32")
def _():
    torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator(device=DEVICE).manual_seed(0)
    m, d = 256, 1024
    rates = (torch.rand(m, d, device=DEVICE, generator=gen) < 0.2).float()
    pre = (torch.rand(10, m, 784, device=DEVICE, generator=gen) < 0.2).float()
    post = torch.rand(10, m, d, device=DEVICE, generator=gen)
    kx = pysnn.ops.kernel_matrix(torch.rand(m, 784, device=DEVICE, generator=gen), sigma_scaling="dim")
    ky = pysnn.ops.kernel_matrix(
        torch.nn.functional.one_hot(torch.arange(m, device=DEVICE) % 10, 10) - 0.1, kind="cosine"
    )
    mod = pysnn.ops.hsic_modulator(kx, ky)
    tf32 = pysnn.ops.hsic_update(pre, post, rates, mod, sigma_scaling="dim")
    torch.backends.cuda.matmul.allow_tf32 = False
    exact = pysnn.reference.hsic_update(pre.double(), post.double(), rates.double(), mod.double(), sigma_scaling="dim")
    rel = [((a.double() - b).norm() / b.norm()).item() for a, b in zip(tf32, exact)]
    return {"ok": max(rel) < 1e-2, "relative_error_weight_bias_loss": rel}


print("gpu runs done:", sum(r.get("ok", False) for r in results.rows), "of", len(results.rows), "ok")
