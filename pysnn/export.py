"""`pysnn export RUN_DIR --nir FILE`: a trained run's network as a NIR graph."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from . import checkpoint
from .config import TrainConfig
from .data import sample_shape
from .nir import DEFAULT_DT, to_nir, write
from .nir.export import NEURON_FORMS
from .train import build_model


def export_run(run_dir: str, path: str, neuron: str = "exact", dt: float = DEFAULT_DT) -> Path:
    payload = checkpoint.load(Path(run_dir))
    config = TrainConfig(**payload["config"])
    image_shape, classes = sample_shape(config.dataset)
    model = build_model(config, image_shape, classes)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise checkpoint.CheckpointError(f"checkpoint does not fit its own config: {error}") from None
    graph = to_nir(model.eval(), image_shape, dt=dt, neuron=neuron)  # refuses before anything is written
    return write(graph, path)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="pysnn export", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--nir", required=True, metavar="FILE", help="the NIR file to write (atomically)")
    parser.add_argument("--neuron", default="exact", choices=NEURON_FORMS,
                        help="exact: LI + Threshold + reset feedback, runs identically in any NIR interpreter "
                             "(default); lif: one nir.LIF per layer, whose NIR semantics reset hard (see docs/nir.md)")
    parser.add_argument("--dt", type=float, default=DEFAULT_DT, help="the time step NIR's time constants assume")
    args = parser.parse_args(argv)
    path = export_run(args.run_dir, args.nir, args.neuron, args.dt)
    print(f"wrote {path}")
