"""Automatic restarts: under `torchrun --max-restarts`, a killed rank makes
torchrun restart the group, and `--resume auto` continues from the run
directory's latest checkpoint; the finished run equals an uninterrupted one."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from test_resume import identical, numbers

from pysnn import checkpoint

TRAIN = ["--no-progress", "--subset", "600", "--hidden", "128", "64", "--epochs", "2", "--timesteps", "4"]
TRAIN += ["--batch-size", "30", "--parallel", "data", "--checkpoint-every", "2", "--dropout", "0.1"]


def torchrun(out: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *extra]
    command += ["-m", "pysnn", "train", *TRAIN, "--out", str(out), "--resume", "auto", "--dist-timeout", "30"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def worker_pid(agent: int, local_rank: int) -> int:
    """The pid of the agent's worker with LOCAL_RANK=local_rank."""
    for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if f"LOCAL_RANK={local_rank}".encode() in environ:
            return int(child)
    raise LookupError(f"no worker with LOCAL_RANK={local_rank} under {agent}")


def test_a_killed_rank_is_restarted_and_the_run_equals_an_uninterrupted_one(tmp_path):
    reference = torchrun(tmp_path / "reference")
    output, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, output

    out = tmp_path / "run"
    agent = torchrun(out, "--max-restarts", "1")
    lines = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in agent.stdout))
    reader.start()
    deadline = time.time() + 300
    while not (out / checkpoint.FILENAME).is_file() and time.time() < deadline and agent.poll() is None:
        time.sleep(0.005)
    time.sleep(random.uniform(0.0, 0.3))  # a random step after the first checkpoint
    killed_at = time.monotonic()
    os.kill(worker_pid(agent.pid, 1), signal.SIGKILL)
    assert agent.wait(timeout=600) == 0, "".join(line for _, line in lines)
    reader.join()
    text = "".join(line for _, line in lines)
    resumed = [t for t, line in lines if re.search(r"resuming .* (in epoch \d+ after \d+ batches|after epoch)", line)]
    assert resumed, text  # the restarted group continued from the checkpoint, not from scratch
    restart_seconds = resumed[0] - killed_at
    print(f"restart: {restart_seconds:.1f} s from the kill to the restarted group's resume")
    assert identical(checkpoint.load(out)["model"], checkpoint.load(tmp_path / "reference")["model"])
    want = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    assert numbers(json.loads((out / "metrics.json").read_text())) == numbers(want)
    assert torch.load(out / checkpoint.FILENAME, weights_only=False)["epoch"] == 2
