"""NIR export and import: pysnn → NIR file → pysnn, an independent NIR
interpreter (nirtorch) running the exported graph, graphs written by
another framework (SpikingJelly), and bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from pysnn import models
from pysnn.nir import NIRError, from_nir, read, to_nir, write

nir = pytest.importorskip("nir", reason="NIR support needs `pip install nir`")


@torch.no_grad()
def _layer_outputs(model, images):
    """Every block's output spikes [T, B, ...] and the logits."""
    h, outputs = model.encode(images), []
    for block in model.blocks:
        h = block(h)
        outputs.append(h)
    return outputs, model.readout(h)


def _network(kind, shape):
    torch.manual_seed(0)
    model = models.build(kind, shape, 10, hidden=(40, 24), width_mult=1 / 16, timesteps=6, batch_norm=True)
    model = model.double().eval()
    with torch.no_grad():  # batch-norm statistics far from identity, so folding them is tested
        for block in model.blocks:
            if block.norm is not None:
                block.norm.running_mean.uniform_(-0.3, 0.3)
                block.norm.running_var.uniform_(0.3, 3.0)
                block.norm.weight.uniform_(0.5, 2.0)
                block.norm.bias.uniform_(-0.2, 0.2)
    return model


NETWORKS = [("mlp", (1, 8, 8)), ("cnn", (1, 12, 12)), ("vgg8", (2, 16, 16))]


@pytest.mark.parametrize("neuron", ["exact", "lif"])
@pytest.mark.parametrize("kind, shape", NETWORKS)
def test_export_read_import_is_identical(kind, shape, neuron, tmp_path):
    model = _network(kind, shape)
    path = write(to_nir(model, shape, neuron=neuron), tmp_path / "net.nir")
    loaded = from_nir(read(path), dtype=torch.float64).eval()
    images = torch.rand(16, *shape, dtype=torch.float64) * 2
    spikes, logits = _layer_outputs(model, images)
    spikes_back, logits_back = _layer_outputs(loaded, images)
    assert len(spikes) == len(spikes_back)
    for ours, theirs in zip(spikes, spikes_back):
        assert torch.equal(ours, theirs)
    assert 0.02 < float(spikes[0].mean()) < 0.98  # the first layer both fires and stays silent
    torch.testing.assert_close(logits_back, logits, rtol=0, atol=1e-12)
    assert loaded.timesteps == model.timesteps


def test_exact_graph_uses_only_standard_nodes():
    graph = to_nir(_network("cnn", (1, 12, 12)), (1, 12, 12))
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert kinds == {"Input", "Conv2d", "LI", "Threshold", "Scale", "SumPool2d", "Flatten", "Affine", "Output"}
    assert ("block0.reset", "block0.membrane") in graph.edges  # the reset fed back
    assert graph.metadata["dt"] == 1e-4 and graph.metadata["timesteps"] == 6


# ---- an independent NIR interpreter: nirtorch, with the node semantics written
# from NIR's definitions (forward Euler for LI, v > threshold), not from pysnn.


class _LeakyIntegrator(torch.nn.Module):
    def __init__(self, node, dt):
        super().__init__()
        for name in ("tau", "r", "v_leak"):
            self.register_buffer(name, torch.from_numpy(np.asarray(getattr(node, name))))
        self.dt = dt

    def forward(self, current, state=None):
        v = torch.zeros_like(current) if state is None else state
        v = v + self.dt / self.tau * (self.v_leak - v + self.r * current)
        return v, v


class _Threshold(torch.nn.Module):
    def __init__(self, node):
        super().__init__()
        self.register_buffer("threshold", torch.from_numpy(np.asarray(node.threshold)))

    def forward(self, v):
        return (v > self.threshold).to(v.dtype)


class _Scale(torch.nn.Module):
    def __init__(self, node):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.asarray(node.scale)))

    def forward(self, x):
        return x * self.scale


def _affine(node):
    layer = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0], dtype=torch.float64)
    layer.weight.data = torch.from_numpy(node.weight)
    layer.bias.data = torch.from_numpy(node.bias)  # nirtorch 2.6's default Affine map drops the bias
    return layer


def _run_with_nirtorch(graph, images, timesteps):
    """Logits of `graph` run by nirtorch's interpreter for `timesteps` steps of direct coding."""
    nirtorch = pytest.importorskip("nirtorch")
    dt = float(graph.metadata["dt"])
    node_map = {
        nir.LI: lambda n: _LeakyIntegrator(n, dt),
        nir.Threshold: _Threshold,
        nir.Scale: _Scale,
        nir.Affine: _affine,
        # NIR's dims exclude the batch; nirtorch's default map passes start_dim to torch as is
        nir.Flatten: lambda n: torch.nn.Flatten(n.start_dim + 1, n.end_dim),
    }
    interpreter = nirtorch.nir_to_torch(graph, node_map, dtype=torch.float64)
    shape = tuple(int(s) for s in graph.nodes["input"].input_type["input"])
    images = images.reshape(len(images), *shape)
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(timesteps):  # direct coding: the same input at every step
            out, state = interpreter(images, state)
            outputs.append(out)
    return torch.stack(outputs).mean(0)


@pytest.mark.parametrize("kind, shape", NETWORKS)
def test_nirtorch_runs_the_exported_graph_identically(kind, shape, tmp_path):
    model = _network(kind, shape)
    graph = read(write(to_nir(model, shape), tmp_path / "net.nir"))
    images = torch.rand(16, *shape, dtype=torch.float64) * 2
    with torch.no_grad():
        torch.testing.assert_close(
            _run_with_nirtorch(graph, images, model.timesteps), model(images), rtol=0, atol=1e-12
        )


def test_graph_from_spikingjelly_loads_with_the_soft_reset_opt_in():
    sj = pytest.importorskip("spikingjelly.activation_based.nir_exchange.to_nir")
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Linear(20, 30),
        neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.7, v_reset=0.0),
        layer.Linear(30, 5),
        neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.7, v_reset=0.0),
    )
    functional.set_step_mode(net, "m")
    x = torch.rand(1, 64, 20) * 3
    graph = sj.export_to_nir(net, x)
    with pytest.raises(NIRError, match="hard reset.*lif_reset='soft'"):
        from_nir(graph, timesteps=1)
    model = from_nir(graph, timesteps=1, lif_reset="soft")
    assert model.blocks[0].neuron.decay == pytest.approx(0.5) and model.blocks[0].neuron.threshold == 0.7
    functional.reset_net(net)
    with torch.no_grad():
        theirs = net(x)[0]  # one step: no reset has happened yet, so hard and soft reset agree
        assert 0 < theirs.mean() < 1
        torch.testing.assert_close(model(x[0]), theirs)  # no head in the graph: logits = output spikes


# ---- bad input


def test_unrepresentable_nodes_are_named():
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([4])),
        nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3)),
        nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
        nir.Output(output_type=np.array([3])),
    )
    with pytest.raises(NIRError, match=r"node '.*' \(CubaLIF\) cannot be represented"):
        from_nir(graph, timesteps=2)
    lif = nir.LIF(tau=np.array([1e-3, 2e-3]), r=np.ones(2) * 10, v_leak=np.zeros(2), v_threshold=np.ones(2))
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([4])),
        nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2)),
        lif,
        nir.Output(output_type=np.array([2])),
    )
    with pytest.raises(NIRError, match="tau differs between neurons"):
        from_nir(graph, timesteps=2, lif_reset="soft")


def test_unexportable_network_is_refused():
    model = _network("cnn", (1, 12, 12))
    model.blocks[0].pool = torch.nn.AvgPool2d(2)
    with pytest.raises(NIRError, match="AvgPool2d.*no NIR form"):
        to_nir(model, (1, 12, 12))
    with pytest.raises(NIRError, match="needs input_shape"):
        to_nir(model)


def test_foreign_version_and_malformed_files(tmp_path):
    import h5py

    path = write(to_nir(_network("mlp", (1, 8, 8))), tmp_path / "net.nir")
    with h5py.File(path, "r+") as f:
        del f["version"]
        f.create_dataset("version", data="2.0.0", dtype=h5py.string_dtype())
    with pytest.raises(NIRError, match="NIR 2.0.0.*major versions must match"):
        read(path)
    junk = tmp_path / "junk.nir"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(NIRError, match="not a NIR file"):
        read(junk)
    with pytest.raises(NIRError, match="no such file"):
        read(tmp_path / "missing.nir")


def _pysnn(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pysnn", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_trained_run_exports_and_runs_identically(tmp_path):
    run_dir = tmp_path / "run"
    result = _pysnn(
        "train",
        "--no-progress",
        "--rule",
        "hll",
        "--subset",
        "400",
        "--epochs",
        "2",
        "--hidden",
        "64",
        "--timesteps",
        "4",
        "--batch-norm",
        "--out",
        str(run_dir),
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "model.nir"
    result = _pysnn("export", str(run_dir), "--nir", str(out))
    assert result.returncode == 0, result.stderr
    from pysnn.models import load_trained

    config, model, dataset, _, _ = load_trained(str(run_dir))
    loaded = from_nir(read(out)).eval()
    images = dataset.test.take(slice(0, 200))
    with torch.no_grad():  # float32 file: batch norm folded in float32, so compare predictions
        agree = (loaded(images).argmax(1) == model(images).argmax(1)).float().mean()
    assert agree >= 0.98
    # float64: the same trained network is identical through NIR, in pysnn and in nirtorch
    model = model.double()
    graph = read(write(to_nir(model, dataset.image_shape), tmp_path / "f64.nir"))
    exact = from_nir(graph, dtype=torch.float64)
    spikes, logits = _layer_outputs(model, images.double())
    spikes_back, logits_back = _layer_outputs(exact.eval(), images.double())
    assert all(torch.equal(a, b) for a, b in zip(spikes, spikes_back))
    torch.testing.assert_close(logits_back, logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(_run_with_nirtorch(graph, images.double(), model.timesteps), logits, rtol=0, atol=1e-12)


def test_export_errors_are_one_line_and_write_nothing(tmp_path):
    out = tmp_path / "model.nir"
    result = _pysnn("export", str(tmp_path / "no-run"), "--nir", str(out))
    assert result.returncode == 2 and "no checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".model.nir.*"))
