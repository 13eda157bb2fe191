"""`pysnn reproduce table-4-5`: robustness to input noise of HBH against BPTT and HLL,
at the end of training and at equal clean accuracy.

For each model (the MLP and the spiking CNN on Fashion-MNIST) and seed, HBH
trains first; BPTT and HLL then train twice, to the end of the same budget
and with `--stop-at-accuracy` set to that seed's HBH accuracy, checked every
few batches (`--stop-check-every`), so the stopped network is as accurate as
HBH's. Every network is then evaluated under the same seeded noise:
gaussian in pixel and in normalised space, salt-and-pepper (which sets
pixels to 0 or 1, the same event in either space). Each cell is a run
directory trained with `--resume auto` plus its noise.json; finished cells
are skipped, so a killed grid resumes."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

MODELS = {
    "mlp": dict(dataset="fashion-mnist", model="mlp", hidden=[1024], epochs=1),
    "cnn": dict(dataset="fashion-mnist", model="cnn", epochs=1),
}
MODEL_TEXT = {"mlp": "MLP 784-1024-10", "cnn": "CNN 32C3-P2-64C3-P2-FC256"}
# the CNN's noisy evaluations use the first 2,000 test images (18 s per pass
# over all 10,000 on 2 CPU cores); its clean accuracy is the full test set's
NOISE_IMAGES = {"mlp": None, "cnn": 2000}
# batches between the test evaluations of a run that stops at HBH's accuracy
# (a CNN evaluation costs as much as 50 training steps)
CHECK_EVERY = {"mlp": 10, "cnn": 25}
LEVELS = {"gaussian": [0.1, 0.2, 0.3, 0.4], "salt-pepper": [0.05, 0.1, 0.2]}
CURVES = [("gaussian", "pixel"), ("salt-pepper", "pixel"), ("gaussian", "normalised")]
# (rule, point): "end" trains the whole budget, "matched" stops at HBH's accuracy
POINTS = [("hbh", "end"), ("bptt", "matched"), ("hll", "matched"), ("bptt", "end"), ("hll", "end")]
POINT_TEXT = {
    ("hbh", "end"): "HBH",
    ("bptt", "matched"): "BPTT at HBH's accuracy",
    ("hll", "matched"): "HLL at HBH's accuracy",
    ("bptt", "end"): "BPTT, end of training",
    ("hll", "end"): "HLL, end of training",
}
# the thesis' drops (points) on Fashion-MNIST VGG8, gaussian 0.4 / salt-and-pepper 0.2
THESIS_DROPS = {"hbh": "8.6 / 6.4", "bptt": "12.3 / 8.5", "hll": "-"}
THESIS = "Fashion-MNIST VGG8 drops (thesis): gaussian 0.4 BP 12.3 / HBH 8.6, salt-and-pepper 0.2 BP 8.5 / HBH 6.4"


def cell_dir(out: Path, model: str, rule: str, point: str, seed: int) -> Path:
    return out / "table-4-5" / f"{model}-{rule}-{point}-seed{seed}"


def metrics(run_dir: Path) -> Optional[dict]:
    """A run directory's metrics.json, None before its first write."""
    try:
        return json.loads((run_dir / "metrics.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def finished(run_dir: Path, epochs: int) -> Optional[float]:
    """The test accuracy of a run that trained its epochs or stopped at its target, else None."""
    found = metrics(run_dir)
    if found is None or not (len(found.get("epochs", [])) >= epochs or "stopped_at" in found):
        return None
    return found["test_acc"]


def cell_config(model: str, rule: str, seed: int, epochs: Optional[int], device: str, run_dir: Path, target=None):
    from .config import TrainConfig

    flags = {**MODELS[model], "rule": rule, "seed": seed, "device": device, "progress": False, "out": str(run_dir)}
    if epochs is not None:
        flags["epochs"] = epochs
    if target is not None:
        flags.update(stop_at_accuracy=target, stop_check_every=CHECK_EVERY[model])
    return TrainConfig(**flags)


def train_command(flags: dict, extra: str = "") -> str:
    """The `pysnn train` line of a cell's TrainConfig fields, the seed left as S."""
    parts = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in flags.items()]
    return "pysnn train " + " ".join(parts + ([extra] if extra else [])) + " --seed S"


def cell_command(model: str, rule: str, point: str, epochs: Optional[int]) -> str:
    flags = {**MODELS[model], "rule": rule, **({"epochs": epochs} if epochs else {})}
    extra = f"--stop-at-accuracy A_HBH --stop-check-every {CHECK_EVERY[model]}" if point == "matched" else ""
    return train_command(flags, extra)


def evaluate_noise(run_dir: Path, model: str, device: str) -> dict:
    """Accuracy of the cell's network on the clean and noisy test images
    (noise seed 0: the same noise for every cell), cached in noise.json."""
    path = run_dir / "noise.json"
    if path.is_file():
        return json.loads(path.read_text())
    from .data import Split
    from .evaluate import noisy_accuracy
    from .models import load_trained
    from .run import evaluate, write_json_atomic

    config, network, dataset, _, _ = load_trained(str(run_dir), device)
    count = NOISE_IMAGES[model] or len(dataset.test)
    dataset = dataclasses.replace(dataset, test=Split(dataset.test.images[:count], dataset.test.labels[:count]))
    _, clean = evaluate(network, dataset.test, config.batch_size, device)
    result = {"images": count, "clean": clean}
    for kind, space in CURVES:
        accs = [noisy_accuracy(network, config, dataset, f"{kind}:{lv}", device, 0, space) for lv in LEVELS[kind]]
        result[f"{kind}/{space}"] = [clean - acc for acc in accs]
    write_json_atomic(path, result)
    return result


def run_grid(
    out: Path,
    seeds: int,
    epochs: Optional[int],
    device: str,
    models: Sequence[str] = (),
    log=print,
    estimate_seconds=None,
):
    """Trains and evaluates every cell not yet finished, then writes table-4-5.md and
    the plots; `estimate_seconds(config, cells)` (pysnn.reproduce's) prices the grid first."""
    from tqdm import tqdm

    from .train import train

    models = list(models or MODELS)
    budget = epochs or MODELS[models[0]]["epochs"]
    cells = [(m, r, p, s) for m in models for s in range(seeds) for r, p in POINTS]
    todo = [c for c in cells if not (cell_dir(out, *c) / "noise.json").is_file()]
    if todo:
        price = ""
        if estimate_seconds is not None:
            seconds = sum(
                estimate_seconds(cell_config(m, "hbh", 0, epochs, device, out), sum(c[0] == m for c in todo))
                for m in dict.fromkeys(c[0] for c in todo)
            )
            price = f", at most about {seconds / 60:.0f} min of training"
        log(
            f"table-4-5: {len(todo)} of {len(cells)} cells to run (HBH first: its accuracy is the others' "
            f"target){price}"
        )
    for model, rule, point, seed in tqdm(todo, desc="table-4-5", unit="cell", dynamic_ncols=True):
        run_dir = cell_dir(out, model, rule, point, seed)
        target = None
        if point == "matched":
            target = finished(cell_dir(out, model, "hbh", "end", seed), budget)
        if finished(run_dir, budget) is None:
            config = cell_config(model, rule, seed, epochs, device, run_dir, target)
            train(config, log=lambda message: None, resume="auto")
        evaluate_noise(run_dir, model, device)
    return write_results(out, seeds, budget, epochs, models)


Summary = Dict[Tuple[str, str], dict]  # (rule, point) -> {"clean": [...], "kind/space": [[drop per level] per seed]}


def collect(out: Path, model: str, seeds: int, epochs: int) -> Summary:
    found: Summary = {}
    for rule, point in POINTS:
        entry: dict = {"clean": [], "stopped": 0, **{f"{k}/{s}": [] for k, s in CURVES}}
        for seed in range(seeds):
            run_dir = cell_dir(out, model, rule, point, seed)
            acc = finished(run_dir, epochs)
            if acc is None or not (run_dir / "noise.json").is_file():
                continue
            noise = json.loads((run_dir / "noise.json").read_text())
            entry["clean"].append(100 * acc)
            entry["stopped"] += "stopped_at" in (metrics(run_dir) or {})
            for curve in entry:
                if "/" in curve:
                    entry[curve].append([100 * d for d in noise[curve]])
        found[(rule, point)] = entry
    return found


def mean_sd(values: Sequence[float]) -> str:
    """'mean ± sd' of per-seed figures (sd 0 for one value, '-' for none)."""
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f}"


def _last(entry: dict, curve: str) -> List[float]:
    return [drops[-1] for drops in entry[curve]]


def verdict(found: Summary, curve: str) -> str:
    """HBH against BPTT at equal clean accuracy at the strongest level: the
    difference is called only where it exceeds the two spreads together."""
    hbh, bptt = _last(found[("hbh", "end")], curve), _last(found[("bptt", "matched")], curve)
    if not hbh or not bptt:
        return "not run yet"
    spread = sum(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (hbh, bptt))
    gap = statistics.mean(bptt) - statistics.mean(hbh)
    kind, space = curve.split("/")
    level = LEVELS[kind][-1]
    said = f"{kind} {level} ({space} space): HBH drops {mean_sd(hbh)} points, BPTT at equal accuracy {mean_sd(bptt)}"
    if abs(gap) <= spread:
        return f"{said}: no difference beyond the seeds' spread."
    return f"{said}: HBH is {'more' if gap > 0 else 'less'} robust than BPTT at equal clean accuracy."


def write_results(out: Path, seeds: int, epochs: int, epochs_flag: Optional[int], models=()) -> Path:
    lines = [
        "# table-4-5: accuracy drop under input noise at equal clean accuracy",
        "",
        f"Proxy: Fashion-MNIST, T = 10, batch 64, {epochs} epoch(s) of budget, {seeds} seeds; drops in points "
        "(mean ± sd over seeds) at the strongest level. BPTT and HLL rows 'at HBH's accuracy' stopped at the first "
        f"test evaluation (every {CHECK_EVERY['mlp']} / {CHECK_EVERY['cnn']} batches, MLP / CNN) that reached "
        f"the same seed's HBH accuracy. {THESIS}.",
        "",
    ]
    for model in models or MODELS:
        found = collect(out, model, seeds, epochs)
        images = NOISE_IMAGES[model]
        lines += [
            f"## {MODEL_TEXT[model]}" + (f" (noise on the first {images} test images)" if images else ""),
            "",
            "| network | clean accuracy | drop: gaussian 0.4, pixel | salt-and-pepper 0.2 | gaussian 0.4, "
            "normalised | command |",
            "|---|---|---|---|---|---|",
        ]
        for rule, point in POINTS:
            entry = found[(rule, point)]
            drops = " | ".join(mean_sd(_last(entry, f"{k}/{s}")) for k, s in CURVES)
            missed = len(entry["clean"]) - entry["stopped"] if point == "matched" else 0
            clean = mean_sd(entry["clean"]) + (
                f" (target not reached: {missed} of {len(entry['clean'])})" if missed else ""
            )
            lines.append(
                f"| {POINT_TEXT[(rule, point)]} | {clean} | {drops} | "
                f"`{cell_command(model, rule, point, epochs_flag)}` |"
            )
        lines += [""] + [f"* {verdict(found, f'{k}/{s}')}" for k, s in CURVES] + [""]
        _plot(found, model, out / f"table-4-5-{model}.png")
    path = out / "table-4-5.md"
    path.write_text("\n".join(lines))
    return path


def _plot(found: Summary, model: str, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.5 * len(CURVES), 3.6), squeeze=False)
    for ax, (kind, space) in zip(axes[0], CURVES):
        levels = [0.0] + LEVELS[kind]
        for key, entry in found.items():
            runs = entry[f"{kind}/{space}"]
            if not runs:
                continue
            per_level = list(zip(*[[0.0] + r for r in runs]))
            mean = [statistics.mean(v) for v in per_level]
            sd = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_level]
            style = "-" if key[1] == "end" else "--"
            (line,) = ax.plot(levels, mean, style, marker="o", ms=3, label=POINT_TEXT[key])
            ax.fill_between(levels, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                            color=line.get_color(), alpha=0.15)  # fmt: skip
        ax.set_xlabel(f"{kind} level ({space} space)")
        ax.set_ylabel("accuracy drop (points)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"table-4-5 proxy: {MODEL_TEXT[model]}, Fashion-MNIST (mean ± sd over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measured(out: Path, seeds: int, epochs: int) -> Dict[str, str]:
    """Docs rows: 'MODEL: network' -> clean accuracy and the drops at the strongest levels."""
    rows = {}
    for model in MODELS:
        found = collect(out, model, seeds, epochs)
        for key, entry in found.items():
            drops = ", ".join(f"{k} {LEVELS[k][-1]} {s} {mean_sd(_last(entry, f'{k}/{s}'))}" for k, s in CURVES)
            rows[f"{model.upper()}: {POINT_TEXT[key]}"] = f"clean {mean_sd(entry['clean'])}; drops: {drops}"
    return rows


def verdicts(out: Path, seeds: int, epochs: int) -> List[str]:
    """One line per model and noise: is HBH more robust than BPTT at equal clean accuracy?"""
    lines = []
    for model in MODELS:
        found = collect(out, model, seeds, epochs)
        lines += [f"* {MODEL_TEXT[model]}, {verdict(found, f'{k}/{s}')}" for k, s in CURVES]
    return lines
