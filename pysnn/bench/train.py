"""End-to-end training throughput: samples per second of one rule's training
step with `--backend fused` against `--backend reference`, and each rule's
peak memory of one step (the second, in a fresh process per cell: the
optimiser's state exists and is not counted), measured side by side
in one run, for each `--update` mode of the local rules and each
`--timesteps` T, with each row's speed and memory relative to BPTT's at the
same T."""

from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence

import torch

from .. import cpu_memory
from ..config import TrainConfig
from ..learning import make_trainer
from ..learning.optim import make_optimizer
from ..models import build_model
from . import memory
from . import peers as peers_module
from .timing import JsonRows, add_cpu_memory_argument, compare, format_table

SHAPES = {"mlp": (1, 28, 28), "cnn": (1, 28, 28), "vgg8": (1, 28, 28)}


def _network(rule, model, backend, batch, timesteps, width_mult, hidden, device, update="final", low_memory=None):
    """The config and the freshly seeded network of one benchmark case."""
    torch.manual_seed(0)
    config = TrainConfig(
        rule=rule,
        update=update,
        low_memory=low_memory,
        model=model,
        backend=backend,
        timesteps=timesteps,
        hidden=list(hidden),
        width_mult=width_mult,
        batch_size=batch,
        device=device,
    )
    return config, build_model(config, SHAPES[model], 10).to(device)


def _random_batch(model: str, batch: int, device: str):
    """Random 28×28 images and labels (drawn after the trainer is built: its
    modules take their initial weights from the same seeded stream)."""
    return torch.rand(batch, *SHAPES[model], device=device), torch.arange(batch, device=device) % 10


def step_case(
    rule: str,
    model: str = "mlp",
    backend: str = "fused",
    batch: int = 64,
    timesteps: int = 10,
    width_mult: float = 1.0,
    hidden: Sequence[int] = (1024,),
    device: str = "cpu",
    update: str = "final",
    low_memory: Optional[bool] = None,
):
    """A callable running one training step of `rule` on random 28×28 images."""
    config, net = _network(rule, model, backend, batch, timesteps, width_mult, hidden, device, update, low_memory)
    trainer = make_trainer(net, config, 10, SHAPES[model])
    trainer.aux.to(device)
    trainer.train()
    images, labels = _random_batch(model, batch, device)

    def step():
        return trainer.step(images, labels)

    step.net = net  # for tests: the network the step trains
    return step


def peer_step_case(
    peer: str,
    model: str = "mlp",
    batch: int = 64,
    timesteps: int = 10,
    width_mult: float = 1.0,
    hidden: Sequence[int] = (1024,),
    device: str = "cpu",
):
    """`step_case`'s BPTT step with `peer`'s neuron in place of pysnn's
    (pysnn.bench.peers); None if the peer is not installed."""
    config, net = _network("bptt", model, "fused", batch, timesteps, width_mult, hidden, device)
    neurons = peers_module.peer_neurons(peer, len(net.blocks), config.decay, config.threshold, config.alpha)
    if neurons is None:
        return None
    step = peers_module.bptt_step(
        net, neurons, make_optimizer(net.parameters(), config), *_random_batch(model, batch, device)
    )
    step.net = net  # for tests: the network the step trains
    return step


def _step_peak_mb(fn, dev: torch.device, factory: str, **kwargs) -> float:
    """The steady-state peak of a step: on CUDA in this process, on the CPU in a
    fresh one built by `factory(**kwargs)` (pysnn.bench.memory)."""
    peak = memory.cuda_peak(fn, dev) if dev.type == "cuda" else memory.cpu_peak(factory, warmup=True, **kwargs)
    return round(peak / 2**20, 1)


def run(
    rules: Sequence[str] = ("hll", "hbh", "bptt"),
    model: str = "mlp",
    batch: int = 64,
    timesteps: Sequence[int] = (10,),
    hidden: Sequence[int] = (1024,),
    width_mult: float = 1.0,
    device: str = "cpu",
    rounds: int = 5,
    measure_memory: bool = True,
    updates: Sequence[str] = ("final",),
    on_row: Callable[[dict], None] = lambda row: None,
    peers: bool = False,
    low_memory: Sequence[Optional[bool]] = (None,),
) -> list[dict]:
    dev = torch.device(device)
    rows = []
    for steps in timesteps:
        for saving in low_memory:
            for rule in rules:
                for update in updates if rule != "bptt" else ("final",):
                    row = _measure_cell(
                        rule,
                        update,
                        model,
                        batch,
                        steps,
                        hidden,
                        width_mult,
                        device,
                        dev,
                        rounds,
                        measure_memory,
                        saving,
                    )
                    rows.append(row)
                    on_row(row)
                    print(format_table([row], list(row)), flush=True)
        for row in (
            _measure_peers(model, batch, steps, hidden, width_mult, device, dev, rounds, measure_memory, low_memory[0])
            if peers
            else []
        ):
            rows.append(row)
            on_row(row)
            print(format_table([row], list(row)), flush=True)
    for row in rows:  # relative to BPTT at the same T and --low-memory, where it was measured
        bptt = next(
            (
                r
                for r in rows
                if r["rule"] == "bptt"
                and r["impl"] == "pysnn"
                and r["T"] == row["T"]
                and _requested(r) == _requested(row)
            ),
            None,
        )
        if bptt is not None:
            row["fused_vs_bptt"] = round(row["fused_samples_s"] / bptt["fused_samples_s"], 2)
            if "step_peak_MB" in row and bptt.get("step_peak_MB"):
                row["peak_vs_bptt"] = round(row["step_peak_MB"] / bptt["step_peak_MB"], 2)
    return rows


def _measure_cell(
    rule, update, model, batch, steps, hidden, width_mult, device, dev, rounds, measure_memory, low_memory
) -> dict:
    fns = {
        b: step_case(rule, model, b, batch, steps, width_mult, hidden, device, update, low_memory)
        for b in ("fused", "reference")
    }
    times = compare(fns, dev, rounds=rounds, warmup=1)
    row = {
        "impl": "pysnn",
        "rule": rule,
        "update": update,
        "model": model,
        "batch": batch,
        "T": steps,
        "low_memory": _mode_label(low_memory, update),
        "fused_samples_s": round(batch / times["fused"], 1),
        "reference_samples_s": round(batch / times["reference"], 1),
        "fused_speedup": round(times["reference"] / times["fused"], 2),
    }
    if measure_memory:
        row["step_peak_MB"] = _step_peak_mb(
            fns["fused"],
            dev,
            f"{__name__}:step_case",
            rule=rule,
            model=model,
            backend="fused",
            batch=batch,
            timesteps=steps,
            width_mult=width_mult,
            hidden=list(hidden),
            update=update,
            low_memory=low_memory,
        )
    return row


MODES = {"auto": None, "on": True, "off": False}


def _mode_label(low_memory: Optional[bool], update: str) -> str:
    """How a row's --low-memory reads: on, off, or auto with what it resolved to."""
    if low_memory is not None:
        return "on" if low_memory else "off"
    return "auto " + ("on" if TrainConfig(update=update).uses_low_memory() else "off")


def _requested(row: dict) -> str:
    return row["low_memory"].split()[0]


def _measure_peers(
    model, batch, steps, hidden, width_mult, device, dev, rounds, measure_memory, low_memory
) -> list[dict]:
    """pysnn's BPTT step against the same step with each installed peer's
    neuron (pysnn.bench.peers), interleaved in one comparison."""
    fns = {"pysnn": step_case("bptt", model, "fused", batch, steps, width_mult, hidden, device, low_memory=low_memory)}
    for peer in peers_module.PEERS:
        fn = peer_step_case(peer, model, batch, steps, width_mult, hidden, device)
        if fn is not None:
            fns[peer] = fn
    if len(fns) == 1:
        print("no peer installed (pip install --no-deps spikingjelly loguru snntorch)")
        return []
    times = compare(fns, dev, rounds=rounds, warmup=1)
    rows = []
    for peer in fns:
        if peer == "pysnn":
            continue
        row = {
            "impl": peer,
            "rule": "bptt",
            "update": "final",
            "model": model,
            "batch": batch,
            "T": steps,
            "low_memory": _mode_label(low_memory, "final"),
            "fused_samples_s": round(batch / times[peer], 1),
            "pysnn_speedup": round(times[peer] / times["pysnn"], 2),
        }
        if measure_memory:
            row["step_peak_MB"] = _step_peak_mb(
                fns[peer],
                dev,
                f"{__name__}:peer_step_case",
                peer=peer,
                model=model,
                batch=batch,
                timesteps=steps,
                width_mult=width_mult,
                hidden=list(hidden),
            )
        rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn bench train", description=__doc__)
    parser.add_argument("--rules", nargs="+", default=["hll", "hbh", "bptt"])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "vgg8"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[10], help="one or more T")
    parser.add_argument(
        "--update",
        nargs="+",
        default=["final"],
        choices=["final", "per-step-pred", "realtime"],
        help="the local rules' update modes to measure (BPTT is always final)",
    )
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024])
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--low-memory",
        nargs="+",
        default=["auto"],
        choices=list(MODES),
        help="pysnn's steps with pysnn train's default (auto: on for real-time updates), with the "
        "memory-saving passes (on) or without (off); each row is relative to BPTT in the same mode, "
        "and peers are compared with the first",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="add the BPTT step with SpikingJelly's and snnTorch's neurons, where installed (pysnn.bench.peers)",
    )
    add_cpu_memory_argument(parser)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    cpu_memory.apply(args.cpu_memory)
    sink = JsonRows(args.json)
    rows = run(
        args.rules,
        args.model,
        args.batch,
        args.timesteps,
        args.hidden,
        args.width_mult,
        args.device,
        args.rounds,
        not args.no_memory,
        args.update,
        on_row=sink,
        peers=args.peers,
        low_memory=[MODES[mode] for mode in dict.fromkeys(args.low_memory)],
    )
    sink.write()  # with the columns relative to BPTT added at the end
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print("\n" + format_table(rows, columns))


if __name__ == "__main__":
    main()
