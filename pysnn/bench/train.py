"""End-to-end training throughput: samples per second of one rule's training
step with `--backend fused` against `--backend reference`, and each rule's
peak memory of one step, measured side by side in one run."""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

import torch

from .. import cpu_memory
from ..config import TrainConfig
from ..learning import make_trainer
from ..models import build_model
from . import memory
from .timing import JsonRows, add_cpu_memory_argument, compare, format_table

SHAPES = {"mlp": (1, 28, 28), "cnn": (1, 28, 28), "vgg8": (1, 28, 28)}


def step_case(
    rule: str,
    model: str = "mlp",
    backend: str = "fused",
    batch: int = 64,
    timesteps: int = 10,
    width_mult: float = 1.0,
    hidden: Sequence[int] = (1024,),
    device: str = "cpu",
):
    """A callable running one training step of `rule` on random 28×28 images."""
    torch.manual_seed(0)
    config = TrainConfig(
        rule=rule,
        model=model,
        backend=backend,
        timesteps=timesteps,
        hidden=list(hidden),
        width_mult=width_mult,
        batch_size=batch,
        device=device,
    )
    shape = SHAPES[model]
    net = build_model(config, shape, 10).to(device)
    trainer = make_trainer(net, config, 10, shape)
    trainer.aux.to(device)
    trainer.train()
    images = torch.rand(batch, *shape, device=device)
    labels = torch.arange(batch, device=device) % 10
    return lambda: trainer.step(images, labels)


def run(
    rules: Sequence[str] = ("hll", "hbh", "bptt"),
    model: str = "mlp",
    batch: int = 64,
    timesteps: int = 10,
    hidden: Sequence[int] = (1024,),
    width_mult: float = 1.0,
    device: str = "cpu",
    rounds: int = 5,
    measure_memory: bool = True,
    on_row: Callable[[dict], None] = lambda row: None,
) -> list[dict]:
    dev = torch.device(device)
    rows = []
    for rule in rules:
        fns = {
            b: step_case(rule, model, b, batch, timesteps, width_mult, hidden, device) for b in ("fused", "reference")
        }
        times = compare(fns, dev, rounds=rounds, warmup=1)
        row = {
            "rule": rule,
            "model": model,
            "batch": batch,
            "T": timesteps,
            "fused_samples_s": round(batch / times["fused"], 1),
            "reference_samples_s": round(batch / times["reference"], 1),
            "fused_speedup": round(times["reference"] / times["fused"], 2),
        }
        if measure_memory:
            kwargs = dict(
                rule=rule,
                model=model,
                backend="fused",
                batch=batch,
                timesteps=timesteps,
                width_mult=width_mult,
                hidden=list(hidden),
            )
            peak = (
                memory.cuda_peak(fns["fused"], dev)
                if dev.type == "cuda"
                else memory.cpu_peak(f"{__name__}:step_case", **kwargs)
            )
            row["step_peak_MB"] = round(peak / 2**20, 1)
        rows.append(row)
        on_row(row)
        print(format_table([row], list(row)), flush=True)
    bptt = next((r for r in rows if r["rule"] == "bptt"), None)
    for row in rows if bptt else []:
        row["fused_vs_bptt"] = round(row["fused_samples_s"] / bptt["fused_samples_s"], 2)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn bench train", description=__doc__)
    parser.add_argument("--rules", nargs="+", default=["hll", "hbh", "bptt"])
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "vgg8"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024])
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-memory", action="store_true")
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
        on_row=sink,
    )
    sink.write()  # with the fused_vs_bptt column added at the end
    print("\n" + format_table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
