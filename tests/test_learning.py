"""Each rule learns: short digits runs that fail if learning breaks."""

import json
import subprocess
import sys

import pytest
import torch

from pysnn import data, ops
from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model
from pysnn.train import train

QUICK = dict(subset=600, hidden=[256], epochs=10, progress=False, timesteps=6)


@pytest.mark.parametrize(
    "rule,extra,minimum",
    [
        ("hll", {}, 0.85),
        ("hll", {"loss": "pred", "update": "per-step-pred"}, 0.85),
        ("bptt", {}, 0.85),
        ("hbh", {}, 0.85),
        ("hbh", {"hsic_term": "input"}, 0.85),
        ("hbh", {"hsic_term": "input", "hsic_norm": "cka"}, 0.85),
    ],
)
def test_rule_reaches_accuracy_on_digits(tmp_path, rule, extra, minimum):
    metrics = train(TrainConfig(rule=rule, out=str(tmp_path), **QUICK, **extra), log=lambda s: None)
    assert metrics["test_acc"] >= minimum, metrics["epochs"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert len(saved["epochs"]) == QUICK["epochs"] and saved["config"]["rule"] == rule
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "seconds"} <= set(saved["epochs"][0])


def _label_dependence(model, trainer, images, labels):
    with torch.no_grad():
        rates = model.blocks[0](model.encode(images)).mean(0)
        kz = ops.kernel_matrix(rates, sigma=trainer.config.sigma, sigma_scaling="dim")
        return ops.hsic(kz, trainer.label_kernel(labels)).item()


def test_hbh_raises_the_hidden_layers_label_dependence():
    # On digits a readout over random wide features already scores well, so the
    # test checks what HBH itself does: HSIC(Z, Y) of the hidden layer grows.
    torch.manual_seed(0)
    config = TrainConfig(rule="hbh", hidden=[256], timesteps=6)
    dataset = data.load_dataset("digits", subset=600)
    model = build_model(config, dataset.image_shape, dataset.classes)
    trainer = make_trainer(model, config, 10, dataset.image_shape)
    images, labels = dataset.test.images, dataset.test.labels
    before = _label_dependence(model, trainer, images, labels)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        trainer.train()
        for x, y in data.batches(dataset.train, 64, True, generator):
            trainer.step(x, y)
    model.eval()
    assert _label_dependence(model, trainer, images, labels) > 2 * before


@pytest.mark.parametrize("estimator", ["approx", "biased"])
def test_self_term_modulator_gives_the_gradient_of_the_self_bottleneck(estimator):
    # hsic_term="self": L = HSIC(Z, Z) − β·HSIC(Z, Y). The trainer passes the
    # modulator built from 2·Kz of the detached rates; the closed-form gradient
    # with it must equal autograd through both occurrences of Kz.
    torch.manual_seed(0)
    config = TrainConfig(rule="hbh", hidden=[32], hsic_term="self", estimator=estimator)
    model = build_model(config, (1, 8, 8), 10)
    trainer = make_trainer(model, config, 10, (1, 8, 8))
    labels = torch.arange(24) % 10
    rates = torch.rand(24, 32, dtype=torch.float64)
    modulator = trainer.modulator(rates, labels, trainer.batch_context(torch.rand(24, 1, 8, 8), labels))
    z = rates.clone().requires_grad_()
    ops.hsic_loss(z, modulator, sigma=config.sigma, sigma_scaling="dim").backward()
    z_ref = rates.clone().requires_grad_()
    kz = ops.kernel_matrix(z_ref, sigma=config.sigma, sigma_scaling="dim")
    ky = trainer.label_kernel(labels).double()
    (ops.hsic(kz, kz, estimator=estimator) - config.beta * ops.hsic(kz, ky, estimator=estimator)).backward()
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    "hsic_term, hsic_norm", [("input", "none"), ("self", "none"), ("input", "cka"), ("input", "cca")]
)
def test_backends_run_the_same_algorithm(hsic_term, hsic_norm):
    # One HBH step from the same initial weights: fused and reference agree.
    # The CCA form inverts ill-conditioned K̃ + εmI (ε = 1e-5): float32
    # rounding differs between the two, and Adam's first step, ~lr·sign(g),
    # turns that into ±lr on near-zero gradients; so under SGD its updates
    # themselves are compared.
    dataset = data.load_dataset("digits", subset=64)
    x, y = dataset.train.images, dataset.train.labels
    optimizer = "sgd" if hsic_norm == "cca" else "adam"
    updates = []
    for backend in ("fused", "reference"):
        torch.manual_seed(0)
        config = TrainConfig(
            rule="hbh",
            hidden=[128],
            backend=backend,
            timesteps=4,
            hsic_term=hsic_term,
            hsic_norm=hsic_norm,
            optimizer=optimizer,
        )
        model = build_model(config, dataset.image_shape, dataset.classes)
        trainer = make_trainer(model, config, 10, dataset.image_shape)
        before = model.blocks[0].layer.weight.detach().clone()
        trainer.step(x, y)
        updates.append(model.blocks[0].layer.weight.detach() - (before if optimizer == "sgd" else 0))
    assert updates[0].abs().max() > 0
    torch.testing.assert_close(updates[0], updates[1], rtol=1e-3 if optimizer == "sgd" else 1e-4, atol=1e-6)


def _pysnn(*args):
    return subprocess.run([sys.executable, "-m", "pysnn", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "imagenet"], "unknown dataset"),
        (["--epochs", "-1"], "--epochs must be >= 1"),
        (["--timesteps", "0"], "--timesteps must be >= 1"),
        (["--batch-size", "5000"], "larger than the training set"),
        (["--loss", "magic"], "--loss must be one of"),
        (["--dataset", "mnist", "--data-dir", "/nonexistent"], "Looked in"),
        (["--rule", "hbh", "--hsic-norm", "cca-ish"], "--hsic-norm must be none, cka or cca"),
        (["--rule", "hbh", "--hsic-norm", "cka"], "needs --hsic-term input"),
        (
            ["--rule", "hbh", "--hsic-term", "input", "--hsic-norm", "cka", "--estimator", "unbiased"],
            "needs --estimator approx or biased",
        ),
    ],
)
def test_cli_bad_values_get_one_clear_line(args, message):
    result = _pysnn("train", "--no-progress", *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_cli_train_writes_metrics(tmp_path):
    result = _pysnn(
        "train", "--no-progress", "--subset", "200", "--epochs", "1", "--hidden", "64", "--out", str(tmp_path / "run")
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["hidden"] == [64]
