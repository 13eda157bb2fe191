"""`pysnn export RUN_DIR --nir FILE`: a trained run's network as a NIR graph."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from .models import load_trained
from .nir import DEFAULT_DT, to_nir, write
from .nir.export import NEURON_FORMS


def export_run(run_dir: str, path: str, neuron: str = "exact", dt: float = DEFAULT_DT) -> Path:
    trained = load_trained(run_dir, with_data=False)
    graph = to_nir(trained.model, trained.image_shape, dt=dt, neuron=neuron)  # refuses before anything is written
    return write(graph, path)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn export", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--nir", required=True, metavar="FILE", help="the NIR file to write (atomically)")
    parser.add_argument(
        "--neuron",
        default="exact",
        choices=NEURON_FORMS,
        help="exact: LI + Threshold + reset feedback, runs identically in any NIR interpreter "
        "(default); lif: one nir.LIF per layer, whose NIR semantics reset hard (see docs/nir.md)",
    )
    parser.add_argument("--dt", type=float, default=DEFAULT_DT, help="the time step NIR's time constants assume")
    args = parser.parse_args(argv)
    path = export_run(args.run_dir, args.nir, args.neuron, args.dt)
    print(f"wrote {path}")
