"""`pysnn reproduce`: every thesis table listed; a proxy grid runs its cells,
skips finished ones, resumes a killed one, and writes its table and page."""

import json

import pytest
import torch

from pysnn import reproduce, robustness
from pysnn.cli import main

TINY = dict(dataset="digits", model="mlp", hidden=[16], epochs=1, subset=96, timesteps=2, batch_size=32)


def test_list_names_every_table_of_chapters_3_and_4(capsys):
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    for name in [f"table-3-{i}" for i in range(1, 6)] + [f"table-4-{i}" for i in range(1, 7)]:
        assert name in listed
    assert "pysnn reproduce table-3-5" in listed and "pysnn reproduce table-4-4" in listed


def test_a_grid_runs_skips_finished_cells_and_resumes_a_killed_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "PROXY", TINY)
    out = tmp_path / "grid"
    assert main(["reproduce", "table-4-4", "--seeds", "2", "--out", str(out)]) == 0
    table = (out / "table-4-4.md").read_text()
    for kernel in ("gaussian", "cosine", "laplacian", "sigmoid"):
        assert f"| {kernel} |" in table and "(n = 2)" in table
    assert "Thesis: best gaussian, worst sigmoid; this run: best" in table
    assert (out / "table-4-4.png").is_file()
    # a killed cell: its metrics say fewer epochs than asked; only it runs again
    killed = out / "table-4-4" / "cosine-seed1" / "metrics.json"
    metrics = json.loads(killed.read_text())
    metrics["epochs"] = []
    killed.write_text(json.dumps(metrics))
    calls = []
    original = reproduce.cell_config
    monkeypatch.setattr(reproduce, "cell_config", lambda *a: calls.append(a[:2]) or original(*a))
    assert main(["reproduce", "table-4-4", "--seeds", "2", "--out", str(out)]) == 0
    ran = [(row.label, seed) for row, seed in calls[1:]]  # (the first call builds the estimate's config)
    assert ran == [("cosine", 1)]
    docs = tmp_path / "reproduction.md"
    assert main(["reproduce", "--seeds", "2", "--out", str(out), "--write-docs", str(docs)]) == 0
    page = docs.read_text()
    assert page.count("## table-") == len(reproduce.TABLES) and "| gaussian | 89.80 |" in page


@pytest.mark.parametrize(
    "argv, message",
    [(["table-9-9"], "unknown table table-9-9"), (["table-3-5", "--seeds", "0"], "--seeds must be >= 1")],
)
def test_bad_arguments_give_one_line(argv, message, capsys):
    assert main(["reproduce", *argv]) == 2
    assert message in capsys.readouterr().err


def test_the_robustness_grid_matches_hbh_accuracy_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(robustness, "MODELS", {"mlp": TINY, "cnn": dict(TINY, model="cnn")})
    monkeypatch.setattr(robustness, "NOISE_IMAGES", {"mlp": None, "cnn": 40})
    monkeypatch.setattr(robustness, "CHECK_EVERY", {"mlp": 1, "cnn": 1})
    out = tmp_path / "grid"
    assert main(["reproduce", "table-4-5", "--seeds", "2", "--out", str(out)]) == 0
    for model in ("mlp", "cnn"):
        for seed in (0, 1):
            hbh = json.loads((robustness.cell_dir(out, model, "hbh", "end", seed) / "metrics.json").read_text())
            for rule in ("bptt", "hll"):
                matched = robustness.cell_dir(out, model, rule, "matched", seed)
                config = json.loads((matched / "metrics.json").read_text())["config"]
                assert config["stop_at_accuracy"] == hbh["test_acc"] and config["stop_check_every"] == 1
                noise = json.loads((matched / "noise.json").read_text())
                assert noise["images"] == (40 if model == "cnn" else 96)
                assert [len(noise[f"{k}/{s}"]) for k, s in robustness.CURVES] == [4, 3, 4]
    table = (out / "table-4-5.md").read_text()
    assert table.count("| BPTT at HBH's accuracy |") == 2 and "gaussian 0.4 (normalised space): HBH drops" in table
    assert (out / "table-4-5-mlp.png").is_file() and (out / "table-4-5-cnn.png").is_file()
    # a cell killed before its noise evaluation runs again, alone
    (robustness.cell_dir(out, "cnn", "hll", "matched", 1) / "noise.json").unlink()
    trained = []
    monkeypatch.setattr(robustness, "evaluate_noise", lambda d, *a: trained.append(d.name) or {})
    assert main(["reproduce", "table-4-5", "--seeds", "2", "--out", str(out)]) == 0
    assert trained == ["cnn-hll-matched-seed1"]
    docs = tmp_path / "reproduction.md"
    monkeypatch.undo()
    monkeypatch.setattr(robustness, "MODELS", {"mlp": TINY, "cnn": dict(TINY, model="cnn")})
    assert main(["reproduce", "--seeds", "2", "--out", str(out), "--write-docs", str(docs)]) == 0
    assert "| MLP: BPTT at HBH's accuracy | 12.3 / 8.5 | clean " in docs.read_text()


def test_gpu_rows_run_the_thesis_presets_on_cuda_only(tmp_path, capsys):
    table = reproduce.TABLES["table-3-3"]
    assert reproduce.runnable_rows(table, "cpu") == []
    rows = reproduce.runnable_rows(table, "cuda")
    assert [r.flags["preset"] for r in rows] == ["thesis-hll-fashion-vgg8", "thesis-hll-fashion-vgg8-2x"]
    config = reproduce.cell_config(rows[0], 1, 2, "cuda", tmp_path)
    assert (config.model, config.epochs, config.seed, config.device) == ("vgg8", 2, 1, "cuda")
    if not torch.cuda.is_available():
        assert main(["reproduce", "table-3-3", "--device", "cuda"]) == 2
        assert "this machine has no CUDA device" in capsys.readouterr().err
    # a finished cell's speed and the projection to the thesis' epochs
    run_dir = reproduce.cell_dir(tmp_path, table, rows[0], 0)
    run_dir.mkdir(parents=True)
    epochs = [{"epoch": 1, "seconds": 60.0, "samples": 60000, "test_acc": 0.8}]
    (run_dir / "metrics.json").write_text(json.dumps({"epochs": epochs, "test_acc": 0.8}))
    lines = reproduce.speed_lines(table, tmp_path, 1)
    assert lines[1] == (
        "* HLL pred-sim, VGG8: 1000 samples/s over 1 epoch(s); the thesis' 200 epochs would take 3.3 h per seed "
        "at this speed"
    )


def test_gpu_rows_without_a_preset_are_not_run():
    rows = reproduce.runnable_rows(reproduce.TABLES["table-4-5"], "cuda")
    assert rows and all(r.status == "proxy" for r in rows)
