"""`pysnn reproduce TABLE`: the thesis' tables, one command each.

Every table of chapters 3 and 4 is listed with the status of each row. The
ablations that no GPU or missing data set blocks run a stated CPU proxy
(Fashion-MNIST, MLP 784-1024-10, a few epochs) over N seeds: one run
directory per cell, finished cells skipped and a killed cell resumed
(`--resume auto`), then a markdown table (thesis | mean ± sd | setting |
command) and a plot. With `--device cuda` on a machine with a GPU the rows
that need one run the thesis' own settings (presets), for `--epochs E`, and
the table adds their samples/s and the time of the thesis' epoch count.
`--write-docs FILE` writes docs/reproduction.md from the registry and
whatever results exist."""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import robustness

PROXY = dict(dataset="fashion-mnist", model="mlp", hidden=[1024], epochs=1)
PROXY_TEXT = "Fashion-MNIST, MLP 784-1024-10, T = 10, batch 64"


@dataclass
class Row:
    label: str
    thesis: Optional[float]  # test accuracy %, or the accuracy drop for Table 4-5
    status: str  # "proxy", "needs a GPU", "needs data", "settings", "not automated yet", "qualitative"
    setting: str = ""
    command: str = ""
    flags: Dict[str, object] = field(default_factory=dict)  # the proxy cell's TrainConfig fields
    thesis_text: str = ""  # where the thesis' figure is not one accuracy


@dataclass
class Table:
    name: str
    title: str
    rows: List[Row]
    note: str = ""

    @property
    def runnable(self) -> bool:
        return any(r.status == "proxy" for r in self.rows)


def runnable_rows(table: Table, device: str) -> List[Row]:
    """The rows this machine runs: the proxies, and with a CUDA device the
    thesis' own GPU rows (their presets)."""
    gpu = device.startswith("cuda")
    return [r for r in table.rows if r.status == "proxy" or (gpu and r.status == "needs a GPU" and "preset" in r.flags)]


def _preset_row(label: str, thesis: Optional[float], preset: str, needs: str) -> Row:
    where = " --data-dir DIR" if needs == "needs data" else " --device cuda"
    command = f"pysnn train --preset {preset}{where}"
    return Row(label, thesis, needs, "the thesis' own setting", command, dict(preset=preset))


ABLATION = {  # Table 3-5, CIFAR-10 VGG8
    "pred": 87.30,
    "sim": 87.92,
    "contrast": 78.25,
    "pred-recon": 81.15,
    "sim-recon": 81.54,
    "pred-contrast": 78.85,
    "sim-contrast": 60.30,
    "pred-sim": 90.77,
    "pred-sim-contrast": 89.91,
}
KERNELS = {"gaussian": 89.8, "cosine": 88.7, "laplacian": 88.8, "sigmoid": 87.5}  # Table 4-4, Fashion-MNIST

TABLES: Dict[str, Table] = {
    "table-3-1": Table("table-3-1", "SNN-HLL settings", [Row("Adam, lr 5e-4, batch 64, T = 10, ...", None, "settings",
                       "", "pysnn presets")], "The settings are pysnn's thesis-hll-* presets"),
    "table-3-2": Table("table-3-2", "SNN-HLL on MNIST", [
        _preset_row("HLL pred-sim, MLP 784-1024-10", 97.72, "thesis-hll-mnist-mlp", "needs data"),
        Row("HLL pred-sim, CNN", 99.35, "needs data", "the thesis' CNN on MNIST", ""),
    ], "MNIST is not on this machine: pass --data-dir"),
    "table-3-3": Table("table-3-3", "SNN-HLL on Fashion-MNIST", [
        _preset_row("HLL pred-sim, VGG8", 92.11, "thesis-hll-fashion-vgg8", "needs a GPU"),
        _preset_row("HLL pred-sim, VGG8 2x", 93.46, "thesis-hll-fashion-vgg8-2x", "needs a GPU"),
    ]),
    "table-3-4": Table("table-3-4", "SNN-HLL on CIFAR-10", [
        _preset_row("HLL pred-sim, VGG8", 90.77, "thesis-hll-cifar10-vgg8", "needs a GPU"),
        _preset_row("HLL pred-sim, VGG8 2x", 91.44, "thesis-hll-cifar10-vgg8-2x", "needs a GPU"),
    ], "Also needs CIFAR-10 under --data-dir"),
    "table-3-5": Table("table-3-5", "local-loss ablation (thesis: CIFAR-10 VGG8)", [
        Row(loss, acc, "proxy", PROXY_TEXT + ", HLL", "", dict(rule="hll", loss=loss))
        for loss, acc in ABLATION.items()
    ]),
    "table-4-1": Table("table-4-1", "SNN-HBH settings", [Row("SGD/AdamW, lr 5e-4, beta 2, sigma 5, ...", None,
                       "settings", "", "pysnn presets")], "The settings are pysnn's thesis-hbh-* presets"),
    "table-4-2": Table("table-4-2", "SNN-HBH on MNIST", [
        Row("HBH, CNN", 99.24, "needs data", "the thesis' CNN on MNIST", ""),
    ], "MNIST is not on this machine: pass --data-dir"),
    "table-4-3": Table("table-4-3", "SNN-HBH on Fashion-MNIST", [
        _preset_row("HBH, VGG8", 89.80, "thesis-hbh-fashion-vgg8", "needs a GPU"),
    ]),
    "table-4-4": Table("table-4-4", "kernels of the bottleneck (thesis: Fashion-MNIST VGG8)", [
        Row(kernel, acc, "proxy", PROXY_TEXT + ", HBH", "", dict(rule="hbh", kernel=kernel))
        for kernel, acc in KERNELS.items()
    ]),
    "table-4-5": Table("table-4-5", "accuracy drop under input noise, BP against HBH", [
        Row("MNIST, gaussian 0.4: BP / HBH", None, "needs data", "thesis: 7.0 / 4.4"),
        Row("MNIST, salt-and-pepper 0.2: BP / HBH", None, "needs data", "thesis: 4.1 / 2.4"),
        Row("Fashion-MNIST VGG8, gaussian 0.4: BP / HBH", None, "needs a GPU", "thesis: 12.3 / 8.6"),
        Row("Fashion-MNIST VGG8, salt-and-pepper 0.2: BP / HBH", None, "needs a GPU", "thesis: 8.5 / 6.4"),
    ] + [
        Row(f"{model.upper()}: {text}", None, "proxy", f"Fashion-MNIST, {robustness.MODEL_TEXT[model]}", "",
            dict(model=model, rule=rule, point=point), thesis_text=robustness.THESIS_DROPS[rule])
        for model in robustness.MODELS for (rule, point), text in robustness.POINT_TEXT.items()
    ], "The proxy compares HBH with BPTT and HLL stopped at HBH's clean accuracy (`--stop-at-accuracy`) and at "
       "the end of the same budget, under gaussian noise (pixel and normalised space) and salt-and-pepper; "
       "drops in points at the strongest level, the CNN's under noise on the first 2,000 test images; the plots "
       "are table-4-5-mlp.png and table-4-5-cnn.png (copies in docs/img/)"),
    "table-4-6": Table("table-4-6", "non-BP SNN training algorithms compared", [
        Row("properties of each algorithm (check marks)", None, "qualitative"),
    ], "A comparison of properties, no measurement"),
}  # fmt: skip


def cell_dir(out: Path, table: Table, row: Row, seed: int) -> Path:
    return out / table.name / f"{row.label}-seed{seed}"


def cell_config(row: Row, seed: int, epochs: Optional[int], device: str, out: Path):
    from .config import TrainConfig

    if "preset" in row.flags:  # the thesis' own setting (a GPU row)
        from .presets import preset

        setting = preset(row.flags["preset"])
    else:
        setting = {**PROXY, **row.flags}
    flags = {**setting, "seed": seed, "device": device, "progress": False, "out": str(out)}
    if epochs is not None:
        flags["epochs"] = epochs
    return TrainConfig(**flags)


def cell_command(row: Row, epochs: Optional[int]) -> str:
    return robustness.train_command({**PROXY, **row.flags, **({"epochs": epochs} if epochs else {})})


def estimate_seconds(config, cells: int) -> float:
    """Time a few training steps of the first cell's network on its own data
    and scale them to the grid (evaluation and data loading left out)."""
    import torch

    from .data import load_dataset
    from .learning import make_trainer
    from .models import build_model

    data = load_dataset(config.dataset, config.data_dir, config.subset, False, config.seed, config.timesteps, False)
    device = torch.device(config.device)
    model = build_model(config, data.image_shape, data.classes).to(device)
    trainer = make_trainer(model, config, data.classes, data.image_shape)
    trainer.aux.to(device)
    images = data.train.take(slice(0, config.batch_size)).to(device)
    labels = data.train.labels[: config.batch_size].to(device)
    for _ in range(3):  # the first steps allocate and warm up
        trainer.step(images, labels)
    times = []
    for _ in range(5):  # the fastest: other work on the machine only slows a step
        start = time.perf_counter()
        trainer.step(images, labels)  # (.item() of the loss waits for the device)
        times.append(time.perf_counter() - start)
    per_step = min(times)
    return per_step * math.ceil(len(data.train) / config.batch_size) * config.epochs * cells


def run_table(table: Table, out: Path, seeds: int, epochs: Optional[int], device: str, log=print) -> Path:
    """Runs the table's proxy grid (skipping finished cells) and writes its markdown and plot."""
    from tqdm import tqdm

    from .train import train

    rows = runnable_rows(table, device)
    cells = [(row, seed) for row in rows for seed in range(seeds)]
    first = cell_config(rows[0], 0, epochs, device, out)
    todo = [(r, s) for r, s in cells if robustness.finished(cell_dir(out, table, r, s), first.epochs) is None]
    if todo:
        log(f"{table.name}: {len(todo)} of {len(cells)} cells to run, about "
            f"{estimate_seconds(first, len(todo)) / 60:.1f} min of training")  # fmt: skip
    for row, seed in tqdm(todo, desc=table.name, unit="cell", dynamic_ncols=True):
        run_dir = cell_dir(out, table, row, seed)
        train(cell_config(row, seed, epochs, device, run_dir), log=lambda m: None, resume="auto")
    return write_results(table, out, seeds, first.epochs, epochs)


def results(table: Table, out: Path, seeds: int, epochs: int) -> Dict[str, List[float]]:
    found = {}
    for row in table.rows:
        accs = [robustness.finished(cell_dir(out, table, row, s), epochs) for s in range(seeds)]
        found[row.label] = [100 * a for a in accs if a is not None]
    return found


def _mean_sd(values: Sequence[float]) -> str:
    return robustness.mean_sd(values) + (f" (n = {len(values)})" if values else "")


def write_results(table: Table, out: Path, seeds: int, epochs: int, epochs_flag: Optional[int]) -> Path:
    found = results(table, out, seeds, epochs)
    lines = [
        f"# {table.name}: {table.title}",
        "",
        (
            f"Proxy: {PROXY_TEXT}, {epochs} epoch(s), {seeds} seeds; thesis numbers are its own setting's."
            if table.runnable
            else f"The thesis' own setting, {epochs} epoch(s) per cell, {seeds} seeds."
        ),
        "",
        "| row | thesis | this run (mean ± sd) | setting | command |",
        "|---|---|---|---|---|",
    ]
    for row in table.rows:
        thesis = f"{row.thesis:.2f}" if row.thesis is not None else "-"
        command = cell_command(row, epochs_flag) if row.status == "proxy" else row.command
        lines.append(f"| {row.label} | {thesis} | {_mean_sd(found[row.label])} | {row.setting} | `{command}` |")
    lines += ["", ordering(table, found), *speed_lines(table, out, seeds)]
    path = out / f"{table.name}.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(table, found, out / f"{table.name}.png")
    return path


def speed_lines(table: Table, out: Path, seeds: int) -> List[str]:
    """For the thesis' own rows that ran: samples/s and the time the thesis'
    epoch count would take at that speed."""
    from .presets import preset

    lines = []
    for row in (r for r in table.rows if "preset" in r.flags):
        epochs = []
        for seed in range(seeds):
            epochs += (robustness.metrics(cell_dir(out, table, row, seed)) or {}).get("epochs", [])
        timed = [e for e in epochs if e.get("samples") and e.get("seconds")]
        if timed:
            rate = statistics.mean(e["samples"] / e["seconds"] for e in timed)
            per_epoch = statistics.mean(e["seconds"] for e in timed)
            total = preset(row.flags["preset"])["epochs"]
            lines.append(
                f"* {row.label}: {rate:.0f} samples/s over {len(timed)} epoch(s); the thesis' {total} epochs "
                f"would take {per_epoch * total / 3600:.1f} h per seed at this speed"
            )
    return [""] + lines if lines else []


def ordering(table: Table, found: Dict[str, List[float]]) -> str:
    """Whether the proxy ranks the rows as the thesis does (best and worst)."""
    measured = {label: statistics.mean(v) for label, v in found.items() if v}
    thesis = {r.label: r.thesis for r in table.rows if r.thesis is not None and r.label in measured}
    if len(thesis) < 2:
        return ""
    best_t, worst_t = max(thesis, key=thesis.get), min(thesis, key=thesis.get)
    best_m, worst_m = max(thesis, key=measured.get), min(thesis, key=measured.get)
    return (
        f"Thesis: best {best_t}, worst {worst_t}; this run: best {best_m}, worst {worst_m}. "
        f"The best {'holds' if best_t == best_m else 'does not hold'}; "
        f"the worst {'holds' if worst_t == worst_m else 'does not hold'}."
    )


def _plot(table: Table, found: Dict[str, List[float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels = [r.label for r in table.rows if found[r.label]]
    if not labels:
        return
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(labels)), 3.5))
    means = [statistics.mean(found[k]) for k in labels]
    sds = [statistics.stdev(found[k]) if len(found[k]) > 1 else 0 for k in labels]
    ax.bar(range(len(labels)), means, yerr=sds, capsize=3, label="this run (proxy)")
    thesis = [next(r.thesis for r in table.rows if r.label == k) for k in labels]
    ax.scatter(range(len(labels)), thesis, color="black", zorder=3, label="thesis")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{table.name}: {table.title}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def listing() -> str:
    lines = [f"{'table':10}  {'rows':>4}  status"]
    for table in TABLES.values():
        statuses = sorted({r.status for r in table.rows})
        runnable = "  (runs: pysnn reproduce " + table.name + ")" if table.runnable else ""
        if runnable_rows(table, "cuda") and not table.runnable:
            runnable = f"  (on a GPU: pysnn reproduce {table.name} --device cuda --epochs E)"
        lines.append(f"{table.name:10}  {len(table.rows):>4}  {', '.join(statuses)}: {table.title}{runnable}")
    return "\n".join(lines)


def write_docs(path: Path, out: Path, seeds: int, epochs: int) -> None:
    """docs/reproduction.md: every table and row, with its status, the
    thesis' number, this machine's result where one exists, and the command."""
    lines = [
        "# Reproducing the thesis' tables",
        "",
        "Generated by `pysnn reproduce --write-docs docs/reproduction.md` from `pysnn reproduce`'s results",
        f"under `{out}` ({seeds} seeds). Status: *proxy* rows ran on this machine in a stated CPU setting;",
        "*needs a GPU* / *needs data* rows are the thesis' own settings, with the command to run them where",
        "a GPU or the data set is present; *settings* tables are pysnn's presets (`pysnn presets`).",
        'Where the proxies ran, on which machine and when: ../BENCHMARKS.md, "Thesis tables".',
        "",
    ]
    for table in TABLES.values():
        found = results(table, out, seeds, epochs) if table.runnable and table.name != "table-4-5" else {}
        noise = robustness.measured(out, seeds, epochs) if table.name == "table-4-5" else {}
        lines += [f"## {table.name}: {table.title}", ""]
        if table.note:
            lines += [table.note + ".", ""]
        if not table.runnable and runnable_rows(table, "cuda"):
            lines += [f"On a machine with a GPU: `pysnn reproduce {table.name} --device cuda --epochs E`.", ""]
        lines += ["| row | thesis | measured | status | command |", "|---|---|---|---|---|"]
        for row in table.rows:
            thesis = f"{row.thesis:.2f}" if row.thesis is not None else (row.thesis_text or row.setting or "-")
            measured = noise.get(row.label) or _mean_sd(found.get(row.label, []))
            command = row.command
            if row.status == "proxy":
                command = robustness.cell_command(**row.flags, epochs=epochs) if noise else cell_command(row, epochs)
            status = f"{row.status} ({row.setting})" if row.status == "proxy" else row.status
            lines.append(f"| {row.label} | {thesis} | {measured} | {status} | {f'`{command}`' if command else '-'} |")
        if noise:
            lines += ["", *robustness.verdicts(out, seeds, epochs)]
        elif table.runnable:
            lines += ["", ordering(table, found) or "Not run yet."]
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="pysnn reproduce", description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="*", help=f"{', '.join(TABLES)} or all")
    parser.add_argument("--list", action="store_true", help="every thesis table with its rows' status")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per proxy cell (default 1)")
    parser.add_argument(
        "--device", default="cpu", help="cuda also runs the thesis' own GPU rows (their presets; --epochs E each)"
    )
    parser.add_argument("--out", default="runs/reproduce", help="where the cells' run directories go")
    parser.add_argument("--write-docs", metavar="FILE", help="write the reproduction page from the results")
    args = parser.parse_args(list(argv))
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.list or not (args.tables or args.write_docs):
        print(listing())
        return
    names = list(TABLES) if "all" in args.tables else args.tables
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        raise ValueError(f"unknown table {', '.join(unknown)}; `pysnn reproduce --list` names them")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: this machine has no CUDA device")
    out = Path(args.out)
    for name in names:
        table = TABLES[name]
        if not runnable_rows(table, args.device):
            print(f"{name}: {table.title}: {', '.join(sorted({r.status for r in table.rows}))}; nothing to run here")
            continue
        if name == "table-4-5":
            print(
                robustness.run_grid(
                    out, args.seeds, args.epochs, args.device, estimate_seconds=estimate_seconds
                ).read_text()
            )
            continue
        print(run_table(table, out, args.seeds, args.epochs, args.device).read_text())
    if args.write_docs:
        write_docs(Path(args.write_docs), out, args.seeds, args.epochs or PROXY["epochs"])
