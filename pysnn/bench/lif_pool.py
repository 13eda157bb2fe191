"""LIF + 2×2 max pool benchmark: `pysnn.ops.lif_max_pool2d` (one op) against
the same computation as two ops (pysnn's fused LIF, then `F.max_pool2d`),
the eager reference, torch.compile(reference) and, with --peers, SpikingJelly's
multi-step LIFNode and snnTorch's Leaky each followed by `F.max_pool2d`,
forward and forward+backward side by side in one run, on a spiking conv
layer's map [T, B, C, H, W]. Also what each keeps for its backward
(`saved_MB`: the tensors autograd saves, as `pysnn bench train` would see
them in a step's peak)."""

from __future__ import annotations

import argparse
from typing import Callable, Dict, Sequence

import torch

from .. import cpu_memory, ops, reference
from ..reference.lif import max_pool_last_2x2
from .lif import (
    DECAY,
    PEERS,
    THRESHOLD,
    _forward,
    _forward_backward,
    add_neuron_bench_arguments,
    report_missing_peers,
)
from .timing import JsonRows, compare, format_table


def pooled(lif: Callable) -> Callable:
    """x [T, ..., H, W] → F.max_pool2d(lif(x, decay, threshold), 2), as two ops."""

    def run(x, decay, threshold):
        return max_pool_last_2x2(lif(x, decay, threshold))

    return run


def saved_megabytes(fn: Callable, x: torch.Tensor) -> float:
    """MB of the distinct storages autograd saves for fn(x)'s backward."""
    storages: Dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x, DECAY, THRESHOLD)
    del out
    return round(sum(storages.values()) / 1e6, 1)


def run(
    steps: Sequence[int] = (4, 10, 32),
    shape: Sequence[int] = (64, 16, 32, 32),
    device: str = "cpu",
    rounds: int = 7,
    compiled: bool = True,
    peers: bool = False,
    on_row: Callable[[dict], None] = lambda row: None,
) -> list[dict]:
    dev = torch.device(device)
    impls: Dict[str, Callable] = {
        "fused": ops.lif_max_pool2d,
        "two_ops": pooled(ops.lif),
        "eager": reference.lif_max_pool2d,
    }
    if compiled:
        impls["compiled"] = torch.compile(reference.lif_max_pool2d, dynamic=False)
    for name, peer in PEERS.items() if peers else ():
        fn = peer()
        if fn is not None:
            impls[name] = pooled(fn)
    rows = []
    for T in steps:
        x = (torch.rand(T, *shape, device=dev) * THRESHOLD).requires_grad_()
        grad = torch.randn(T, *shape[:-2], shape[-2] // 2, shape[-1] // 2, device=dev)
        saved = {name: saved_megabytes(fn, x) for name, fn in impls.items()}
        for mode in ("forward", "forward+backward"):
            fns = {
                name: (_forward(fn, x) if mode == "forward" else _forward_backward(fn, x, grad))
                for name, fn in impls.items()
            }
            times = compare(fns, dev, rounds=rounds)
            row = {"T": T, "shape": "x".join(map(str, shape)), "mode": mode, "device": device}
            row.update({f"{name}_ms": round(1e3 * t, 3) for name, t in times.items()})
            row.update({f"{name}/fused": round(times[name] / times["fused"], 2) for name in impls if name != "fused"})
            if mode == "forward+backward":
                row.update({f"{name}_saved_MB": mb for name, mb in saved.items()})
            rows.append(row)
            on_row(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn bench lif-pool", description=__doc__)
    add_neuron_bench_arguments(
        parser, "add SpikingJelly's LIFNode and snnTorch's Leaky, each then F.max_pool2d, where installed"
    )
    parser.add_argument(
        "--shape", type=int, nargs=4, default=[64, 16, 32, 32], metavar=("B", "C", "H", "W"), help="one step's map"
    )
    args = parser.parse_args(argv)
    if args.shape[2] % 2 or args.shape[3] % 2:
        parser.error(f"--shape: H and W must be even (a 2x2 pool of whole windows), got {args.shape}")
    cpu_memory.apply(args.cpu_memory)
    rows = run(
        args.steps,
        args.shape,
        args.device,
        rounds=args.rounds,
        compiled=not args.no_compile,
        peers=args.peers,
        on_row=JsonRows(args.json),
    )
    report_missing_peers(rows, args.peers)
    names = ["two_ops", "eager", "compiled", "spikingjelly", "snntorch"]
    columns = ["T", "mode", "fused_ms", *(f"{n}_ms" for n in names), *(f"{n}/fused" for n in names)]
    columns += ["fused_saved_MB", *(f"{n}_saved_MB" for n in names)]
    print(format_table(rows, [c for c in columns if any(c in r for r in rows)]))


if __name__ == "__main__":
    main()
