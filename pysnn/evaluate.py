"""`pysnn eval RUN_DIR`: a trained run's accuracy, clean and under input
noise, with per-layer firing rates, synaptic operations and energy."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from . import checkpoint
from . import data as datasets
from .analysis import ENERGY_PJ, activity, add_noise
from .config import TrainConfig
from .train import build_model, evaluate


def load_run(run_dir: str, device: str = "cpu"):
    payload = checkpoint.load(Path(run_dir))
    config = TrainConfig(**payload["config"])
    dataset = datasets.load_dataset(config.dataset, config.data_dir, config.subset, False, config.seed)
    model = build_model(config, dataset.image_shape, dataset.classes)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise checkpoint.CheckpointError(f"checkpoint does not fit its own config: {error}") from None
    return config, model.to(device).eval(), dataset


def run(run_dir: str, noise: Sequence[str] = (), device: str = "cpu", seed: int = 0) -> dict:
    config, model, dataset = load_run(run_dir, device)
    _, clean = evaluate(model, dataset.test, config.batch_size, device)
    result = {"run_dir": run_dir, "clean_acc": clean, "noise": {}}
    for spec in noise:
        noisy = datasets.Split(add_noise(dataset.test.images, spec, torch.Generator().manual_seed(seed)),
                               dataset.test.labels)
        _, acc = evaluate(model, noisy, config.batch_size, device)
        result["noise"][spec] = {"acc": acc, "drop": clean - acc}
    result["activity"] = activity(model, dataset.test.images[:256].to(device))
    return result


def report(result: dict) -> str:
    lines = [f"{result['run_dir']}: clean test accuracy {result['clean_acc']:.4f}"]
    for spec, r in result["noise"].items():
        lines.append(f"  noise {spec:>16}: accuracy {r['acc']:.4f}, drop {100 * r['drop']:.2f} points")
    a = result["activity"]
    lines.append("  layer  firing rate  synaptic ops/sample  op")
    rates = a["firing_rate"] + [None]
    for i, (rate, n, kind) in enumerate(zip(rates, a["synaptic_ops"], a["op_kind"])):
        name = str(i) if rate is not None else "head"
        shown = f"{rate:11.4f}" if rate is not None else " " * 11
        lines.append(f"  {name:>5}  {shown}  {n:19.4g}  {kind}")
    lines.append(f"  energy estimate: {a['energy_uJ_per_sample']:.3f} µJ per sample "
                 f"(MAC {ENERGY_PJ['mac']} pJ, AC {ENERGY_PJ['ac']} pJ; 45 nm CMOS, Horowitz 2014)")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn eval", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--noise", action="append", default=[],
                        help="gaussian:STD or salt-pepper:P (repeatable); the thesis uses gaussian:0.4, salt-pepper:0.2")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = run(args.run_dir, args.noise, args.device)
    print(report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
