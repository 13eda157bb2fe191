"""`pysnn.nn.conv`: a convolution a few samples at a time equals the
convolution, forward and backward, and is taken only where it may be."""

import pytest
import torch
from torch import nn

from pysnn.nn import chunks
from pysnn.nn import conv as conv_module
from pysnn.nn.conv import chunked_conv2d, chunked_conv_applies, conv2d
from pysnn.nn.low_memory import low_memory


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 8 samples whatever the map's size."""
    monkeypatch.setattr(chunks, "CHUNK_ELEMENTS", 1)


CASES = {
    "plain": dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
    "no_bias_stride": dict(in_channels=2, out_channels=5, kernel_size=3, padding=1, stride=2, bias=False),
    "groups_dilation": dict(in_channels=4, out_channels=4, kernel_size=3, padding=2, dilation=2, groups=2),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("input_grad", [False, True])
@pytest.mark.parametrize("batch", [16, 21])  # whole chunks, and a last chunk of 5
def test_equals_the_convolution(small_chunks, case, input_grad, batch):
    torch.manual_seed(0)
    layer = nn.Conv2d(**CASES[case]).double()
    x = torch.randn(batch, layer.in_channels, 9, 7, dtype=torch.float64, requires_grad=input_grad)
    assert chunked_conv_applies(layer, x)

    y = chunked_conv2d(layer, x)
    assert y.grad_fn.name() == "_ChunkedConv2dBackward"
    weights = torch.randn_like(y)
    grads = torch.autograd.grad(
        (y * weights).sum(), [x, *layer.parameters()] if input_grad else list(layer.parameters())
    )

    want = layer(x)
    want_grads = torch.autograd.grad(
        (want * weights).sum(), [x, *layer.parameters()] if input_grad else list(layer.parameters())
    )
    torch.testing.assert_close(y, want, rtol=1e-13, atol=1e-13)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_float32_within_rounding(small_chunks):
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 6, 3, padding=1)
    x = torch.randn(20, 3, 10, 10)
    y = chunked_conv2d(layer, x)
    y.square().sum().backward()
    got = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    want = layer(x)
    want.square().sum().backward()
    torch.testing.assert_close(y, want)
    for g, p in zip(got, layer.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-4)  # (float32 sums in another order)


def test_gradcheck(small_chunks):
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, padding=1).double()
    x = torch.randn(10, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    weight, bias = layer.weight.detach().requires_grad_(), layer.bias.detach().requires_grad_()

    def run(x, weight, bias):
        return conv_module._ChunkedConv2d.apply(x, weight, bias, conv_module._options(layer), (8, 3))

    assert torch.autograd.gradcheck(run, (x, weight, bias))


def test_taken_only_inside_low_memory(small_chunks):
    layer = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(16, 1, 5, 5)
    assert conv2d(layer, x).grad_fn.name() == "ConvolutionBackward0"
    with low_memory():
        assert conv2d(layer, x).grad_fn.name() == "_ChunkedConv2dBackward"
        with low_memory(False):
            assert conv2d(layer, x).grad_fn.name() == "ConvolutionBackward0"
        assert conv2d(layer, x).grad_fn.name() == "_ChunkedConv2dBackward"
    assert conv2d(layer, x).grad_fn.name() == "ConvolutionBackward0"


@pytest.mark.parametrize("case", ["one_chunk", "bfloat16", "padding_same", "reflect", "conv1d", "conv_transpose"])
def test_applies_only_where_it_can(small_chunks, case):
    layer, x = nn.Conv2d(2, 3, 3, padding=1), torch.randn(16, 2, 6, 6)
    assert chunked_conv_applies(layer, x)
    if case == "one_chunk":
        x = x[:8]
    elif case == "bfloat16":
        layer, x = layer.bfloat16(), x.bfloat16()
    elif case == "padding_same":
        layer = nn.Conv2d(2, 3, 3, padding="same")
    elif case == "reflect":
        layer = nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect")
    elif case == "conv1d":
        layer, x = nn.Conv1d(2, 3, 3, padding=1), x.flatten(2)
    elif case == "conv_transpose":
        layer = nn.ConvTranspose2d(2, 3, 3, padding=1)
    assert not chunked_conv_applies(layer, x)
    torch.testing.assert_close(chunked_conv2d(layer, x), layer(x))


def test_chunks_are_whole_multiples_of_eight():
    layer = nn.Conv2d(32, 32, 3, padding=1)
    for size in (1, 3, 14, 28, 100):
        rows = conv_module._rows_per_chunk(layer, torch.empty(1, 32, size, size))
        assert rows >= 8 and rows % 8 == 0
