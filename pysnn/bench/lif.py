"""LIF benchmark: the fused op against the eager reference and
torch.compile(reference), forward and forward+backward, ratios side by side."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

import torch

from .. import ops, reference
from .timing import JsonRows, compare, format_table

DECAY, THRESHOLD = 0.75, 0.6


def _forward(fn, x):
    def run():
        with torch.no_grad():
            fn(x, DECAY, THRESHOLD)
    return run


def _forward_backward(fn, x, grad):
    def run():
        x.grad = None
        fn(x, DECAY, THRESHOLD).backward(grad)
    return run


def run(steps: Sequence[int] = (4, 10, 32), neurons: int = 1 << 20, device: str = "cpu",
        dtype: torch.dtype = torch.float32, rounds: int = 7, compiled: bool = True,
        on_row: Callable[[dict], None] = lambda row: None) -> list[dict]:
    dev = torch.device(device)
    compiled_reference = torch.compile(reference.lif, dynamic=False) if compiled else None
    rows = []
    for T in steps:
        x = (torch.rand(T, neurons, device=dev, dtype=dtype) * THRESHOLD).requires_grad_()
        grad = torch.randn_like(x)
        impls = {"fused": ops.lif, "eager": reference.lif}
        if compiled_reference is not None:
            impls["compiled"] = compiled_reference
        for mode in ("forward", "forward+backward"):
            fns = {name: (_forward(fn, x) if mode == "forward" else _forward_backward(fn, x, grad))
                   for name, fn in impls.items()}
            times = compare(fns, dev, rounds=rounds)
            row = {"T": T, "neurons": neurons, "mode": mode, "device": device, "dtype": str(dtype)}
            row.update({f"{name}_ms": round(1e3 * t, 3) for name, t in times.items()})
            row["eager/fused"] = round(times["eager"] / times["fused"], 2)
            if "compiled" in times:
                row["compiled/fused"] = round(times["compiled"] / times["fused"], 2)
            if dev.type == "cuda":
                # Minimum traffic: forward reads x and writes spikes; forward+backward
                # also writes and rereads the membrane, reads the gradient, writes dL/dx.
                passes = 2 if mode == "forward" else 6
                row["fused_GBps"] = round(passes * _bytes(x) / times["fused"] / 1e9, 1)
                row["copy_GBps"] = copy_bandwidth(x)
            rows.append(row)
            on_row(row)
    return rows


def _bytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()


def copy_bandwidth(x: torch.Tensor) -> float:
    """GB/s of a device-to-device copy of x (bytes read plus written)."""
    src, dst = x.detach().clone(), torch.empty_like(x)
    seconds = compare({"copy": lambda: dst.copy_(src)}, x.device)["copy"]
    return round(2 * _bytes(x) / seconds / 1e9, 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10, 32])
    parser.add_argument("--neurons", type=int, default=1 << 20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = run(args.steps, args.neurons, args.device, rounds=args.rounds, compiled=not args.no_compile,
               on_row=JsonRows(args.json))
    columns = ["T", "mode", "fused_ms", "eager_ms", "compiled_ms", "eager/fused", "compiled/fused",
               "fused_GBps", "copy_GBps"]
    print(format_table(rows, [c for c in columns if any(c in r for r in rows)]))


if __name__ == "__main__":
    main()
