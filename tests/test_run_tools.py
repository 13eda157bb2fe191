"""pysnn eval, plot and presets on a small trained run."""

import json
import subprocess
import sys

import pytest
import torch

from pysnn.analysis import add_noise


def _pysnn(*args):
    return subprocess.run([sys.executable, "-m", "pysnn", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = _pysnn(
        "train",
        "--no-progress",
        "--rule",
        "hbh",
        "--subset",
        "300",
        "--epochs",
        "2",
        "--hidden",
        "64",
        "64",
        "--timesteps",
        "4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    return out


def test_run_writes_plots_and_probes(run_dir):
    for name in ("curves.png", "firing_rates.png", "information_plane.png"):
        assert (run_dir / name).stat().st_size > 1000
    epoch = json.loads((run_dir / "metrics.json").read_text())["epochs"][-1]
    assert len(epoch["firing_rate"]) == 2 and 0 < epoch["firing_rate"][0] < 1
    assert set(epoch["hsic"][0]) == {"hsic_xz", "hsic_zy"}
    (run_dir / "curves.png").unlink()
    assert _pysnn("plot", str(run_dir)).returncode == 0 and (run_dir / "curves.png").is_file()


def test_eval_reports_noise_drops_and_activity(run_dir, tmp_path):
    out = tmp_path / "eval.json"
    result = _pysnn("eval", str(run_dir), "--noise", "gaussian:0.4", "--noise", "salt-pepper:0.2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "drop" in result.stdout and "µJ per sample" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["noise"]) == {"gaussian:0.4", "salt-pepper:0.2"}
    assert len(report["activity"]["synaptic_ops"]) == 3  # two hidden layers and the head
    assert report["activity"]["op_kind"] == ["mac", "ac", "ac"]


def test_eval_bad_noise_is_one_line(run_dir):
    result = _pysnn("eval", str(run_dir), "--noise", "blur:3")
    assert result.returncode != 0 and "--noise must be" in result.stderr and "Traceback" not in result.stderr


def test_noise_models():
    images = torch.full((2000,), 0.5)
    g = add_noise(images, "gaussian:0.4", torch.Generator().manual_seed(0))
    assert 0.3 < (g - 0.5).std() < 0.4 and g.min() >= 0 and g.max() <= 1  # clipped
    sp = add_noise(images, "salt-pepper:0.2", torch.Generator().manual_seed(0))
    changed = sp != 0.5
    assert 0.15 < changed.float().mean() < 0.25 and set(sp[changed].tolist()) == {0.0, 1.0}


def test_presets_listed_and_overridable(tmp_path):
    listing = _pysnn("presets")
    assert listing.returncode == 0 and "thesis-hll-fashion-vgg8" in listing.stdout and "92.11" in listing.stdout
    out = tmp_path / "preset"
    result = _pysnn(
        "train",
        "--preset",
        "thesis-hll-mnist-mlp",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--subset",
        "100",
        "--hidden",
        "32",
        "--no-progress",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["lr"] == 5e-4 and config["threshold"] == 1.0 and config["dropout"] == 0.1  # from the preset
    assert config["dataset"] == "digits" and config["epochs"] == 1  # overridden


def test_noise_sweep_is_seeded_and_reports_drops(run_dir, tmp_path):
    args = ("eval", str(run_dir), "--noise-sweep", "gaussian:0,0.2,0.4", "--noise-sweep", "salt-pepper:0,0.2")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    assert _pysnn(*args, "--json", str(first)).returncode == 0
    assert _pysnn(*args, "--json", str(second)).returncode == 0
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert a["sweeps"] == b["sweeps"]  # the same noise for the same seed
    gaussian = a["sweeps"]["gaussian"]
    assert [r["level"] for r in gaussian] == [0, 0.2, 0.4]
    assert gaussian[0]["drop"] == 0 and gaussian[0]["acc"] == a["clean_acc"]
    assert gaussian[2]["relative_drop"] == pytest.approx(gaussian[2]["drop"] / a["clean_acc"])


def test_noise_in_normalised_space_is_scaled_by_the_pixel_std_and_unclipped():
    images = torch.full((4000,), 0.5)
    g = add_noise(images, "gaussian:0.4", torch.Generator().manual_seed(0), space="normalised", pixel_std=0.3)
    assert 0.11 < (g - 0.5).std() < 0.13
    wide = add_noise(images, "gaussian:4", torch.Generator().manual_seed(0), space="normalised")
    assert wide.min() < 0 and wide.max() > 1


def test_compare_writes_one_table_and_one_png_beside_the_runs(run_dir):
    result = _pysnn("compare", str(run_dir), str(run_dir), "--noise-sweep", "gaussian:0,0.3")
    assert result.returncode == 0, result.stderr
    folder = run_dir.parent
    table = json.loads((folder / "noise-comparison.json").read_text())
    assert len(table["runs"]) == 2 and len(table["runs"][0]["sweeps"]["gaussian"]) == 2
    assert (folder / "noise-comparison.png").stat().st_size > 1000
    assert "gaussian noise" in (folder / "noise-comparison.txt").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["compare", "--noise-sweep", "gaussian:0.1"], "required"),  # no runs
        (["eval", "RUN", "--noise-sweep", "gaussian:0,x"], "is not a number"),
        (["eval", "RUN", "--noise-sweep", "salt-pepper:0,1.5"], "out of range"),
        (["eval", "RUN", "--noise-sweep", "blur:1"], "--noise-sweep must be"),
    ],
)
def test_bad_sweeps_are_one_line_and_write_nothing(run_dir, tmp_path, args, message):
    args = [str(run_dir) if a == "RUN" else a for a in args]
    result = _pysnn(*args, "--json", str(tmp_path / "out.json")) if args[0] == "eval" else _pysnn(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_beta_sweep_trains_each_beta_and_the_baselines_and_writes_two_pngs(tmp_path):
    out = tmp_path / "sweep"
    result = _pysnn(
        "sweep",
        "--beta",
        "2",
        "8",
        "--subset",
        "200",
        "--epochs",
        "1",
        "--hidden",
        "32",
        "--timesteps",
        "3",
        "--no-progress",
        "--noise-sweep",
        "gaussian:0,0.4",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    table = json.loads((out / "sweep.json").read_text())
    assert set(table) == {"beta-2", "beta-8", "bptt", "hbh-self"}
    layer = table["beta-2"]["layers"][0]
    assert 0 <= layer["nhsic_xz"] <= 1 and 0 <= layer["nhsic_zy"] <= 1
    assert json.loads((out / "beta-8" / "metrics.json").read_text())["config"]["hsic_norm"] == "cka"
    for name in ("information_plane.png", "robustness.png"):
        assert (out / name).stat().st_size > 1000
    bad = _pysnn("sweep", "--beta", "0", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--beta needs" in bad.stderr and not (tmp_path / "bad").exists()


def test_lif_benchmark_reports_time_against_both_floors():
    from pysnn.bench import lif as lif_bench

    # large enough that the columns' rounding to 1 µs stays far below the 5 % compared,
    # small enough (2 MB per array) that the compute floor's slice is the whole layer
    rows = lif_bench.run(steps=(2,), neurons=250_000, rounds=1, compiled=False)
    assert [row["mode"] for row in rows] == ["forward", "forward+backward"]
    for row in rows:
        assert row["fused_ms"] > 0 and row["floor_ms"] > 0 and row["compute_ms"] > 0
        bound = max(row["floor_ms"], row["compute_ms"])
        assert row["fused/max(floor,compute)"] == pytest.approx(row["fused_ms"] / bound, rel=0.05, abs=0.01)
    # the slice is the whole layer: the compute floor is the fused kernels' own
    # time, so it cannot exceed fused by much
    assert rows[1]["compute_ms"] < 3 * rows[1]["fused_ms"]
    if sys.platform.startswith("linux"):
        # the op's 2 MB outputs come back from pysnn's cache: far fewer faults than one fresh buffer's pages
        assert all(row["fused_faults"] < 2_000_000 // 4096 // 4 for row in rows)


def test_lif_pool_benchmark_compares_the_fused_op_with_two_ops():
    from pysnn.bench import lif_pool

    rows = lif_pool.run(steps=(3,), shape=(2, 4, 8, 8), rounds=1, compiled=False)
    assert [row["mode"] for row in rows] == ["forward", "forward+backward"]
    assert all(row["fused_ms"] > 0 and row["two_ops/fused"] > 0 and row["eager/fused"] > 0 for row in rows)
    saved = rows[1]
    # the fused op saves x alone (3·2·4·8·8 float32); the two ops also the spikes and the pool's indices
    assert saved["fused_saved_MB"] == round(3 * 2 * 4 * 8 * 8 * 4 / 1e6, 1)
    assert saved["two_ops_saved_MB"] >= saved["fused_saved_MB"]
    bad = _pysnn("bench", "lif-pool", "--shape", "2", "4", "7", "8")
    assert bad.returncode == 2 and "must be even" in bad.stderr


def test_bench_help_reaches_the_benchmark():
    result = _pysnn("bench", "lif", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: pysnn bench lif") and "--peers" in result.stdout
    result = _pysnn("bench")
    assert result.returncode == 2 and "choose a benchmark" in result.stderr
