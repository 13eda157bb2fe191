"""SNN-HBH's kernels (thesis Table 4-4): --kernel is the kernel on the input X
and on every layer's Z alike; the sigmoid kernel's slope and offset are set
with --kernel-param; every kernel trains."""

import math

import pytest
import torch

from pysnn import ops
from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model
from pysnn.train import train

KERNELS = ["gaussian", "cosine", "laplacian", "sigmoid"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_kernel_on_x_and_on_z_is_the_chosen_one(kernel):
    config = TrainConfig(rule="hbh", hsic_term="input", kernel=kernel, kernel_param=[0.05, -0.2], hidden=[16])
    model = build_model(config, (1, 8, 8), 10)
    trainer = make_trainer(model, config, 10, (1, 8, 8))
    images, labels = torch.rand(12, 1, 8, 8), torch.arange(12) % 10
    options = dict(kind=kernel, sigma=config.sigma, sigma_scaling=config.sigma_scaling, c1=0.05, c0=-0.2)
    kx = ops.kernel_matrix(images.flatten(1), **options)
    ky = trainer.label_kernel(labels)
    want = ops.hsic_modulator(kx, ky, beta=config.beta, estimator=config.estimator)
    torch.testing.assert_close(trainer.batch_context(images, labels), want)
    rates = (torch.rand(12, 16) < 0.3).float()
    torch.testing.assert_close(trainer.kernel(rates), ops.kernel_matrix(rates, **options))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("hsic_term", ["input", "self"])
def test_every_kernel_trains(kernel, hsic_term, tmp_path):
    config = TrainConfig(
        dataset="digits", subset=96, epochs=1, batch_size=32, timesteps=3, hidden=[32], rule="hbh",
        kernel=kernel, hsic_term=hsic_term, progress=False, out=str(tmp_path / "run"),
    )  # fmt: skip
    torch.manual_seed(config.seed)
    initial = build_model(config, (1, 8, 8), 10).blocks[0].layer.weight.detach().clone()
    metrics = train(config, log=lambda m: None)
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]["blocks.0.layer.weight"]
    assert not torch.equal(initial, final), "the first layer did not learn"
    assert all(math.isfinite(metrics["epochs"][0][k]) for k in ("train_loss", "test_loss"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--kernel", "rbf"], "--kernel must be one of"),
        (["--label-kernel", "rbf"], "--label-kernel must be one of"),
        (["--kernel-param", "1"], "--kernel-param takes the sigmoid kernel's slope and offset"),
        (["--kernel-param", "1,nan"], "--kernel-param takes"),
    ],
)
def test_bad_kernel_flags_give_one_line(flags, message, capsys, tmp_path):
    from pysnn.cli import main

    assert main(["train", "--rule", "hbh", *flags, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
