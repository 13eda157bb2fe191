"""Linear-probe accuracy of every hidden layer's firing rates, before and
after each epoch of training: does a local rule make features that are
better than random ones? (A trained readout can hide that: it also learns.)

    python scripts/probe_features.py --rule hbh --hsic-term input --subset 10000 --epochs 2

Takes the `pysnn train` flags; prints one line per epoch.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch.nn import functional as F

from pysnn import data
from pysnn.cli import _add_train_arguments
from pysnn.config import TrainConfig
from pysnn.learning import make_trainer
from pysnn.models import build_model


@torch.no_grad()
def layer_rates(model, images: torch.Tensor, chunk: int = 500) -> list:
    model.eval()
    per_chunk = []
    for i in range(0, len(images), chunk):
        h, rates = model.encode(images[i : i + chunk]), []
        for block in model.blocks:
            h = block(h)
            rates.append(h.mean(0).flatten(1))
        per_chunk.append(rates)
    return [torch.cat(layer) for layer in zip(*per_chunk)]


def probe(train_z, train_y, test_z, test_y, steps: int = 300) -> float:
    """Test accuracy of a linear classifier fitted on standardised features."""
    mean, std = train_z.mean(0), train_z.std(0) + 1e-3
    train_z, test_z = (train_z - mean) / std, (test_z - mean) / std
    with torch.enable_grad():
        linear = torch.nn.Linear(train_z.shape[1], int(train_y.max()) + 1)
        optimizer = torch.optim.Adam(linear.parameters(), lr=1e-2)
        for _ in range(steps):
            optimizer.zero_grad()
            F.cross_entropy(linear(train_z), train_y).backward()
            optimizer.step()
    with torch.no_grad():
        return (linear(test_z).argmax(1) == test_y).float().mean().item()


def report(tag: str, model, dataset) -> None:
    train_z, test_z = layer_rates(model, dataset.train.images), layer_rates(model, dataset.test.images)
    accuracies = [probe(a, dataset.train.labels, b, dataset.test.labels) for a, b in zip(train_z, test_z)]
    rates = [z.mean().item() for z in train_z]
    print(
        f"{tag}: probe {' '.join(f'{a:.4f}' for a in accuracies)}  firing {' '.join(f'{r:.3f}' for r in rates)}",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    _add_train_arguments(parser)
    args = parser.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    config.validate()
    torch.manual_seed(config.seed)
    dataset = data.load_dataset(config.dataset, config.data_dir, config.subset, seed=config.seed)
    model = build_model(config, dataset.image_shape, dataset.classes)
    trainer = make_trainer(model, config, dataset.classes, dataset.image_shape)
    report("init", model, dataset)
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        trainer.train()
        for images, labels in data.batches(dataset.train, config.batch_size, True, generator):
            trainer.step(images, labels)
        trainer.end_epoch()
        report(f"epoch {epoch}", model, dataset)


if __name__ == "__main__":
    main()
