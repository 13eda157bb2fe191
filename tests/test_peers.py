"""pysnn's neuron against the library users would pick instead, where it is
installed (`pip install --no-deps spikingjelly loguru`): SpikingJelly 2.0's
multi-step LIFNode with decay_input=False, v_reset=None is the same neuron
(soft reset inside the decay, decay = 1 − 1/τ)."""

import pytest
import torch

import pysnn

neuron = pytest.importorskip("spikingjelly.activation_based.neuron", reason="SpikingJelly is not installed")
surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")


@pytest.mark.parametrize("decay, threshold", [(0.75, 0.6), (0.5, 1.0)])
def test_spikes_and_gradients_match_spikingjelly(decay, threshold):
    torch.manual_seed(0)
    x = (torch.rand(12, 8, 300, dtype=torch.float64) * 1.5 * threshold).requires_grad_()
    x_peer = x.detach().clone().requires_grad_()
    grad = torch.randn(12, 8, 300, dtype=torch.float64)
    node = neuron.LIFNode(
        tau=1.0 / (1.0 - decay),
        decay_input=False,
        v_reset=None,
        v_threshold=threshold,
        surrogate_function=surrogate.Sigmoid(alpha=4.0),
        step_mode="m",
    )
    peer = node(x_peer)
    ours = pysnn.ops.lif(x, decay, threshold, surrogate="sigmoid", alpha=4.0, grad_mode="bptt")
    assert torch.equal(ours, peer)
    assert 0.05 < ours.mean() < 0.95  # neurons both fire and stay silent
    ours.backward(grad)
    peer.backward(grad)
    torch.testing.assert_close(x.grad, x_peer.grad, rtol=0, atol=1e-10)


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_the_training_benchmark_compares_the_same_network(model):
    """`pysnn bench train --peers`: one BPTT step with SpikingJelly's neuron in
    place of pysnn's computes the gradients pysnn's own step does (compared
    before Adam, which would amplify rounding on near-zero gradients)."""
    from pysnn.bench.train import peer_step_case, step_case

    kwargs = dict(model=model, batch=8, timesteps=3, hidden=[32])
    ours, theirs = step_case("bptt", backend="fused", **kwargs), peer_step_case("spikingjelly", **kwargs)
    for a, b in zip(ours.net.parameters(), theirs.net.parameters()):
        assert torch.equal(a, b)  # the same initial network
    ours(), theirs()
    for a, b in zip(ours.net.parameters(), theirs.net.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
