"""`pysnn train`: the epoch loop of one process and of data-parallel ranks;
layer-parallel runs hand the prepared run to `distributed.pipeline`."""

from __future__ import annotations

from typing import Optional

from .config import TrainConfig
from .run import Run, prepare, write_json_atomic


def train(config: TrainConfig, log=print, resume: Optional[str] = None) -> dict:
    """Trains as `config` says, or continues the run in `resume`; returns the
    metrics, also written to RUN_DIR/metrics.json after every epoch, with a
    checkpoint beside them. `--parallel` runs under torchrun."""
    run = prepare(config, log, resume)
    try:
        execute(run)
        return run.finish()
    finally:
        if run.dist is not None:
            run.dist.close()


def execute(run: Run) -> None:
    """The epochs of a prepared run, in its layout (one process, data or layer parallel)."""
    try:
        if run.config.parallel == "layer":
            from .distributed.pipeline import train_layer_parallel

            train_layer_parallel(run)
        else:
            _train_epochs(run)
    except KeyboardInterrupt:
        done = run.metrics["epochs"][-1]["epoch"] if run.metrics["epochs"] else 0
        run.log(
            f"interrupted during epoch {done + 1}; the checkpoint after epoch {done} is in {run.out}. "
            f"Continue with: pysnn train --resume {run.out}"
        )
        raise


def _train_epochs(run: Run) -> None:
    """One process, or data parallel: every rank trains its slice of each batch."""
    parallel = None
    if run.dist is not None:
        from .distributed.data_parallel import DataParallel

        parallel = DataParallel(run.dist, run.model, run.trainer, run.config.global_kernels)
        if run.payload is not None:
            parallel.restore_dropout_states(run.payload.get("rng_ranks", {}).get(run.dist.rank, {}))
            if run.position is not None:
                run.position = parallel.restore_rank_state(run.payload["position_ranks"][run.dist.rank], run.position)
    trainer, device = run.trainer, run.device
    for epoch in range(run.first_epoch, run.config.epochs + 1):
        if run.reached_target:  # a run resumed after it stopped at --stop-at-accuracy
            break
        state = run.start_epoch(epoch)
        trainer.train()
        bar = run.progress(run.batches(state), epoch, run.batches_per_epoch, initial=state.batch)
        for images, labels in bar:
            state.batch += 1
            if parallel is not None:
                if len(labels) < run.dist.world:  # a last batch too small to give every rank a sample
                    continue  # (every rank sees the same global batch, so all skip it together)
                images, labels = parallel.shard(images, labels)
            images, labels = images.to(device), labels.to(device)
            loss, logits = trainer.step(images, labels)
            run.check_finite(loss, state)
            state.add(loss, (logits.argmax(1) == labels).sum().item(), len(labels))
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", acc=f"{state.correct / state.seen:.3f}")
            if run.stop_check_due(state) and run.reached_target_inside(state):
                _save_position(run, parallel, state)
                bar.close()
                if run.is_main:
                    write_json_atomic(run.out / "metrics.json", run.metrics)
                return
            if run.checkpoint_due(state):
                _save_position(run, parallel, state)
        trainer.end_epoch()
        loss_sum, correct, seen = state.stats
        extra = None
        if parallel is not None:
            parallel.end_epoch()
            loss_sum, correct, seen = run.dist.all_sum(state.stats)
            ranks = run.dist.gather(parallel.dropout_states())
            extra = {
                "world_size": run.dist.world,
                "parallel": "data",
                "rng_ranks": dict(enumerate(ranks)) if ranks is not None else None,
            }
        if run.is_main:
            run.finish_epoch(epoch, loss_sum, correct, seen, state.elapsed(), extra)
        if run.stop_now():
            break


def _save_position(run: Run, parallel, state) -> None:
    """A mid-epoch checkpoint; data-parallel ranks each add their own share
    (running statistics, dropout streams, partial sums)."""
    extra = None
    if parallel is not None:
        ranks = run.dist.gather((parallel.dropout_states(), parallel.rank_state(state)))
        if not run.is_main:
            return
        extra = {
            "world_size": run.dist.world,
            "parallel": "data",
            "rng_ranks": {r: dropout for r, (dropout, _) in enumerate(ranks)},
            "position_ranks": {r: share for r, (_, share) in enumerate(ranks)},
        }
    run.save_position(state, extra)
