"""Distributed runs across a real network: two hosts made of network
namespaces joined by a veth pair, one torchrun agent on each (c10d
rendezvous over the veth address). Equality with one process, a link taken
down mid-epoch, peers paused with SIGSTOP. Needs root (`ip netns`); skipped
with the reason otherwise. The kernel here has no netem qdisc, so added
latency and packet loss are not emulated."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from test_distributed import _identical, _max_difference, _single
from test_restart import worker_pid

from pysnn import checkpoint

TIMEOUT_S = 5  # --dist-timeout of these runs
SMALL = ["--subset", "240", "--hidden", "48", "40", "32", "--epochs", "2", "--batch-size", "30", "--timesteps", "4"]
SMALL += ["--seed", "3"]
# long enough (a few seconds) to take the link down or pause a peer inside an epoch
LONG = ["--subset", "1200", "--hidden", "256", "256", "256", "--epochs", "2", "--batch-size", "30"]
LONG += ["--timesteps", "6", "--checkpoint-every", "2"]


def _run(*command):
    return subprocess.run(command, capture_output=True, text=True)


class Hosts:
    """Two namespaces A (10.x.y.1) and B (10.x.y.2) joined by a veth pair."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.names = [f"pysnn-{tag}-a", f"pysnn-{tag}-b"]
        self.devices = [f"pv{tag}a", f"pv{tag}b"]
        subnet = f"10.{200 + int(tag[:2], 16) % 50}.{int(tag[2:4], 16)}"
        self.addresses = [f"{subnet}.1", f"{subnet}.2"]
        self.port = 29400 + int(tag[4:], 16) % 500

    def create(self):
        steps = [
            *(["ip", "netns", "add", n] for n in self.names),
            ["ip", "link", "add", self.devices[0], "type", "veth", "peer", "name", self.devices[1]],
        ]
        for name, device, address in zip(self.names, self.devices, self.addresses):
            steps += [
                ["ip", "link", "set", device, "netns", name],
                ["ip", "-n", name, "addr", "add", f"{address}/24", "dev", device],
                ["ip", "-n", name, "link", "set", device, "up"],
                ["ip", "-n", name, "link", "set", "lo", "up"],
            ]
        for step in steps:
            result = _run(*step)
            if result.returncode != 0:
                self.remove()
                return f"`{' '.join(step)}` failed: {result.stderr.strip()}"
        return None

    def remove(self):
        for name in self.names:
            _run("ip", "netns", "delete", name)

    def link(self, up: bool):
        _run("ip", "-n", self.names[0], "link", "set", self.devices[0], "up" if up else "down")

    def torchrun(self, out: Path, args, run_id: str):
        """One agent per host, each with one worker; returns the two agents."""
        agents = []
        for node in (0, 1):
            command = ["ip", "netns", "exec", self.names[node], sys.executable, "-m", "torch.distributed.run"]
            command += ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d"]
            command += ["--rdzv_endpoint", f"{self.addresses[0]}:{self.port}", "--rdzv_id", run_id]
            command += ["--rdzv_conf", f"is_host={node == 0}", "--local_addr", self.addresses[node]]
            command += ["-m", "pysnn", "train", "--no-progress", *args, "--out", str(out), "--resume", "auto"]
            command += ["--dist-timeout", str(TIMEOUT_S)]
            env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": self.devices[node]}
            agents.append(
                subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            )
        return agents


@pytest.fixture(scope="module")
def hosts():
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command: cannot make network namespaces")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    made = Hosts()
    reason = made.create()
    if reason is not None:
        pytest.skip(f"cannot make two hosts: {reason}")
    yield made
    made.remove()


def _finish(agents, timeout=300):
    outputs = [a.communicate(timeout=timeout)[0] for a in agents]
    return [a.returncode for a in agents], outputs


def _wait_for_checkpoint(out: Path, agents, deadline_s=120):
    deadline = time.time() + deadline_s
    while not (out / checkpoint.FILENAME).is_file():
        assert time.time() < deadline and all(a.poll() is None for a in agents), "no checkpoint was written"
        time.sleep(0.005)


def _one_line_errors(output):
    return [line for line in output.splitlines() if line.startswith("pysnn: error:")]


@pytest.mark.parametrize("layout", ["data", "layer"])
def test_a_run_across_two_hosts_equals_one_process(hosts, layout, tmp_path):
    rule = ["--rule", "hll", "--loss", "pred", "--optimizer", "sgd", "--no-batch-norm"]
    if layout == "layer":
        rule = ["--rule", "hll", "--dropout", "0.2"]
    codes, outputs = _finish(hosts.torchrun(tmp_path / "two", [*SMALL, *rule, "--parallel", layout], f"eq-{layout}"))
    assert codes == [0, 0], outputs
    two = checkpoint.load(tmp_path / "two")
    assert two["world_size"] == 2 and two["parallel"] == layout
    kwargs = dict(subset=240, hidden=[48, 40, 32], epochs=2, batch_size=30, timesteps=4, seed=3, rule="hll")
    if layout == "layer":  # the same updates in the same order: bit for bit
        assert _identical(two["model"], _single(tmp_path, "one", **kwargs, dropout=0.2)["model"])
    else:  # the all-reduced gradient of the two slices: equal up to rounding
        one = _single(tmp_path, "one", **kwargs, loss="pred", optimizer="sgd", batch_norm=False)
        assert _max_difference(one["model"], two["model"]) < 1e-6


def test_a_link_taken_down_ends_every_rank_and_the_run_resumes_exactly(hosts, tmp_path):
    out, args = tmp_path / "run", [*LONG, "--rule", "hll", "--dropout", "0.2", "--parallel", "layer"]
    agents = hosts.torchrun(out, args, "down")
    _wait_for_checkpoint(out, agents)
    workers = [worker_pid(a.pid, 0) for a in agents]
    hosts.link(up=False)
    down = time.monotonic()
    ended = _wait_gone(workers, TIMEOUT_S + 20)
    hosts.link(up=True)  # torchrun's agent on B waits on the store on A until it can reach it
    codes, outputs = _finish(agents)
    print(f"link down: workers ended {max(ended) - down:.1f} s after it (--dist-timeout {TIMEOUT_S})")
    assert max(ended) - down < TIMEOUT_S + 10
    assert codes == [1, 1], outputs
    for output in outputs:
        errors = _one_line_errors(output)
        assert len(errors) == 1 and "distributed peer failed or timed out" in errors[0], output
    taken = checkpoint.load(out)  # intact: it loads, and it was taken inside an epoch or at its end
    assert taken["parallel"] == "layer"
    codes, outputs = _finish(hosts.torchrun(out, args, "down-resumed"))
    assert codes == [0, 0], outputs
    assert any("resuming" in line for line in outputs[0].splitlines() + outputs[1].splitlines())
    torch.set_num_threads(1)
    kwargs = dict(subset=1200, hidden=[256] * 3, epochs=2, batch_size=30, timesteps=6, rule="hll", dropout=0.2, seed=0)
    assert _identical(checkpoint.load(out)["model"], _single(tmp_path, "one", **kwargs)["model"])


def _wait_gone(pids, timeout_s):
    """When each process ended (monotonic seconds); fails after timeout_s."""
    ended, deadline = {}, time.monotonic() + timeout_s
    while len(ended) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in ended and not _alive(pid):
                ended[pid] = time.monotonic()
        time.sleep(0.01)
    assert len(ended) == len(pids), "a worker outlived the timeout"
    return list(ended.values())


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_peer_paused_past_the_timeout_is_treated_as_dead(hosts, tmp_path):
    out, args = tmp_path / "run", [*LONG, "--rule", "hll", "--parallel", "layer"]
    agents = hosts.torchrun(out, args, "paused-long")
    _wait_for_checkpoint(out, agents)
    paused = worker_pid(agents[1].pid, 0)
    other = worker_pid(agents[0].pid, 0)
    os.kill(paused, signal.SIGSTOP)
    stopped = time.monotonic()
    ended = _wait_gone([other], TIMEOUT_S + 20)
    os.kill(paused, signal.SIGCONT)
    codes, outputs = _finish(agents)
    print(f"paused past the timeout: the other rank ended {ended[0] - stopped:.1f} s after the pause")
    assert ended[0] - stopped < TIMEOUT_S + 10
    assert codes == [1, 1], outputs
    errors = _one_line_errors(outputs[0])
    assert len(errors) == 1 and "distributed peer failed or timed out" in errors[0], outputs[0]


def test_a_peer_paused_within_the_timeout_costs_only_the_pause(hosts, tmp_path):
    args = [*LONG, "--rule", "hll", "--parallel", "layer"]
    start = time.monotonic()
    codes, outputs = _finish(hosts.torchrun(tmp_path / "free", args, "unpaused"))
    unpaused = time.monotonic() - start
    assert codes == [0, 0], outputs
    out, pause = tmp_path / "run", TIMEOUT_S / 2
    start = time.monotonic()
    agents = hosts.torchrun(out, args, "paused-short")
    _wait_for_checkpoint(out, agents)
    paused = worker_pid(agents[1].pid, 0)
    os.kill(paused, signal.SIGSTOP)
    time.sleep(pause)
    os.kill(paused, signal.SIGCONT)
    codes, outputs = _finish(agents)
    took = time.monotonic() - start
    print(f"paused {pause:.1f} s: the run took {took:.1f} s, {unpaused:.1f} s without the pause")
    assert codes == [0, 0], outputs
    assert took < unpaused + pause + 5  # start-up noise of two torchrun agents
    assert _identical(checkpoint.load(out)["model"], checkpoint.load(tmp_path / "free")["model"])
