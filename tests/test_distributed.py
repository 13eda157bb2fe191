"""Data- and layer-parallel training against the single-process trainer.

Workers are separate processes (spawn) joined by a file rendezvous (no
ports), one thread each, 60 s timeouts; each spawn runs several trainings."""

import datetime
import multiprocessing
import os
import time

import pytest
import torch
import torch.distributed as dist
from test_resume import numbers

from pysnn.cli import main as cli_main
from pysnn.config import TrainConfig
from pysnn.train import train

BASE = dict(
    dataset="digits", subset=240, hidden=[48, 40, 32], epochs=2, batch_size=30, timesteps=4, progress=False, seed=3
)


def _worker(rank, world, rdzv, jobs, timeout_s, die_after, snapshot_at=None):
    """Runs each (name, config kwargs, resume) job as one rank; saves this
    rank's final parameters as NAME.rankR.pt; a DistributedError is written to
    error.rankR.txt. `snapshot_at`: see test_resume.snapshot_mid_epoch."""
    torch.set_num_threads(1)
    if snapshot_at is not None:
        from test_resume import snapshot_mid_epoch

        snapshot_mid_epoch(snapshot_at, copies=2)
    dist.init_process_group(
        "gloo", init_method=f"file://{rdzv}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s)
    )
    if die_after is not None and rank == 1:
        from pysnn.learning.base import LocalTrainer

        original, calls = LocalTrainer.layer_step, [0]

        def dying(self, *args):
            calls[0] += 1
            if calls[0] > die_after:
                os._exit(17)  # a crash: no clean shutdown, no message to the peer
            return original(self, *args)

        LocalTrainer.layer_step = dying
    from pysnn.distributed import DistributedError, destroy_process_group
    from pysnn.run import prepare
    from pysnn.train import execute

    for _name, kwargs, resume in jobs:
        try:
            run = prepare(TrainConfig(**{**kwargs, "dist_timeout": timeout_s}), lambda message: None, resume)
            execute(run)
        except DistributedError as error:
            with open(os.path.join(os.path.dirname(rdzv), f"error.rank{rank}.txt"), "w") as f:
                f.write(str(error))
            break
        torch.save(run.model.state_dict(), f"{kwargs['out']}.rank{rank}.pt")
        run.finish()
    destroy_process_group()  # settles gloo's threads first: see pysnn/distributed/runtime.py


def _launch(tmp_path, world, jobs, timeout_s=60, die_after=None, wait_s=120, snapshot_at=None):
    """Starts `world` ranks; returns their exit codes (None: still running at wait_s)."""
    ctx = multiprocessing.get_context("spawn")
    rdzv = str(tmp_path / "rdzv")
    procs = [
        ctx.Process(target=_worker, args=(r, world, rdzv, jobs, timeout_s, die_after, snapshot_at))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    deadline = time.time() + wait_s
    for p in procs:
        p.join(max(0.1, deadline - time.time()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    return codes


def _state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


def _single(tmp_path, name, **kwargs):
    torch.set_num_threads(1)
    out = tmp_path / name
    train(TrainConfig(**{**BASE, **kwargs, "out": str(out)}), log=lambda message: None)
    return _state(out)


def _max_difference(a, b):
    """The largest difference of two state dicts' tensors, relative to each
    tensor's scale where that exceeds 1 (HLL's sum-reduced sim loss under SGD
    grows some weights to ~1e6 in a few steps, one process or two)."""
    return max(
        ((a[k].double() - b[k].double()).abs().max() / a[k].double().abs().max().clamp(min=1)).item()
        for k in a
        if isinstance(a[k], torch.Tensor) and a[k].is_floating_point()
    )


def _identical(a, b):
    return all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_data_parallel_equals_one_process_and_keeps_ranks_identical(tmp_path):
    # The per-layer all-reduce weights each slice by its share: the sum over
    # ranks is the global batch's gradient. Exact up to rounding with SGD;
    # Adam amplifies rounding on near-zero gradients (the zero-initialised
    # auxiliary classifier), so HLL is compared under SGD.
    # --global-kernels: the HSIC kernels, sim and contrast see the whole batch,
    # so HBH and HLL pred-sim-contrast are the single-process objective too.
    # batch 25 over 2 ranks: slices of 13 and 12.
    runs = {
        "bptt": dict(rule="bptt", batch_norm=False),
        "hll": dict(rule="hll", loss="pred", batch_norm=False, optimizer="sgd"),
        "hbh": dict(rule="hbh", hsic_term="input"),  # fused hsic_update, .grad written by hand
        "hbh-global": dict(rule="hbh", hsic_term="self", optimizer="sgd", global_kernels=True, batch_size=25),
        "hbh-input-global": dict(rule="hbh", hsic_term="input", optimizer="sgd", global_kernels=True),
        "hll-global": dict(
            rule="hll", loss="pred-sim-contrast", batch_norm=False, optimizer="sgd", global_kernels=True, batch_size=25
        ),
    }
    jobs = [
        (name, {**BASE, **kw, "parallel": "data", "out": str(tmp_path / f"dp-{name}")}, None)
        for name, kw in runs.items()
    ]
    assert _launch(tmp_path, 2, jobs) == [0, 0]
    for name, kw in runs.items():
        parallel = _state(tmp_path / f"dp-{name}")
        assert parallel["world_size"] == 2 and parallel["parallel"] == "data"
        assert set(parallel["rng_ranks"]) == {0, 1}
        ranks = [torch.load(tmp_path / f"dp-{name}.rank{r}.pt", weights_only=False) for r in (0, 1)]
        assert _identical(ranks[0], ranks[1]), name  # every rank applied the same reduced gradients
        if name != "hbh":  # HSIC kernels see the local slice by design: not the single-process objective
            single = _single(tmp_path, f"single-{name}", **{k: v for k, v in kw.items() if k != "global_kernels"})
            assert _max_difference(single["model"], parallel["model"]) < 1e-6, name


def test_layer_parallel_is_the_single_process_trainer_bit_for_bit(tmp_path):
    runs = {
        "hll": dict(rule="hll", dropout=0.2),
        "hbh-input": dict(rule="hbh", hsic_term="input", dropout=0.2),  # modulator sent between stages
        "hbh-self": dict(rule="hbh", batch_norm=True, dropout=0.1),  # post-signal path, batch norm
        # real-time updates: one message per time step, membranes carried by each stage
        "hll-realtime": dict(rule="hll", dropout=0.2, update="realtime"),
        "hbh-input-realtime": dict(rule="hbh", hsic_term="input", dropout=0.2, update="realtime"),
        # a window term after the last step, from each stage's running sums
        "hll-realtime-recon": dict(rule="hll", loss="pred-recon", update="realtime"),
        # conv blocks with batch norm: norm_lif_pool_step, membranes settled by each stage
        "hll-realtime-cnn": dict(rule="hll", model="cnn", batch_norm=True, update="realtime"),
    }
    jobs = [
        (name, {**BASE, **kw, "parallel": "layer", "out": str(tmp_path / f"lp-{name}")}, None)
        for name, kw in runs.items()
    ]
    assert _launch(tmp_path, 2, jobs) == [0, 0]
    for name, kw in runs.items():
        single, parallel = _single(tmp_path, f"single-{name}", **kw), _state(tmp_path / f"lp-{name}")
        assert _identical(single["model"], parallel["model"]), name
        assert single["metrics"]["test_acc"] == parallel["metrics"]["test_acc"], name
        assert parallel["parallel"] == "layer" and parallel["world_size"] == 2


def test_a_dead_peer_ends_the_others_and_the_run_resumes_in_one_process(tmp_path):
    # Stage 1 (one block of three) crashes in the second epoch, after the
    # first epoch's checkpoint: stage 0 stops with one line within the timeout.
    kwargs = {**BASE, "rule": "hll", "dropout": 0.2, "stages_split": [2, 1]}
    job = ("dies", {**kwargs, "parallel": "layer", "out": str(tmp_path / "dies")}, None)
    start = time.time()
    codes = _launch(tmp_path, 2, [job], timeout_s=10, die_after=10, wait_s=60)
    assert codes[1] == 17 and codes[0] == 0, codes
    assert time.time() - start < 45
    message = (tmp_path / "error.rank0.txt").read_text()
    assert "distributed peer failed or timed out" in message and "\n" not in message
    # the layer-parallel checkpoint continues in one process exactly as an uninterrupted run
    assert _state(tmp_path / "dies")["epoch"] == 1
    train(TrainConfig(progress=False), log=lambda m: None, resume=str(tmp_path / "dies"))
    kwargs.pop("stages_split")
    assert _identical(_state(tmp_path / "dies")["model"], _single(tmp_path, "uninterrupted", **kwargs)["model"])


def test_mid_epoch_checkpoints_of_both_layouts_resume_exactly(tmp_path):
    # 8 batches an epoch, a checkpoint every 3: the snapshot is epoch 2 after 3 batches.
    # Data parallel with batch norm: each rank's running statistics are its own until the epoch ends.
    data = {**BASE, "rule": "hll", "loss": "pred", "optimizer": "sgd", "batch_norm": True, "dropout": 0.2}
    layer = {**BASE, "rule": "hbh", "batch_norm": True, "dropout": 0.1, "update": "realtime", "hsic_term": "input"}
    runs = {"dp": {**data, "parallel": "data"}, "lp": {**layer, "parallel": "layer"}}
    jobs = [(n, {**kw, "checkpoint_every": 3, "out": str(tmp_path / n)}, None) for n, kw in runs.items()]
    jobs += [
        (f"{n}-resumed", {**kw, "out": str(tmp_path / f"{n}-snapshot")}, str(tmp_path / f"{n}-snapshot"))
        for n, kw in runs.items()
    ]
    assert _launch(tmp_path, 2, jobs, snapshot_at=3) == [0, 0]
    for name in runs:  # resumed in its own layout
        uninterrupted, resumed = _state(tmp_path / name), _state(tmp_path / f"{name}-snapshot")
        assert _identical(uninterrupted["model"], resumed["model"]), name
        assert numbers(uninterrupted["metrics"]) == numbers(resumed["metrics"]), name
        taken = _state(tmp_path / f"{name}-snapshot2")
        assert (taken["epoch"], taken["position"]["batch"], taken["parallel"]) == (1, 3, runs[name]["parallel"])
    # the layer-parallel checkpoint taken mid-epoch resumes in one process
    single = _single(tmp_path, "single", **layer)  # one thread, as each rank
    resumed = train(TrainConfig(progress=False), log=lambda m: None, resume=str(tmp_path / "lp-snapshot2"))
    assert _identical(single["model"], _state(tmp_path / "lp-snapshot2")["model"])
    assert _identical(single["model"], _state(tmp_path / "lp")["model"])
    assert numbers(resumed) == numbers(single["metrics"])
    # the data-parallel one holds each rank's share: other layouts are refused with one line
    with pytest.raises(ValueError, match="resume it in --parallel data with 2 processes"):
        train(TrainConfig(progress=False), log=lambda m: None, resume=str(tmp_path / "dp-snapshot2"))


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--parallel", "layer", "--rule", "bptt"], "needs a local rule"),
        (["--stages-split", "2,1"], "--stages-split needs --parallel layer"),
        (["--parallel", "data"], "runs under torchrun"),
        (["--parallel", "layer", "--pipeline-depth", "0"], "--pipeline-depth must be >= 1"),
        (["--parallel", "data", "--dist-timeout", "-1"], "--dist-timeout must be > 0"),
    ],
)
def test_bad_parallel_flags_give_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli_main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_balanced_split_minimises_the_slowest_stage():
    from pysnn.distributed.pipeline import balanced_split

    assert balanced_split([1, 1, 1, 1], 2) == [2, 2]
    assert balanced_split([5, 1, 1, 1, 1], 2) == [1, 4]
    assert balanced_split([1, 2, 3, 4, 5], 3) == [3, 1, 1]
    with pytest.raises(ValueError):
        balanced_split([1, 2], 3)


@pytest.mark.parametrize("messages", [1, 4])
def test_sleep_check_runs_the_real_pipeline_at_the_predicted_speed(messages):
    # Stages that sleep 20-40 ms per batch: two of them should near double the
    # throughput of one process (sleeping processes share no cores), whether a
    # batch crosses a boundary as one message or, with real-time updates, as
    # one message per time step.
    from pysnn.bench.parallel import sequential_time, sleep_check, stage_times

    profile = {
        "messages_per_batch": messages,
        "context_s": 0.0,
        "head_s": 0.0,
        "block_s": [0.01 * max(2, messages)] * 2,  # at least 10 ms a message: timer and wake-up noise stay small
        "pack_s": [0.0, 0.0],
        "unpack_s": [0.0, 0.0],
        "shapes": [(1, 8, 8), (32,), (16,)],
        "message_bytes": [0, 0],
    }
    predicted = sequential_time(profile) / max(stage_times(profile, [1, 1]))
    interval = sleep_check(profile, [1, 1], batches=15, depth=2, timesteps=4, batch=8, scale=1.0)
    measured = sequential_time(profile) / interval
    assert predicted == pytest.approx(2.0)
    assert 0.8 * predicted < measured < 1.1 * predicted, measured


def _mismatched_worker(rank, rdzv, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rdzv}", rank=rank, world_size=2)
    from pysnn.run import prepare

    try:
        prepare(TrainConfig(**{**BASE, "parallel": "data", "lr": 0.002 if rank == 0 else 0.001, "out": out}))
    except ValueError as error:
        with open(f"{out}.rank{rank}.txt", "w") as f:
            f.write(str(error))
    from pysnn.distributed import destroy_process_group

    destroy_process_group()


def test_ranks_started_with_different_configurations_refuse_with_one_line(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    out = str(tmp_path / "run")
    procs = [ctx.Process(target=_mismatched_worker, args=(r, str(tmp_path / "rdzv"), out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for rank in (0, 1):
        message = (tmp_path / f"run.rank{rank}.txt").read_text()
        assert message == "ranks started with different configurations: --lr is 0.002 on rank 0 and 0.001 on rank 1"
    assert not (tmp_path / "run").exists()  # refused before anything was written
