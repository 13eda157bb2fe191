"""Layer-parallel speed-up, measured honestly on any machine.

1. Per-block step times of the chosen network and rule on one device
   (synchronised timers) and the bytes of each inter-stage message.
2. The predicted pipeline speed-up for 2, 3, 4 stages:
   T_seq / max over stages (its blocks + packing/unpacking its messages;
   transfers overlap, being asynchronous sends).
3. A runtime check: every block's compute replaced by a sleep of its measured
   time, the real pipeline code (processes, gloo, real message sizes) run, and
   the steady-state speed-up measured against the prediction. Sleeping
   processes do not compete for cores, so this holds on a 2-core machine,
   where wall-clock speed-ups of real stages sharing the cores would not.
On a machine with one GPU per stage, train with `torchrun --parallel layer`
and compare epoch times instead (README, "Scaling out")."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import List, Sequence

import torch

from ..config import TrainConfig
from ..distributed.pipeline import Stage, balanced_split, profile_step, run_stage
from ..distributed.runtime import DistContext, destroy_process_group
from ..epoch import EpochState
from .timing import JsonRows, format_table
from .train import SHAPES


def stage_times(profile: dict, split: Sequence[int]) -> List[float]:
    """Each stage's seconds per batch: its blocks, the context/encoder on the
    first, the head on the last, packing what it sends and unpacking what it receives."""
    times, start = [], 0
    for s, count in enumerate(split):
        blocks = range(start, start + count)
        t = sum(profile["block_s"][i] for i in blocks)
        if s == 0:
            t += profile["context_s"]
        else:
            t += profile["unpack_s"][start - 1]
        if s == len(split) - 1:
            t += profile["head_s"]
        else:
            t += profile["pack_s"][blocks[-1]]
        times.append(t)
        start += count
    return times


def sequential_time(profile: dict) -> float:
    return profile["context_s"] + sum(profile["block_s"]) + profile["head_s"]


class SleepTrainer:
    """A trainer whose every part sleeps for its measured time and emits
    random spikes of the real shape, for the pipeline runtime check."""

    def __init__(self, profile: dict, timesteps: int, batch: int, scale: float) -> None:
        # One call per message: a batch's T steps, or one step in real-time mode.
        self.messages = profile.get("messages_per_batch", 1)
        self.profile, self.scale = profile, scale / self.messages
        gen = torch.Generator().manual_seed(0)
        steps = timesteps // self.messages
        self.outputs = [
            (torch.rand(steps, batch, *shape, generator=gen) < 0.2).float() for shape in profile["shapes"][1:]
        ]
        self.optimizer_blocks, self.schedulers, self.finished = [], [], []
        self._head_calls = 0

    def train(self, mode: bool = True) -> None:
        pass

    def start_sequence(self) -> None:  # sleeping layers carry no membrane
        pass

    @contextlib.contextmanager
    def sequence(self):
        yield

    def batch_context(self, images, labels):
        time.sleep(self.scale * self.messages * self.profile["context_s"])  # once per batch
        return None

    def layer_step(self, index, h, labels, context):
        time.sleep(self.scale * self.profile["block_s"][index])
        return self.outputs[index]

    def train_head(self, h, labels):
        time.sleep(self.scale * self.profile["head_s"])
        self._head_calls += 1
        if self._head_calls % self.messages == 0:  # the batch's last step
            self.finished.append(time.perf_counter())
        return 0.0, torch.zeros(len(labels), 10)

    def state_dict(self) -> dict:
        return {"aux": {}, "optimizers": [], "schedulers": []}

    def load_state_dict(self, state: dict) -> None:
        pass


def _sleep_worker(rank, world, rdzv, profile, split, batches, depth, timesteps, batch, scale, out):
    update = "realtime" if profile.get("messages_per_batch", 1) > 1 else "final"
    torch.set_num_threads(1)
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
    )
    trainer = SleepTrainer(profile, timesteps, batch, scale)
    images = torch.zeros(batch, *profile["shapes"][0])
    labels = torch.zeros(batch, dtype=torch.int64)
    n_blocks = len(profile["block_s"])
    run = SimpleNamespace(
        config=SimpleNamespace(epochs=1, pipeline_depth=depth, timesteps=timesteps, update=update),
        first_epoch=1,
        reached_target=False,
        trainer=trainer,
        device=torch.device("cpu"),
        log=lambda message: None,
        is_main=rank == 0,
        dist=DistContext(rank, world, torch.device("cpu"), datetime.timedelta(seconds=120)),
        model=SimpleNamespace(
            encode=lambda x: x.unsqueeze(0).expand(timesteps, *x.shape),
            blocks=[SimpleNamespace(output_scale=1.0)] * n_blocks,
            parameters=lambda: iter([torch.zeros(1)]),
            state_dict=dict,
            load_state_dict=lambda state: None,
        ),
        start_epoch=lambda epoch: EpochState(epoch, torch.zeros(0)),
        batches=lambda state: ((images, labels) for _ in range(batches)),
        batches_per_epoch=batches,
        progress=lambda iterable, epoch, total, initial=0: iterable,
        checkpoint_due=lambda state: False,
        finish_epoch=lambda *args, **kwargs: None,
    )
    run_stage(Stage(run, split, shapes=[tuple(s) for s in profile["shapes"]]))
    if rank == world - 1:
        Path(out).write_text(json.dumps(trainer.finished))
    destroy_process_group()


def sleep_check(
    profile: dict, split: Sequence[int], batches: int, depth: int, timesteps: int, batch: int, scale: float
) -> float:
    """Seconds per batch of the real pipeline in steady state (after the fill)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "finished.json"
        torch.multiprocessing.start_processes(
            _sleep_worker,
            args=(len(split), f"{tmp}/rdzv", profile, list(split), batches, depth, timesteps, batch, scale, str(out)),
            nprocs=len(split),
            start_method="spawn",
        )
        finished = json.loads(out.read_text())
    skip = len(split)  # the pipeline fills during the first S batches
    return (finished[-1] - finished[skip]) / (len(finished) - 1 - skip)


def run(
    model: str = "mlp",
    rule: str = "hll",
    hidden: Sequence[int] = (1024, 1024, 1024),
    batch: int = 64,
    timesteps: int = 10,
    stages: Sequence[int] = (2, 3, 4),
    update: str = "final",
    device: str = "cpu",
    repeats: int = 3,
    check: bool = True,
    batches: int = 40,
    depth: int = 2,
    min_stage_s: float = 0.01,
    on_row=lambda row: None,
):
    config = TrainConfig(
        rule=rule, model=model, hidden=list(hidden), batch_size=batch, timesteps=timesteps, device=device, update=update
    )
    shape = SHAPES[model]
    images = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(batch) % 10
    profile = profile_step(config, shape, 10, images, labels, torch.device(device), repeats)
    t_seq = sequential_time(profile)
    print(
        f"{model} ({'-'.join(map(str, hidden)) if model == 'mlp' else 'VGG8'}), {rule}, batch {batch}, "
        f"T {timesteps}, {update} updates, {device}: one step {1e3 * t_seq:.1f} ms"
    )
    print(
        "  per block (ms):",
        ", ".join(f"{1e3 * t:.1f}" for t in profile["block_s"]),
        f"| encoder+context {1e3 * profile['context_s']:.1f} | head {1e3 * profile['head_s']:.1f}",
    )
    print(
        f"  {profile['messages_per_batch']} message(s) per batch and boundary, each (kB):",
        ", ".join(f"{b / 1e3:.1f}" for b in profile["message_bytes"]),
    )
    rows = []
    for count in stages:
        if count > len(profile["block_s"]):
            continue
        times = list(profile["block_s"])
        times[0] += profile["context_s"]
        times[-1] += profile["head_s"]
        split = balanced_split(times, count)
        per_stage = stage_times(profile, split)
        predicted = t_seq / max(per_stage)
        row = {
            "model": model,
            "rule": rule,
            "update": update,
            "stages": count,
            "split": ",".join(map(str, split)),
            "stage_ms": "/".join(f"{1e3 * t:.1f}" for t in per_stage),
            "predicted": round(predicted, 2),
        }
        if check:
            # Short stages are scaled up so sleeps are long enough to time.
            scale = max(1.0, min_stage_s / min(per_stage))
            interval = sleep_check(profile, split, batches, depth, timesteps, batch, scale)
            row["sleep_scale"] = round(scale, 2)
            row["measured"] = round(scale * t_seq / interval, 2)
            row["measured/predicted"] = round(row["measured"] / predicted, 2)
        rows.append(row)
        on_row(row)
    print(format_table(rows, list(rows[0])))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="pysnn bench parallel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn", "vgg8"])
    parser.add_argument("--rule", default="hll", choices=["hll", "hbh"])
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024, 1024])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--timesteps", type=int, default=10)
    parser.add_argument("--stages", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument(
        "--update",
        nargs="+",
        default=["final"],
        choices=["final", "realtime"],
        help="the pipeline's unit: a batch's T steps (final) or one time step (realtime); one table each",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per block (after one warm-up)")
    parser.add_argument("--batches", type=int, default=40, help="batches through the sleep-check pipeline")
    parser.add_argument("--pipeline-depth", type=int, default=2)
    parser.add_argument(
        "--min-stage-ms",
        type=float,
        default=10.0,
        help="sleep check: scale the sleeps so the shortest stage takes at least this",
    )
    parser.add_argument("--no-check", action="store_true", help="prediction only, no sleep check")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if any(s < 2 for s in args.stages):
        parser.error("--stages must be >= 2")
    sink = JsonRows(args.json)
    for update in args.update:
        run(
            args.model,
            args.rule,
            args.hidden,
            args.batch,
            args.timesteps,
            args.stages,
            update,
            args.device,
            args.repeats,
            not args.no_check,
            args.batches,
            args.pipeline_depth,
            args.min_stage_ms / 1e3,
            sink,
        )


if __name__ == "__main__":
    main()
