"""LIF benchmark: the fused op against the eager reference,
torch.compile(reference) and, with --peers, SpikingJelly's multi-step LIFNode
and snnTorch's Leaky (where installed: `pip install --no-deps spikingjelly
loguru snntorch`), forward and forward+backward, side by side in one run. Also the fused op's previous
backward (saved membrane, what `return_membrane=True` still uses), the
achieved bandwidth against a measured copy, the floor (the least memory
traffic at that bandwidth; for forward+backward also with the compute of
one sigmoid per element, which the default surrogate's backward cannot
avoid), the compute floor (the fused kernels on a slice of the layer that
stays in cache, scaled to the full layer: what the op costs if memory were
free), and the share of the fused op's time that goes to page faults (the
faults one call takes, at the measured cost of a fault). `--cpu-memory`
chooses what is kept for reuse (pysnn.cpu_memory)."""

from __future__ import annotations

import argparse
import inspect
from typing import Callable, Dict, Optional, Sequence

try:
    import resource  # page-fault counts (POSIX)
except ImportError:  # pragma: no cover
    resource = None

import torch

from .. import cpu_memory, ops, reference
from . import peers as peer_library
from .timing import JsonRows, add_cpu_memory_argument, compare, format_table

DECAY, THRESHOLD = 0.75, 0.6
# Passes over an x-sized array at the least: forward reads x, writes spikes;
# the backward reads x, the output gradient, writes dL/dx.
PASSES = {"forward": 2, "forward+backward": 5}
# Each array of the compute-floor slice: four of them (x, spikes, the output
# gradient, dL/dx) stay in a server CPU's L3.
SLICE_BYTES = 2 << 20


def _saved_membrane(x, decay, threshold):
    return ops.lif(x, decay, threshold, return_membrane=True)[0]


SURROGATE_ALPHA = 4.0  # the peers' sigmoid slope: ops.lif's default alpha


def peer_lif(name: str):
    """A peer's neuron (pysnn.bench.peers: SpikingJelly's LIFNode as pysnn's
    neuron; snnTorch's Leaky stepped over T, timing only, as its reset
    subtracts the threshold outside the decay) as a function of (x, decay,
    threshold), a fresh neuron per call; None if the peer is not installed."""
    if peer_library.peer_neurons(name, 1, 0.5, 1.0, SURROGATE_ALPHA) is None:
        return None
    return lambda x, decay, threshold: peer_library.peer_neurons(name, 1, decay, threshold, SURROGATE_ALPHA)[0](x)


PEERS = {name: (lambda name=name: peer_lif(name)) for name in peer_library.PEERS}


def _forward(fn, x):
    def run():
        with torch.no_grad():
            fn(x, DECAY, THRESHOLD)

    return run


def _forward_backward(fn, x, grad):
    def run():
        fn(x, DECAY, THRESHOLD).backward(grad)
        x.grad = None  # each candidate pays for freeing its own gradient, not the one before it

    return run


def run(
    steps: Sequence[int] = (4, 10, 32),
    neurons: int = 1 << 20,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    rounds: int = 7,
    compiled: bool = True,
    peers: bool = False,
    on_row: Callable[[dict], None] = lambda row: None,
) -> list[dict]:
    dev = torch.device(device)
    impls: Dict[str, Callable] = {"fused": ops.lif, "saved": _saved_membrane, "eager": reference.lif}
    if compiled:
        impls["compiled"] = torch.compile(reference.lif, dynamic=False)
    for name, peer in PEERS.items() if peers else ():
        fn = peer()
        if fn is not None:
            impls[name] = fn
    rows = []
    for T in steps:
        x = (torch.rand(T, neurons, device=dev, dtype=dtype) * THRESHOLD).requires_grad_()
        grad = torch.randn_like(x)
        copy_gbps, fault_s = copy_bandwidth(x), page_fault_seconds(x)
        exp_s = surrogate_compute_seconds(x, copy_gbps)
        for mode in ("forward", "forward+backward"):
            fns = {
                name: (_forward(fn, x) if mode == "forward" else _forward_backward(fn, x, grad))
                for name, fn in impls.items()
            }
            times = compare(fns, dev, rounds=rounds)
            row = {"T": T, "neurons": neurons, "mode": mode, "device": device, "dtype": str(dtype)}
            row.update({f"{name}_ms": round(1e3 * t, 3) for name, t in times.items()})
            for name in impls:
                if name != "fused":
                    row[f"{name}/fused"] = round(times[name] / times["fused"], 2)
            floor = PASSES[mode] * _bytes(x) / (copy_gbps * 1e9)
            row["floor_ms"] = round(1e3 * floor, 3)
            row["fused/floor"] = round(times["fused"] / floor, 2)
            if mode == "forward+backward":  # the backward must also evaluate the surrogate once per element
                row["floor_exp_ms"] = round(1e3 * (floor + exp_s), 3)
                row["fused/floor_exp"] = round(times["fused"] / (floor + exp_s), 2)
            if dev.type == "cpu":
                compute = compute_floor_seconds(x, mode)
                row["compute_ms"] = round(1e3 * compute, 3)
                row["fused/max(floor,compute)"] = round(times["fused"] / max(floor, compute), 2)
            row["fused_GBps"] = round(PASSES[mode] * _bytes(x) / times["fused"] / 1e9, 1)
            row["copy_GBps"] = copy_gbps
            faults = page_faults(fns["fused"]) if dev.type == "cpu" else None
            if faults is not None:
                row["fused_faults"] = faults
            if faults is not None and fault_s is not None:
                row["alloc_share"] = round(faults * fault_s / times["fused"], 2)
            rows.append(row)
            on_row(row)
    return rows


def _bytes(x: torch.Tensor) -> int:
    return x.numel() * x.element_size()


def copy_bandwidth(x: torch.Tensor) -> float:
    """GB/s of a copy of x into a reused buffer (bytes read plus written)."""
    src, dst = x.detach().clone(), torch.empty_like(x)
    seconds = compare({"copy": lambda: dst.copy_(src)}, x.device)["copy"]
    return round(2 * _bytes(x) / seconds / 1e9, 1)


def surrogate_compute_seconds(x: torch.Tensor, copy_gbps: float) -> float:
    """What one vectorised sigmoid over x costs beyond its own memory traffic
    (torch.sigmoid into a reused buffer, less a copy's time): the compute
    floor of the sigmoid surrogate's backward."""
    src, dst = x.detach().clone(), torch.empty_like(x)
    seconds = compare({"sigmoid": lambda: torch.sigmoid(src, out=dst)}, x.device)["sigmoid"]
    return max(0.0, seconds - 2 * _bytes(x) / (copy_gbps * 1e9))


def _lif_defaults() -> tuple:
    """ops.lif's default surrogate, alpha and grad_mode: what the fused column runs."""
    parameters = inspect.signature(ops.lif).parameters
    return tuple(parameters[name].default for name in ("surrogate", "alpha", "grad_mode"))


def compute_floor_seconds(x: torch.Tensor, mode: str) -> float:
    """The fused kernels (no autograd) on a slice of x's neurons small enough
    for every array to stay in cache, scaled to all of x's neurons: the op's
    time if memory traffic cost nothing. Where it is near the measured time,
    the op is compute-bound and no change to its memory traffic can help."""
    T, neurons = x.shape[0], x[0].numel()
    width = min(neurons, max(1024, SLICE_BYTES // (T * x.element_size())))
    xs = x.detach().reshape(T, neurons)[:, :width].contiguous()
    grad = torch.randn_like(xs)
    options = (DECAY, THRESHOLD, *_lif_defaults())

    def forward():
        torch.ops.pysnn.lif_forward(xs, *options, None, False)

    def forward_backward():
        forward()
        torch.ops.pysnn.lif_backward_input(grad, None, xs, None, *options)

    seconds = compare({"slice": forward if mode == "forward" else forward_backward}, x.device)["slice"]
    return seconds * neurons / width


def _minor_faults() -> Optional[int]:
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def page_faults(fn: Callable[[], object]) -> Optional[int]:
    """Minor page faults of the process during one call of fn."""
    before = _minor_faults()
    fn()
    after = _minor_faults()
    return None if before is None else after - before


def page_fault_seconds(x: torch.Tensor) -> Optional[float]:
    """Seconds per page fault on this machine, from a fresh x-sized buffer
    against a reused one (PyTorch's allocator as set; None on CUDA, or where
    faults cannot be counted or the fresh buffer took none)."""
    if x.device.type != "cpu" or resource is None:
        return None
    src, reused = x.detach().clone(), torch.empty_like(x)

    def fresh():
        torch.empty_like(src).copy_(src)

    times = compare({"fresh": fresh, "reused": lambda: reused.copy_(src)}, x.device)
    faults = page_faults(fresh)
    return max(0.0, times["fresh"] - times["reused"]) / faults if faults else None


def add_neuron_bench_arguments(parser: argparse.ArgumentParser, peers_help: str) -> None:
    """The options the neuron benchmarks (lif, lif-pool) share."""
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10, 32])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile(reference)")
    parser.add_argument("--peers", action="store_true", help=peers_help)
    add_cpu_memory_argument(parser)
    parser.add_argument("--json", help="also write the rows to this file")


def report_missing_peers(rows: list[dict], asked: bool) -> None:
    for name in PEERS:
        if asked and f"{name}_ms" not in rows[0]:
            print(f"--peers: {name} is not installed (pip install --no-deps {name}); no {name} column")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn bench lif", description=__doc__)
    add_neuron_bench_arguments(
        parser,
        "add the peers users would pick instead, where installed: SpikingJelly's LIFNode "
        "and snnTorch's Leaky (`pip install --no-deps spikingjelly loguru snntorch`)",
    )
    parser.add_argument("--neurons", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    cpu_memory.apply(args.cpu_memory)
    rows = run(
        args.steps,
        args.neurons,
        args.device,
        rounds=args.rounds,
        compiled=not args.no_compile,
        peers=args.peers,
        on_row=JsonRows(args.json),
    )
    report_missing_peers(rows, args.peers)
    columns = [
        "T",
        "mode",
        "fused_ms",
        "saved_ms",
        "eager_ms",
        "compiled_ms",
        "spikingjelly_ms",
        "snntorch_ms",
        "floor_ms",
        "saved/fused",
        "eager/fused",
        "compiled/fused",
        "spikingjelly/fused",
        "snntorch/fused",
        "fused/floor",
        "floor_exp_ms",
        "fused/floor_exp",
        "compute_ms",
        "fused/max(floor,compute)",
        "fused_GBps",
        "copy_GBps",
        "fused_faults",
        "alloc_share",
    ]
    print(format_table(rows, [c for c in columns if any(c in r for r in rows)]))


if __name__ == "__main__":
    main()
