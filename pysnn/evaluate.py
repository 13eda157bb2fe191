"""`pysnn eval RUN_DIR`: a trained run's accuracy, clean and under input
noise, with per-layer firing rates, synaptic operations and energy."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from . import data as datasets
from .analysis import ENERGY_PJ, activity, add_noise
from .models import load_trained
from .run import evaluate


def parse_sweep(spec: str) -> List[str]:
    """`gaussian:0,0.1,0.2` → ["gaussian:0", "gaussian:0.1", "gaussian:0.2"], each level checked."""
    kind, _, levels = spec.partition(":")
    if kind not in ("gaussian", "salt-pepper") or not levels:
        raise ValueError(f"--noise-sweep must be gaussian:L1,L2,... or salt-pepper:P1,P2,..., got '{spec}'")
    specs = []
    for level in levels.split(","):
        try:
            value = float(level)
        except ValueError:
            raise ValueError(f"--noise-sweep: '{level}' in '{spec}' is not a number") from None
        if not (math.isfinite(value) and value >= 0 and (kind == "gaussian" or value <= 1)):
            raise ValueError(
                f"--noise-sweep: level {level} of {kind} is out of range "
                f"({'>= 0' if kind == 'gaussian' else 'in [0, 1]'})"
            )
        specs.append(f"{kind}:{level}")
    return specs


def noisy_accuracy(model, config, dataset, spec: str, device: str, seed: int = 0, space: str = "pixel") -> float:
    """Test accuracy with `spec` noise on every test image; the same noise for the same seed."""
    images = dataset.test.images
    pixel_std = float(images.std()) if space == "normalised" else 1.0  # only normalised space needs it
    noisy = add_noise(images, spec, torch.Generator().manual_seed(seed), space, pixel_std)
    _, acc = evaluate(model, datasets.Split(noisy, dataset.test.labels), config.batch_size, device)
    return acc


def run(
    run_dir: str,
    noise: Sequence[str] = (),
    device: str = "cpu",
    seed: int = 0,
    sweeps: Sequence[str] = (),
    space: str = "pixel",
) -> dict:
    sweep_specs = {spec: parse_sweep(spec) for spec in sweeps}  # refuse a bad level before any work
    config, model, dataset, _, _ = load_trained(run_dir, device)
    if dataset.frames and (noise or sweeps):
        raise ValueError(f"--noise and --noise-sweep perturb images; {config.dataset} is event data")
    _, clean = evaluate(model, dataset.test, config.batch_size, device)
    result = {"run_dir": run_dir, "clean_acc": clean, "noise": {}, "noise_space": space, "sweeps": {}}
    for spec in noise:
        acc = noisy_accuracy(model, config, dataset, spec, device, seed, space)
        result["noise"][spec] = {"acc": acc, "drop": clean - acc}
    for sweep, specs in sweep_specs.items():
        rows = []
        for spec in specs:
            acc = noisy_accuracy(model, config, dataset, spec, device, seed, space)
            rows.append(
                {
                    "level": float(spec.split(":")[1]),
                    "acc": acc,
                    "drop": clean - acc,
                    "relative_drop": (clean - acc) / clean if clean > 0 else 0.0,
                }
            )
        result["sweeps"][sweep.split(":")[0]] = rows
    result["activity"] = activity(model, dataset.test.take(slice(0, 256)).to(device))
    return result


def report(result: dict) -> str:
    lines = [f"{result['run_dir']}: clean test accuracy {result['clean_acc']:.4f}"]
    for spec, r in result["noise"].items():
        lines.append(f"  noise {spec:>16}: accuracy {r['acc']:.4f}, drop {100 * r['drop']:.2f} points")
    for kind, rows in result["sweeps"].items():
        lines.append(
            f"  {kind} noise ({result['noise_space']} space): "
            + ", ".join(f"{r['level']:g} → {r['acc']:.4f} (−{100 * r['drop']:.1f})" for r in rows)
        )
    a = result["activity"]
    lines.append("  layer  firing rate  synaptic ops/sample  op")
    rates = a["firing_rate"] + [None]
    for i, (rate, n, kind) in enumerate(zip(rates, a["synaptic_ops"], a["op_kind"])):
        name = str(i) if rate is not None else "head"
        shown = f"{rate:11.4f}" if rate is not None else " " * 11
        lines.append(f"  {name:>5}  {shown}  {n:19.4g}  {kind}")
    lines.append(
        f"  energy estimate: {a['energy_uJ_per_sample']:.3f} µJ per sample "
        f"(MAC {ENERGY_PJ['mac']} pJ, AC {ENERGY_PJ['ac']} pJ; 45 nm CMOS, Horowitz 2014)"
    )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn eval", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument(
        "--noise",
        action="append",
        default=[],
        help="gaussian:STD or salt-pepper:P (repeatable); the thesis uses gaussian:0.4, salt-pepper:0.2",
    )
    parser.add_argument(
        "--noise-sweep",
        action="append",
        default=[],
        metavar="KIND:L1,L2,...",
        help="accuracy, drop and relative drop at each level, e.g. gaussian:0,0.1,0.2,0.3,0.4 "
        "or salt-pepper:0,0.05,0.1,0.2 (repeatable)",
    )
    parser.add_argument(
        "--noise-space",
        default="pixel",
        choices=["pixel", "normalised"],
        help="gaussian noise on [0, 1] pixels (clipped) or on standardised images",
    )
    parser.add_argument("--seed", type=int, default=0, help="the noise's seed (the same noise for the same seed)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run(args.run_dir, args.noise, args.device, args.seed, args.noise_sweep, args.noise_space)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
