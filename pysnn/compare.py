"""`pysnn compare RUN_DIR... --noise-sweep KIND:L1,L2,...`: the accuracy of
several trained runs under the same seeded input noise, as one table and one
PNG (accuracy against noise level, one curve per run), written beside the runs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import List, Optional, Sequence

from .evaluate import parse_sweep
from .evaluate import run as evaluate_run


def compare(
    run_dirs: Sequence[str],
    sweeps: Sequence[str],
    space: str = "pixel",
    device: str = "cpu",
    seed: int = 0,
    out: Optional[str] = None,
) -> dict:
    for spec in sweeps:
        parse_sweep(spec)  # refuse bad input before any work
    missing = [d for d in run_dirs if not (Path(d) / "checkpoint.pt").is_file()]
    if missing:
        raise ValueError(f"no checkpoint in {', '.join(missing)}")
    folder = Path(out) if out else Path(os.path.commonpath([str(Path(d).resolve()) for d in run_dirs]))
    if not out and (folder / "checkpoint.pt").is_file():  # one run (or the same one twice): beside it
        folder = folder.parent
    results = [evaluate_run(d, (), device, seed, sweeps, space) for d in run_dirs]
    table = {
        "noise_space": space,
        "seed": seed,
        "runs": [{"run_dir": r["run_dir"], "clean_acc": r["clean_acc"], "sweeps": r["sweeps"]} for r in results],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noise-comparison.json").write_text(json.dumps(table, indent=2))
    (folder / "noise-comparison.txt").write_text(format_table(table) + "\n")
    _plot(table, folder / "noise-comparison.png")
    table["written"] = [str(folder / f"noise-comparison.{ext}") for ext in ("txt", "json", "png")]
    return table


def format_table(table: dict) -> str:
    lines = []
    for kind in table["runs"][0]["sweeps"]:
        levels = [r["level"] for r in table["runs"][0]["sweeps"][kind]]
        lines.append(f"{kind} noise ({table['noise_space']} space): test accuracy % (drop in points)")
        lines.append(f"{'run':40} " + " ".join(f"{level:>14g}" for level in levels))
        for run in table["runs"]:
            cells = [f"{100 * r['acc']:6.2f} ({100 * r['drop']:5.1f})" for r in run["sweeps"][kind]]
            lines.append(f"{Path(run['run_dir']).name[:40]:40} " + " ".join(f"{c:>14}" for c in cells))
        lines.append("")
    return "\n".join(lines).rstrip()


def _plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(table["runs"][0]["sweeps"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for run in table["runs"]:
            rows = run["sweeps"][kind]
            ax.plot(
                [r["level"] for r in rows], [100 * r["acc"] for r in rows], marker="o", label=Path(run["run_dir"]).name
            )
        ax.set_xlabel(f"{kind} noise level ({table['noise_space']} space)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn compare", description=__doc__)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument(
        "--noise-sweep",
        action="append",
        required=True,
        metavar="KIND:L1,L2,...",
        help="e.g. gaussian:0,0.1,0.2,0.3,0.4 and salt-pepper:0,0.05,0.1,0.2 (repeatable)",
    )
    parser.add_argument("--noise-space", default="pixel", choices=["pixel", "normalised"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="folder for noise-comparison.{txt,json,png} (default: beside the runs)")
    args = parser.parse_args(argv)
    table = compare(args.run_dirs, args.noise_sweep, args.noise_space, args.device, args.seed, args.out)
    print(format_table(table))
    print("written:", ", ".join(table["written"]))


if __name__ == "__main__":
    main()
