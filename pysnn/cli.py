"""The `pysnn` command (also `python -m pysnn`)."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Dict, Optional, Sequence

BENCHMARKS: Dict[str, str] = {
    "lif": "pysnn.bench.lif",
    "hsic": "pysnn.bench.hsic",
}


def _run_module_main(module: str, argv: Sequence[str]) -> None:
    import importlib

    importlib.import_module(module).main(list(argv))


def _bench(args: argparse.Namespace, rest: Sequence[str]) -> None:
    _run_module_main(BENCHMARKS[args.which], rest)


COMMANDS: Dict[str, Callable[[argparse.Namespace, Sequence[str]], None]] = {"bench": _bench}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pysnn", description="Spiking networks with fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="benchmark fused ops against pure PyTorch",
                                description="Run `pysnn bench NAME --help` for a benchmark's options.")
    bench.add_argument("which", choices=sorted(BENCHMARKS), help="which benchmark")
    args, rest = parser.parse_known_args(argv)
    COMMANDS[args.command](args, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
