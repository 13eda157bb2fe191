"""Runs survive interruption: kill mid-run, resume, same result."""

import json
import subprocess
import sys
import time

import pytest

ARGS = [
    "train",
    "--no-progress",
    "--subset",
    "600",
    "--hidden",
    "256",
    "--epochs",
    "6",
    "--timesteps",
    "6",
    "--dropout",
    "0.1",
]


def _pysnn(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pysnn", *args], capture_output=True, text=True, timeout=600, **kwargs)


def _epochs(run_dir):
    try:
        return json.loads((run_dir / "metrics.json").read_text())["epochs"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


def _numbers(value):
    """Every number in a nested record, in a fixed order (timings left out)."""
    if isinstance(value, dict):
        return [n for k in sorted(value) if k != "seconds" for n in _numbers(value[k])]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value]


def _comparable(epochs):
    return [_numbers(e) for e in epochs]


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path):
    full = _pysnn(*ARGS, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pysnn", *ARGS, "--out", str(cut)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while len(_epochs(cut)) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no chance to clean up
    assert proc.wait() < 0, "the run finished before it could be killed"
    done = len(_epochs(cut))
    assert 1 <= done < 6

    resumed = _pysnn("train", "--resume", str(cut), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {cut} after epoch" in resumed.stdout
    got, want = _comparable(_epochs(cut)), _comparable(_epochs(tmp_path / "full"))
    assert len(got) == 6
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-6, abs=1e-9)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    run = _pysnn(*ARGS[:3], "200", "--epochs", "1", "--hidden", "32", "--out", str(tmp_path / "run"))
    assert run.returncode == 0, run.stderr
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    result = _pysnn("train", "--resume", str(tmp_path / "run"))
    assert result.returncode != 0
    assert "corrupt" in result.stderr and "Traceback" not in result.stderr


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = _pysnn("train", "--resume", str(tmp_path))
    assert result.returncode != 0 and "no checkpoint" in result.stderr


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = _pysnn("train", "--subset", "100", "--epochs", "1", "--out", str(blocker / "run"))
    assert result.returncode != 0 and "not writable" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_exits_cleanly_with_a_resumable_checkpoint(tmp_path):
    import signal

    out = tmp_path / "run"
    # Enough epochs that the run cannot end before the signal arrives (an epoch
    # here takes a fraction of a second).
    # A shell running CI in the background starts its children with SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler: restore it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "pysnn", *ARGS, "--epochs", "1000", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while len(_epochs(out)) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr)
    assert "Traceback" not in stderr and "pysnn: interrupted" in stderr
    assert f"pysnn train --resume {out}" in stdout
    assert (out / "checkpoint.pt").is_file()
