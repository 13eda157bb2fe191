"""The process group of a distributed run: who this process is, its device,
and the timeout every collective and point-to-point call observes."""

from __future__ import annotations

import atexit
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, List, Optional

import torch
import torch.distributed as dist


class DistributedError(RuntimeError):
    """A peer died, timed out or disagreed; the message says which and what to do."""


@dataclass
class DistContext:
    rank: int
    world: int
    device: torch.device
    timeout: timedelta
    owns_group: bool = False  # joined by setup(), so left by close()
    closed: bool = field(default=False, init=False, repr=False)  # close() ran

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, obj: Any) -> Any:
        """`obj` of rank 0 on every rank (any picklable object)."""
        box = [obj]
        guarded(dist.broadcast_object_list, box, src=0)
        return box[0]

    def gather(self, obj: Any) -> Optional[List[Any]]:
        """Every rank's `obj` on rank 0 (None elsewhere)."""
        out = [None] * self.world if self.is_main else None
        guarded(dist.gather_object, obj, out, dst=0)
        return out

    def agree(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank (a decision taken on rank 0's clock)."""
        t = torch.tensor([int(flag)], dtype=torch.int64, device=self.device)
        guarded(dist.broadcast, t, src=0)
        return bool(t.item())

    def check_same_config(self, config: dict) -> None:
        """Every rank must train the same configuration: compared at start,
        one line naming the first difference (raised on every rank)."""
        configs = [None] * self.world
        guarded(dist.all_gather_object, configs, config)
        for rank, other in enumerate(configs):
            for key in config:
                if other.get(key) != configs[0].get(key):
                    raise ValueError(
                        f"ranks started with different configurations: --{key.replace('_', '-')} is "
                        f"{configs[0].get(key)} on rank 0 and {other.get(key)} on rank {rank}"
                    )

    def close(self) -> None:
        """Ends the run's part in the process group: lets the backend's worker
        threads finish with the last collective (`settle`) and leaves the group
        setup() joined, as torch.distributed asks, rather than leaving it to
        interpreter exit (a group the caller made stays the caller's)."""
        if self.closed:
            return
        self.closed = True
        if self.owns_group:
            destroy_process_group()
        elif dist.is_initialized():
            settle()

    def all_sum(self, values: List[float]) -> List[float]:
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        guarded(dist.all_reduce, t)
        return t.tolist()


# Gloo runs a collective on one of its worker threads, and that thread drops
# its reference to the collective's tensors just after the caller's wait()
# returns. For a tensor made in Python the drop takes the GIL; if the main
# thread has begun interpreter shutdown by then, CPython ends the worker
# thread inside a noexcept destructor and the process aborts with "terminate
# called without an active exception" (caught in gdb: ~AsyncGatherWork ->
# decref_pyobject -> take_gil -> pthread_exit, after the run's last
# gather_object; about 1 data-parallel test run in 30). Sleeping with the GIL
# released lets every worker finish first. torch offers no call that waits
# for them: destroy_process_group() leaves the threads running.
SETTLE_SECONDS = 0.25


def settle() -> None:
    """Gives the backend's worker threads time to release the last
    collective's tensors (see SETTLE_SECONDS); call after a process's final
    collective, before it may exit."""
    time.sleep(SETTLE_SECONDS)


def destroy_process_group() -> None:
    """`torch.distributed.destroy_process_group()` for a process about to
    exit: settles the worker threads first, so a finished run cannot abort at
    interpreter shutdown. A no-op without a process group."""
    if dist.is_initialized():
        settle()
        dist.destroy_process_group()


def guarded(fn, *args, **kwargs):
    """Runs a torch.distributed call; a failure (a dead peer, a timeout)
    becomes one DistributedError line instead of a C++ traceback."""
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, dist.DistBackendError) as error:
        raise DistributedError(_one_line(error)) from None


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return f"distributed peer failed or timed out ({first[:300]}); the other processes stop too (see --dist-timeout)"


def _attempt_store(rank: int, world: int, timeout: timedelta) -> dist.Store:
    """torchrun's store, with keys of this restart attempt only: after
    `--max-restarts` restarts a group, torchrun's agent store still holds the
    dead attempt's addresses, and gloo would connect to those (connection
    refused, the restart fails)."""
    hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and rank == 0  # else the agent hosts it
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=hosts_store, timeout=timeout
    )
    return dist.PrefixStore(f"pysnn/attempt{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def setup(config) -> Optional[DistContext]:
    """Joins the process group for `--parallel data|layer` (torchrun's
    environment, or a group the caller already initialised, as the tests do);
    None for a single-process run."""
    if config.parallel == "none":
        return None
    timeout = timedelta(seconds=config.dist_timeout)
    owns_group = not dist.is_initialized()
    if owns_group:
        if "WORLD_SIZE" not in os.environ:
            raise ValueError(
                f"--parallel {config.parallel} runs under torchrun, e.g. "
                f"`torchrun --standalone --nproc_per_node=2 -m pysnn train --parallel "
                f"{config.parallel} ...`"
            )
        backend = "nccl" if config.device.startswith("cuda") else "gloo"
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        store = _attempt_store(rank, world, timeout)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count())))
        torch.cuda.set_device(device)
    context = DistContext(rank, world, device, timeout, owns_group)
    atexit.register(context.close)  # also when the run stops early; close() is idempotent
    return context
