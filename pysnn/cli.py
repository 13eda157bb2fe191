"""The `pysnn` command (also `python -m pysnn`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

BENCHMARKS: Dict[str, str] = {
    "lif": "pysnn.bench.lif",
    "lif-pool": "pysnn.bench.lif_pool",
    "hsic": "pysnn.bench.hsic",
    "train": "pysnn.bench.train",
    "parallel": "pysnn.bench.parallel",
}


def _run_module_main(module: str, argv: Sequence[str]) -> None:
    import importlib

    importlib.import_module(module).main(list(argv))


def _bench(args: argparse.Namespace, rest: Sequence[str]) -> None:
    if args.which is None:
        if args.bench_help:
            args.bench_parser.print_help()
            return
        args.bench_parser.error("choose a benchmark: " + ", ".join(sorted(BENCHMARKS) + ["all"]))
    if args.bench_help:
        rest = ["--help", *rest]
    if args.which != "all":
        _run_module_main(BENCHMARKS[args.which], rest)
        return
    # Every benchmark in turn; --device and --json-dir apply to all of them.
    extra = argparse.ArgumentParser(prog="pysnn bench all")
    extra.add_argument("--device", default="cpu")
    extra.add_argument("--json-dir", help="write NAME.json for each benchmark here")
    opts = extra.parse_args(rest)
    for name, module in BENCHMARKS.items():
        print(f"\n== pysnn bench {name} ({opts.device})", flush=True)
        argv = ["--device", opts.device]
        if opts.json_dir:
            Path(opts.json_dir).mkdir(parents=True, exist_ok=True)
            argv += ["--json", str(Path(opts.json_dir) / f"{name}.json")]
        _run_module_main(module, argv)


def _add_train_arguments(parser: argparse.ArgumentParser) -> None:
    from .config import CPU_MEMORY_MODES, UPDATES, TrainConfig

    d = TrainConfig()
    a = parser.add_argument
    a(
        "--dataset",
        default=d.dataset,
        help="digits (default, embedded), fashion-mnist, mnist, cifar10; event data through "
        "Tonic: nmnist, dvs-gesture, shd",
    )
    a("--data-dir", default=d.data_dir, help="folder with the dataset files")
    a("--download", action="store_true", help="download through torchvision (needs a network)")
    a("--subset", type=int, default=d.subset, help="train on this many images (and test on at most as many)")
    a("--model", default=d.model, choices=["mlp", "cnn", "vgg8"])
    a("--hidden", type=int, nargs="+", default=d.hidden, help="MLP hidden sizes, e.g. 1024 1024 1024")
    a("--width-mult", type=float, default=d.width_mult, help="VGG8 channel multiplier (2 = VGG8 2x)")
    a("--batch-norm", dest="batch_norm", action="store_true", default=None, help="BatchNorm after each layer")
    a("--no-batch-norm", dest="batch_norm", action="store_false")
    a(
        "--encoder",
        default=d.encoder,
        choices=["direct", "poisson", "events"],
        help="direct (the image at every step), poisson (rate coding); event data sets use events",
    )
    a("--rule", default=d.rule, choices=["hll", "hbh", "bptt"])
    a(
        "--loss",
        default=d.loss,
        help="HLL loss: pred, sim, contrast, recon, pred-sim (default), pred-recon, "
        "sim-recon, pred-contrast, sim-contrast, pred-sim-contrast",
    )
    a(
        "--update",
        default=d.update,
        choices=list(UPDATES),
        help="final: one update per batch from the rates; per-step-pred: the same with HLL's pred averaged "
        "over the per-step cross-entropies; realtime: every layer and the head update at every time step "
        "(Algorithm 3.1; hll, hbh)",
    )
    a(
        "--realtime-lr",
        default=d.realtime_lr,
        choices=["scaled", "full"],
        help="--update realtime: each step's learning rate is lr / T (scaled, default) or lr (full)",
    )
    a(
        "--low-memory",
        dest="low_memory",
        action="store_true",
        default=None,
        help="trade time for memory in training steps (default with --update realtime): convolutions a few "
        "samples at a time, a conv block's batch norm output over a sequence formed again instead of kept",
    )
    a(
        "--no-low-memory",
        dest="low_memory",
        action="store_false",
        help="faster steps, more memory (default with final-step updates and BPTT)",
    )
    a(
        "--kernel",
        default=d.kernel,
        help="HBH kernel on the input and on each layer: gaussian, laplacian, cosine, sigmoid, linear",
    )
    a(
        "--kernel-param",
        type=lambda v: [float(n) for n in v.split(",")],
        default=d.kernel_param,
        metavar="C1,C0",
        help="the sigmoid kernel tanh(C1·aᵀb + C0): slope and offset (default 0.01,-1)",
    )
    a("--label-kernel", default=d.label_kernel, help="HBH kernel on the labels (default cosine)")
    a("--estimator", default=d.estimator, choices=["approx", "biased", "unbiased"])
    a("--sigma", type=float, default=d.sigma)
    a("--sigma-scaling", default=d.sigma_scaling, choices=["none", "dim"])
    a("--beta", type=float, default=d.beta)
    a(
        "--hsic-term",
        default=d.hsic_term,
        choices=["input", "self"],
        help="HBH: the bottleneck's first term, HSIC(X, Z) (input, the thesis) or HSIC(Z, Z) (self, Pogodin & Latham)",
    )
    a(
        "--hsic-norm",
        default=d.hsic_norm,
        help="HBH: none, or the normalised bottleneck nHSIC(X, Z) - beta nHSIC(Z, Y) with --hsic-term input: "
        "cka (centred kernel alignment) or cca (Ma et al.)",
    )
    a("--timesteps", type=int, default=d.timesteps)
    a("--decay", type=float, default=d.decay)
    a("--threshold", type=float, default=d.threshold)
    a("--surrogate", default=d.surrogate, choices=["sigmoid", "atan", "exponential", "rectangular"])
    a("--alpha", type=float, default=d.alpha)
    a("--epochs", type=int, default=d.epochs)
    a("--batch-size", type=int, default=d.batch_size)
    a("--lr", type=float, default=d.lr)
    a("--optimizer", default=d.optimizer, choices=["adam", "adamw", "sgd"])
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--dropout", type=float, default=d.dropout)
    a("--device", default=d.device)
    a("--seed", type=int, default=d.seed)
    a("--backend", default=d.backend, choices=["fused", "reference"])
    a("--out", default=d.out, help="run directory (default runs/<name>)")
    a("--no-progress", dest="progress", action="store_false", help="no progress bars")
    a(
        "--cpu-memory",
        default=d.cpu_memory,
        choices=CPU_MEMORY_MODES,
        help="CPU runs: keep every freed large block for the next step (default; faster, up to a quarter of "
        "RAM, shared by torchrun's processes on the machine, stays with the processes), only those of "
        "pysnn's own ops (ops), or none (release)",
    )
    a(
        "--parallel",
        default=d.parallel,
        choices=["none", "data", "layer"],
        help="under torchrun: data parallel (each process a slice of every batch) or layer parallel "
        "(each process a stage of consecutive layers; hll and hbh)",
    )
    a(
        "--stages-split",
        type=lambda v: [int(n) for n in v.split(",")],
        default=d.stages_split,
        metavar="N,N,...",
        help="layer parallel: blocks per stage, e.g. 2,1 (default: balanced on measured time)",
    )
    a("--pipeline-depth", type=int, default=d.pipeline_depth, help="layer parallel: unfinished sends per link")
    a(
        "--dist-timeout",
        type=float,
        default=d.dist_timeout,
        help="seconds every collective and point-to-point call may take before the run stops",
    )
    a(
        "--global-kernels",
        action="store_true",
        help="data parallel: HSIC kernels, sim and contrast over the global batch (all-gathered), not the slice",
    )
    a(
        "--stop-at-accuracy",
        type=float,
        default=d.stop_at_accuracy,
        metavar="A",
        help="stop after the first epoch whose test accuracy reaches A (a fraction), its checkpoint kept: "
        "networks compared at equal clean accuracy",
    )
    a(
        "--stop-check-every",
        type=int,
        default=d.stop_check_every,
        metavar="N",
        help="with --stop-at-accuracy: also evaluate the test set every N batches inside an epoch and stop "
        "there once A is reached (default 0: at epoch ends only)",
    )
    a(
        "--checkpoint-every",
        type=int,
        default=d.checkpoint_every,
        metavar="N",
        help="also checkpoint every N batches inside an epoch (default: by time only)",
    )
    a(
        "--checkpoint-minutes",
        type=float,
        default=d.checkpoint_minutes,
        metavar="M",
        help=f"also checkpoint every M minutes inside an epoch (default {d.checkpoint_minutes:g}; 0: never)",
    )
    a(
        "--resume",
        metavar="RUN_DIR|auto",
        help="continue the run in RUN_DIR from its last checkpoint; auto: continue --out's run if it has a "
        "checkpoint, else start it (one command line for the first start and every restart)",
    )
    a("--preset", help="start from a thesis preset (`pysnn presets`); other flags override it")


def _train(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .config import TrainConfig
    from .train import train

    fields = TrainConfig.__dataclass_fields__
    given = {k: v for k, v in vars(args).items() if k in fields}
    if args.preset:
        from .presets import preset

        explicit = {k: v for k, v in given.items() if k in args.explicit}
        given = {**given, **preset(args.preset), **explicit}
    train(TrainConfig(**given), resume=args.resume)


def _sweep(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .config import TrainConfig
    from .sweep import main as sweep_main

    fields = TrainConfig.__dataclass_fields__
    sweep_main(args, TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and k not in ("out", "beta")}))


def _presets(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .presets import listing

    print(listing())


def _reproduce(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .reproduce import main as reproduce_main

    reproduce_main(list(rest))


def _eval(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .evaluate import main as eval_main

    eval_main(list(rest))


def _compare(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .compare import main as compare_main

    compare_main(list(rest))


def _export(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .export import main as export_main

    export_main(list(rest))


def _plot(args: argparse.Namespace, rest: Sequence[str]) -> None:
    from .plot import main as plot_main

    plot_main(list(rest))


COMMANDS: Dict[str, Callable[[argparse.Namespace, Sequence[str]], None]] = {
    "bench": _bench,
    "train": _train,
    "eval": _eval,
    "compare": _compare,
    "plot": _plot,
    "export": _export,
    "presets": _presets,
    "sweep": _sweep,
    "reproduce": _reproduce,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pysnn", description="Spiking networks with fused kernels.")
    commands = parser.add_subparsers(dest="command", required=True)
    # Its own -h: `pysnn bench NAME --help` is passed on to the benchmark.
    bench = commands.add_parser(
        "bench",
        help="benchmark fused ops against pure PyTorch",
        add_help=False,
        description="Run `pysnn bench NAME --help` for a benchmark's options.",
    )
    bench.add_argument("-h", "--help", action="store_true", dest="bench_help", help="show this help message")
    bench.add_argument(
        "which", nargs="?", choices=sorted(BENCHMARKS) + ["all"], help="which benchmark (all: every one)"
    )
    bench.set_defaults(bench_parser=bench)
    commands.add_parser("eval", help="evaluate a trained run, clean and under input noise", add_help=False)
    commands.add_parser("plot", help="PNGs of a run: curves, firing rates, information plane", add_help=False)
    commands.add_parser(
        "compare", help="several runs' accuracy under the same input noise: table and PNG", add_help=False
    )
    commands.add_parser(
        "export", help="a trained run's network as a NIR graph (neuromorphic toolchains)", add_help=False
    )
    commands.add_parser("presets", help="list the thesis presets with their reported accuracy")
    commands.add_parser("reproduce", help="a thesis table, one command each (`pysnn reproduce --list`)", add_help=False)
    train = commands.add_parser("train", help="train a spiking network (default: HLL pred-sim, MLP, digits)")
    _add_train_arguments(train)
    sweep = commands.add_parser(
        "sweep",
        help="normalised HBH over several beta, with BPTT and HSIC(Z, Z): "
        "information plane and accuracy-robustness PNGs",
        conflict_handler="resolve",
    )  # its --beta takes several values
    _add_train_arguments(sweep)
    sweep.add_argument("--beta", type=float, nargs="+", required=True, help="the betas to train, e.g. 1 2 4 8 32")
    sweep.add_argument("--noise-sweep", action="append", default=[], metavar="KIND:L1,L2,...")
    sweep.add_argument("--noise-space", default="pixel", choices=["pixel", "normalised"])
    argv = sys.argv[1:] if argv is None else list(argv)
    args, rest = parser.parse_known_args(argv)
    args.explicit = {
        action.dest
        for action in train._actions
        for option in action.option_strings
        if any(a == option or a.startswith(option + "=") for a in argv)
    }
    if args.command in ("train", "sweep") and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        COMMANDS[args.command](args, rest)
    except KeyboardInterrupt:
        print("pysnn: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"pysnn: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from .distributed import DistributedError

        if not isinstance(error, DistributedError):
            raise
        print(f"pysnn: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
