"""HSIC benchmark: fused `hsic_loss` forward+backward and `hsic_update`
against the autograd reference (eager and torch.compile), float32, with
peak memory, measured side by side in one run."""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

import torch

from .. import ops, reference
from . import memory
from .timing import JsonRows, compare, format_table

STEPS, N_IN = 10, 784  # hsic_update: T = 10 steps into a layer fed by 784 inputs


def _inputs(m: int, d: int, device: str, seed: int = 0):
    gen = torch.Generator(device=device).manual_seed(seed)
    rates = (torch.rand(m, d, device=device, generator=gen) < 0.2).float()
    kx = ops.kernel_matrix(torch.rand(m, 784, device=device, generator=gen), sigma_scaling="dim")
    labels = torch.nn.functional.one_hot(torch.arange(m, device=device) % 10, 10).float()
    modulator = ops.hsic_modulator(kx, ops.kernel_matrix(labels - 0.1, kind="cosine"))
    return rates, modulator, gen


def loss_case(impl: str, m: int, d: int, device: str = "cpu"):
    """A callable running hsic_loss forward+backward with `impl`."""
    rates, modulator, _ = _inputs(m, d, device)
    z = rates.requires_grad_()
    lib = ops if impl == "fused" else reference
    fn = lib.hsic_loss if impl != "compiled" else torch.compile(reference.hsic_loss, dynamic=False)

    def run():
        z.grad = None
        fn(z, modulator, sigma_scaling="dim").backward()

    return run


def update_case(impl: str, m: int, d: int, device: str = "cpu"):
    """A callable running hsic_update (T = 10, 784 inputs) with `impl`."""
    rates, modulator, gen = _inputs(m, d, device)
    pre = (torch.rand(STEPS, m, N_IN, device=device, generator=gen) < 0.2).float()
    post_grad = torch.rand(STEPS, m, d, device=device, generator=gen)
    lib = ops if impl == "fused" else reference
    fn = lib.hsic_update if impl != "compiled" else torch.compile(reference.hsic_update, dynamic=False)
    return lambda: fn(pre, post_grad, rates, modulator, sigma_scaling="dim")


CASES = {"hsic_loss fwd+bwd": loss_case, "hsic_update": update_case}


def run(
    sizes: Sequence[int] = (64, 256, 1024),
    dims: Sequence[int] = (1024, 16384),
    device: str = "cpu",
    rounds: int = 5,
    compiled: bool = True,
    measure_memory: bool = True,
    on_row: Callable[[dict], None] = lambda row: None,
) -> list[dict]:
    dev = torch.device(device)
    impls = ["fused", "eager"] + (["compiled"] if compiled else [])
    rows = []
    for op, factory in CASES.items():
        for m in sizes:
            for d in dims:
                fns = {impl: factory(impl, m, d, device) for impl in impls}
                times = compare(fns, dev, rounds=rounds, warmup=1)
                row = {"op": op, "m": m, "d": d}
                row.update({f"{k}_ms": round(1e3 * t, 2) for k, t in times.items()})
                row["eager/fused"] = round(times["eager"] / times["fused"], 2)
                if "compiled" in times:
                    row["compiled/fused"] = round(times["compiled"] / times["fused"], 2)
                if measure_memory:
                    for impl in ("fused", "eager"):
                        peak = (
                            memory.cuda_peak(fns[impl], dev)
                            if dev.type == "cuda"
                            else memory.cpu_peak(f"{__name__}:{factory.__name__}", impl=impl, m=m, d=d)
                        )
                        row[f"{impl}_peak_MB"] = round(peak / 2**20, 1)
                rows.append(row)
                on_row(row)
                print(format_table([row], list(row)), flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn bench hsic", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="batch sizes m")
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 16384], help="feature counts d")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(
        args.sizes,
        args.dims,
        args.device,
        args.rounds,
        not args.no_compile,
        not args.no_memory,
        on_row=JsonRows(args.json),
    )
    columns = [
        "op",
        "m",
        "d",
        "fused_ms",
        "eager_ms",
        "compiled_ms",
        "eager/fused",
        "compiled/fused",
        "fused_peak_MB",
        "eager_peak_MB",
    ]
    print("\n" + format_table(rows, [c for c in columns if any(c in r for r in rows)]))


if __name__ == "__main__":
    main()
