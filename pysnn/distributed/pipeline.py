"""Layer parallel: one process per stage, each owning a contiguous group of
blocks; a batch flows through the stages like a pipeline while every stage
updates its own layers from their local signals, at the same time.

Stage 0 owns the data, the encoder and any per-batch matrix built from the
input; the last stage owns the output head. Between stages, point-to-point
messages: an int64 header [kind, epoch, index, batch size, has modulator,
time step], then the spikes as uint8, the labels and, when the rule builds
one from the input, the m×m modulator. With final-step updates a message
carries a batch's T steps; with real-time updates (`--update realtime`) one
step, so stage k works on (batch i, step t) as soon as stage k − 1 has sent
it, and each stage carries its own layers' membranes from step to step. At most `--pipeline-depth` sends per link are
unfinished. Layer l+1 sees batch i from layer l's weights before layer l's
update on batch i, exactly as in one process, so this FIFO pipeline is the
single-process trainer, bit for bit: same spikes, same updates."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from ..learning.base import StepMeans
from .runtime import DistContext, guarded

BATCH, EPOCH_END, STOP, CHECKPOINT = 0, 1, 2, 3
HEADER_SIZE = 6


class Link:
    """One direction of a stage boundary, with back-pressure on sends."""

    def __init__(self, peer: int, depth: int, context: DistContext) -> None:
        self.peer, self.depth, self.timeout = peer, depth, context.timeout
        self._pending: deque = deque()

    def send(self, tensors: Sequence[torch.Tensor]) -> None:
        while len(self._pending) >= self.depth:
            self._wait_oldest()
        tensors = [t.contiguous() for t in tensors]
        works = [guarded(dist.isend, t, self.peer) for t in tensors]
        self._pending.append((works, tensors))  # the tensors stay alive until sent

    def post(self, tensor: torch.Tensor):
        """Starts receiving into `tensor`; `wait` on the result finishes it."""
        return tensor, guarded(dist.irecv, tensor, self.peer)

    def wait(self, posted) -> torch.Tensor:
        tensor, work = posted
        guarded(work.wait, self.timeout)
        return tensor

    def recv(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.wait(self.post(tensor))

    def drain(self) -> None:
        while self._pending:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        works, _ = self._pending.popleft()
        for work in works:
            guarded(work.wait, self.timeout)


def header(
    kind: int, epoch: int = 0, index: int = 0, batch: int = 0, has_modulator: bool = False, step: int = 0
) -> torch.Tensor:
    return torch.tensor([kind, epoch, index, batch, int(has_modulator), step], dtype=torch.int64)


def balanced_split(times: Sequence[float], stages: int) -> List[int]:
    """Blocks per stage: the contiguous split of `times` with the smallest
    slowest stage (exhaustive over cut points; networks have few blocks)."""
    n = len(times)
    if not 1 <= stages <= n:
        raise ValueError(f"cannot split {n} blocks into {stages} stages")
    best: Tuple[float, List[int]] = (float("inf"), [])

    def search(start: int, left: int, counts: List[int], worst: float) -> None:
        nonlocal best
        if worst >= best[0]:
            return
        if left == 1:
            last = sum(times[start:])
            best = min(best, (max(worst, last), counts + [n - start]))
            return
        for end in range(start + 1, n - left + 2):
            search(end, left - 1, counts + [end - start], max(worst, sum(times[start:end])))

    search(0, stages, [], 0.0)
    return best[1]


def block_input_shapes(model, image_shape) -> List[Tuple[int, ...]]:
    """The per-sample input shape of every block, and after the last, the head's."""
    shapes = [tuple(image_shape)]
    for block in model.blocks:
        shapes.append(block.output_shape(shapes[-1]))
    return shapes


def measure_block_times(run, repeats: int = 3) -> List[float]:
    """Seconds per block of one training step of `run`'s rule, the encoder and
    per-batch context counted with the first block and the head with the last
    (what each stage will do)."""
    images = run.dataset.train.take(slice(0, run.config.batch_size))
    labels = run.dataset.train.labels[: run.config.batch_size]
    profile = profile_step(
        run.config, run.dataset.image_shape, run.dataset.classes, images, labels, run.device, repeats
    )
    times = list(profile["block_s"])
    times[0] += profile["context_s"]
    times[-1] += profile["head_s"]
    return times


def profile_step(
    config,
    image_shape,
    classes: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    repeats: int = 3,
) -> dict:
    """Seconds of each part of one training step on one device (synchronised
    timers, after one warm-up step): the encoder and per-batch context, every
    block's layer_step, the head; and per block boundary, the bytes of one
    message and the time to pack the spikes into uint8 and to unpack them
    (with real-time updates: one message per time step, times summed over the
    batch's steps). Runs on a
    throw-away copy of the network: the caller's random streams are untouched."""
    from ..learning import make_trainer
    from ..models import build_model

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = build_model(config, image_shape, classes).to(device)
        trainer = make_trainer(model, config, classes, image_shape)
        trainer.aux.to(device)
        trainer.train()
        images, labels = images.to(device), labels.to(device)
        n = len(model.blocks)
        # Real-time updates: the pipeline sends one message per time step, and
        # each part's time is the sum over the batch's T steps.
        messages = config.timesteps if config.update == "realtime" else 1
        sums = {"context_s": 0.0, "head_s": 0.0, "block_s": [0.0] * n, "pack_s": [0.0] * n, "unpack_s": [0.0] * n}
        for repeat in range(repeats + 1):
            weight = 1.0 if repeat else 0.0  # the first round warms up
            t = _timed(device, lambda: (trainer.batch_context(images, labels), model.encode(images)))
            sums["context_s"] += weight * t[0]
            context, steps = t[1]
            if messages > 1:
                trainer.start_sequence()
            for step in range(messages):
                h = steps[step : step + 1] if messages > 1 else steps
                for index in range(n):
                    seconds, h = _timed(device, trainer.layer_step, index, h, labels, context)
                    sums["block_s"][index] += weight * seconds
                    seconds, packed = _timed(device, _pack_spikes, h)
                    sums["pack_s"][index] += weight * seconds
                    scale = model.blocks[index].output_scale
                    seconds, _ = _timed(device, _unpack_spikes, packed, device, h.dtype, scale)
                    sums["unpack_s"][index] += weight * seconds
                seconds, _ = _timed(device, trainer.train_head, h, labels)
                sums["head_s"] += weight * seconds
        shapes = block_input_shapes(model, image_shape)
        out = {k: ([x / repeats for x in v] if isinstance(v, list) else v / repeats) for k, v in sums.items()}
        batch = len(labels)
        modulator_bytes = 4 * batch * batch if trainer.batch_context(images, labels) is not None else 0
        steps_per_message = config.timesteps // messages
        out["message_bytes"] = [
            HEADER_SIZE * 8 + steps_per_message * batch * _numel(shape) + 8 * batch + modulator_bytes
            for shape in shapes[1:-1]
        ]
        out["messages_per_batch"] = messages
        out["shapes"] = shapes
        return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _pack_spikes(h: torch.Tensor) -> torch.Tensor:
    return (h != 0).to(torch.uint8).cpu()


def _unpack_spikes(packed: torch.Tensor, device: torch.device, dtype: torch.dtype, scale: float) -> torch.Tensor:
    return packed.to(device=device, dtype=dtype) * scale


def _timed(device: torch.device, fn, *args):
    _sync(device)
    start = time.perf_counter()
    result = fn(*args)
    _sync(device)
    return time.perf_counter() - start, result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stage:
    """This process's part of the pipeline: its blocks, its links."""

    def __init__(self, run, split: Sequence[int], shapes: Optional[List[Tuple[int, ...]]] = None) -> None:
        context = run.dist
        self.run, self.rank, self.stages = run, context.rank, context.world
        bounds = [0]
        for count in split:
            bounds.append(bounds[-1] + count)
        self.bounds = bounds
        self.blocks = range(bounds[self.rank], bounds[self.rank + 1])
        self.is_first, self.is_last = self.rank == 0, self.rank == self.stages - 1
        depth = run.config.pipeline_depth
        self.prev = Link(self.rank - 1, depth, context) if not self.is_first else None
        self.next = Link(self.rank + 1, depth, context) if not self.is_last else None
        self.shapes = shapes or block_input_shapes(run.model, run.dataset.image_shape)
        self.dtype = next(run.model.parameters()).dtype
        self.realtime = run.config.update == "realtime"
        # Time steps per message: all T of a batch, or one in real-time mode.
        self.steps_per_message = 1 if self.realtime else run.config.timesteps

    def owner(self, block: Optional[int]) -> int:
        """The stage that trains `block` (None: the head, on the last stage)."""
        if block is None:
            return self.stages - 1
        return next(s for s in range(self.stages) if self.bounds[s] <= block < self.bounds[s + 1])

    def forward(self, h: torch.Tensor, labels: torch.Tensor, context) -> torch.Tensor:
        for index in self.blocks:
            h = self.run.trainer.layer_step(index, h, labels, context)
        return h

    def payload_sizes(self, batch: int, has_modulator: bool) -> List[int]:
        """Bytes of the spikes, the labels and the modulator in a payload this stage receives."""
        spikes = self.steps_per_message * batch * _numel(self.shapes[self.bounds[self.rank]])
        return [spikes, 8 * batch, 4 * batch * batch if has_modulator else 0]

    def send_batch(self, epoch: int, index: int, h: torch.Tensor, labels: torch.Tensor, context, step: int = 0) -> None:
        """The header, then one contiguous payload: spikes as uint8 (kept
        spikes are exactly 0 or the block's dropout scale), labels, modulator."""
        parts = [(h != 0).to(torch.uint8).flatten().cpu(), labels.cpu().view(torch.uint8)]
        if context is not None:
            parts.append(context.float().cpu().flatten().view(torch.uint8))
        message = header(BATCH, epoch, index, len(labels), context is not None, step)
        self.next.send([message, torch.cat(parts)])

    def unpack_batch(self, head: torch.Tensor, payload: torch.Tensor):
        batch, first = int(head[3]), self.bounds[self.rank]
        spikes_bytes, label_bytes, modulator_bytes = self.payload_sizes(batch, bool(head[4]))
        spikes = payload[:spikes_bytes].view(self.steps_per_message, batch, *self.shapes[first])
        labels = payload[spikes_bytes : spikes_bytes + label_bytes].view(torch.int64)
        context = (
            payload[spikes_bytes + label_bytes :].view(torch.float32).view(batch, batch) if modulator_bytes else None
        )
        device = self.run.device
        h = spikes.to(device=device, dtype=self.dtype) * self.run.model.blocks[first - 1].output_scale
        return h, labels.to(device), None if context is None else context.to(device)

    def pass_on(self, message: torch.Tensor) -> None:
        if self.next is not None:
            self.next.send([message])


def train_layer_parallel(run) -> None:
    context: DistContext = run.dist
    blocks = len(run.model.blocks)
    if context.world < 2:
        raise ValueError("--parallel layer needs at least 2 processes (torchrun --nproc_per_node=S)")
    if context.world > blocks:
        raise ValueError(
            f"--parallel layer: {context.world} stages for a network of {blocks} blocks; use at most {blocks} processes"
        )
    split = run.config.stages_split
    if split is None:
        split = context.broadcast(balanced_split(measure_block_times(run), context.world) if context.is_main else None)
    if len(split) != context.world or sum(split) != blocks:
        raise ValueError(
            f"--stages-split {','.join(map(str, split))} must give {context.world} stages "
            f"covering the network's {blocks} blocks"
        )
    stage = Stage(run, split)
    run.log(
        f"layer parallel: {context.world} stages of {', '.join(map(str, split))} blocks "
        f"(blocks {', '.join(f'{stage.bounds[s]}-{stage.bounds[s + 1] - 1}' for s in range(context.world))}"
        f"; the last stage trains the head)"
    )
    run_stage(stage)


def run_stage(stage: Stage) -> None:
    if stage.is_first:
        _drive(stage)
    else:
        _follow(stage)


def _drive(stage: Stage) -> None:
    """Stage 0: reads the data, runs its blocks, sends each batch on, and
    tells the others when the run checkpoints (inside an epoch and at its end)."""
    run = stage.run
    for epoch in range(run.first_epoch, run.config.epochs + 1):
        if run.reached_target:  # (stage 0 is rank 0: it evaluates, so it alone decides)
            break
        state = run.start_epoch(epoch)
        run.trainer.train()
        bar = run.progress(run.batches(state), epoch, run.batches_per_epoch, initial=state.batch)
        for images, labels in bar:
            index, state.batch = state.batch, state.batch + 1
            images, labels = images.to(run.device), labels.to(run.device)
            context = run.trainer.batch_context(images, labels)
            if stage.realtime:  # one message per time step, as LocalTrainer.step_realtime runs them
                steps = run.model.encode(images)
                with run.trainer.sequence():
                    for t in range(steps.shape[0]):
                        h = stage.forward(steps[t : t + 1], labels, context)
                        stage.send_batch(epoch, index, h, labels, context, t)
            else:
                h = stage.forward(run.model.encode(images), labels, context)
                stage.send_batch(epoch, index, h, labels, context)
            if run.checkpoint_due(state):
                stage.pass_on(header(CHECKPOINT, epoch, state.batch))
                _save_position(stage, state)
        stage.pass_on(header(EPOCH_END, epoch))
        _end_epoch(stage, state)
    stage.pass_on(header(STOP))
    stage.next.drain()


def _follow(stage: Stage) -> None:
    """Later stages: receive, run their blocks, send on; the last trains the head."""
    run = stage.run
    state = run.start_epoch(run.first_epoch)  # the last stage's running sums, when resumed inside the epoch
    run.trainer.train()
    window = StepMeans(run.config.timesteps if stage.realtime else 1)
    # The next header is always being received while this stage computes, so
    # a batch's messages arrive during the previous batch's work.
    next_header = stage.prev.post(torch.empty(HEADER_SIZE, dtype=torch.int64))
    while True:
        message = stage.prev.wait(next_header)
        kind = int(message[0])
        if kind == STOP:
            stage.pass_on(message)
            if stage.next is not None:
                stage.next.drain()
            return
        if kind == BATCH:
            payload = stage.prev.post(
                torch.empty(sum(stage.payload_sizes(int(message[3]), bool(message[4]))), dtype=torch.uint8)
            )
        next_header = stage.prev.post(torch.empty(HEADER_SIZE, dtype=torch.int64))
        if kind == CHECKPOINT:
            stage.pass_on(message)
            _save_position(stage, state)
            continue
        if kind == EPOCH_END:
            stage.pass_on(message)
            _end_epoch(stage, state)
            state = run.start_epoch(state.epoch + 1)
            run.trainer.train()
            continue
        if kind != BATCH:
            raise ValueError(f"layer parallel: stage {stage.rank} got a message of unknown kind {kind}")
        h, labels, context = stage.unpack_batch(message, stage.prev.wait(payload))
        step = int(message[5])
        if stage.realtime and step == 0:  # a new batch: every layer starts from rest
            run.trainer.start_sequence()
        h = stage.forward(h, labels, context)
        if stage.is_last:
            done = window.add(*run.trainer.train_head(h, labels))
            if done is not None:
                loss, logits = done
                state.add(loss, (logits.argmax(1) == labels).sum().item(), len(labels))
        else:
            stage.send_batch(int(message[1]), int(message[2]), h, labels, context, step)


def _gather_network(stage: Stage, state) -> Optional[Tuple[list, float]]:
    """Every stage sends its layers' state to rank 0, which loads the whole
    network and every optimiser; returns there the last stage's running sums
    and the slowest stage's time (None on the other ranks)."""
    run = stage.run
    if stage.next is not None:
        stage.next.drain()
    mine = {
        "model": run.model.state_dict(),
        "trainer": run.trainer.state_dict(),
        "stats": state.stats,
        "seconds": state.elapsed(),
    }
    states = run.dist.gather(mine)
    if not run.dist.is_main:
        return None
    run.model.load_state_dict(_merge_model(stage, [s["model"] for s in states]))
    run.trainer.load_state_dict(_merge_trainer(stage, [s["trainer"] for s in states]))
    return states[-1]["stats"], max(s["seconds"] for s in states)


def _layout(stage: Stage) -> dict:
    return {
        "world_size": stage.run.dist.world,
        "parallel": "layer",
        "stages_split": [stage.bounds[s + 1] - stage.bounds[s] for s in range(stage.stages)],
    }


def _save_position(stage: Stage, state) -> None:
    """A mid-epoch checkpoint: every stage has finished the same batches (the
    message follows them), so the gathered network is the one-process network
    after `state.batch` batches, and resumes in one process or in stages."""
    gathered = _gather_network(stage, state)
    if gathered is None:
        return
    (loss_sum, correct, seen), seconds = gathered
    position = dataclasses.replace(
        state, loss_sum=loss_sum, correct=correct, seen=seen, seconds=seconds, started=time.perf_counter()
    )
    stage.run.save_position(position, _layout(stage))


def _end_epoch(stage: Stage, state) -> None:
    """The pipeline is empty: every stage steps its schedules, sends its
    layers' state to rank 0, which evaluates the whole network and writes
    the usual checkpoint (so any layout resumes any other)."""
    run = stage.run
    # Only this stage's optimisers stepped; the others' schedules wait for their owners.
    for scheduler, block in zip(run.trainer.schedulers, run.trainer.optimizer_blocks):
        if stage.owner(block) == stage.rank:
            scheduler.step()
    gathered = _gather_network(stage, state)
    if gathered is None:
        return
    (loss_sum, correct, seen), seconds = gathered
    run.finish_epoch(state.epoch, loss_sum, correct, seen, seconds, extra=_layout(stage))


def _block_of(key: str) -> Optional[int]:
    """The block index a state key belongs to ("blocks.3.layer.weight" → 3; "3.x" in aux → 3)."""
    parts = key.split(".")
    if parts[0] == "blocks":
        return int(parts[1])
    return int(parts[0]) if parts[0].isdigit() else None


def _merge_model(stage: Stage, states: List[dict]) -> dict:
    merged = dict(states[0])
    for key in merged:
        block = _block_of(key)
        merged[key] = states[stage.owner(block)][key]
    return merged


def _merge_trainer(stage: Stage, states: List[dict]) -> dict:
    owners = [stage.owner(block) for block in stage.run.trainer.optimizer_blocks]
    return {
        "aux": {key: states[stage.owner(_block_of(key))]["aux"][key] for key in states[0]["aux"]},
        "optimizers": [states[o]["optimizers"][j] for j, o in enumerate(owners)],
        "schedulers": [states[o]["schedulers"][j] for j, o in enumerate(owners)],
    }
