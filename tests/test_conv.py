"""Conv2d, im2col and col2im: gradient checks, adjoint identity, loop reference, errors.

Configurations are drawn by hypothesis over kernels 1/2/3/5 (non-square too), stride
1/2/3, padding 0/1/2, dilation 1/2, groups 1/2/3, odd and non-square inputs and a batch
of 1. Every tensor is small so the full (not directional) checks stay fast.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import layers as L
from minidl.gradcheck import assert_gradients
from minidl.layers import cpu_kernels
from minidl.layers.conv import Conv2d, col2im, im2col
from minidl.naive import conv2d_forward

# The xp fixture only names an array module (no state), so sharing it across the
# examples of one hypothesis test is safe.
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow])


@st.composite
def conv_configs(draw, max_side=3):
    """Arguments of a conv layer and an input shape it accepts."""
    kh = draw(st.sampled_from([1, 2, 3, 5]))
    kw = draw(st.sampled_from([kh, 1, 2, 3]))
    stride = (draw(st.sampled_from([1, 2, 3])), draw(st.sampled_from([1, 2, 3])))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])))
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in = groups * draw(st.integers(1, 2))
    c_out = groups * draw(st.integers(1, 2))
    # Smallest legal input, plus a few pixels (odd and non-square sizes included).
    min_h = max(1, dilation[0] * (kh - 1) + 1 - 2 * padding[0])
    min_w = max(1, dilation[1] * (kw - 1) + 1 - 2 * padding[1])
    height = min_h + draw(st.integers(0, max_side))
    width = min_w + draw(st.integers(0, max_side))
    batch = draw(st.integers(1, 2))
    layer_args = dict(in_channels=c_in, out_channels=c_out, kernel_size=(kh, kw),
                      stride=stride, padding=padding, dilation=dilation, groups=groups)
    return layer_args, (batch, c_in, height, width)


def make_conv(xp, layer_args, bias=True):
    layer = Conv2d(**layer_args, bias=bias)
    if layer.bias is not None:  # non-zero bias, so a bias bug cannot hide
        layer.bias.data[...] = np.random.default_rng(1).standard_normal(layer.bias.shape)
    return layer.to("gpu") if xp is not np else layer


def unfold_args(layer_args):
    return (layer_args["kernel_size"], layer_args["stride"], layer_args["padding"],
            layer_args["dilation"], layer_args["groups"])


# --------------------------------------------------------------------------- gradients
@stateless_xp
@given(config=conv_configs(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv_gradients_input_and_every_param(xp, config, bias, seed):
    layer_args, shape = config
    layer = make_conv(xp, layer_args, bias)
    x = xp.asarray(np.random.default_rng(seed).standard_normal(shape))
    result = assert_gradients(layer, x, seed=seed)
    assert set(result.entries) == {"input", "weight"} | ({"bias"} if bias else set())


def test_conv_gradients_pointwise_strided_fast_path():
    layer = Conv2d(4, 6, 1, stride=2, groups=2)
    assert layer._pointwise
    x = np.random.default_rng(3).standard_normal((2, 4, 5, 6))
    assert_gradients(layer, x)


def test_directional_check_on_a_larger_conv():
    layer = Conv2d(8, 16, 3, padding=1)
    x = np.random.default_rng(4).standard_normal((4, 8, 12, 12))
    assert_gradients(layer, x, directional=True)


# --------------------------------------------------------------------------- im2col / col2im
def im2col_by_definition(x, kernel_size, stride, padding, dilation, groups):
    """The documented layout, entry by entry."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    n, c, h, w = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    c_g = c // groups
    cols = np.empty((n, out_h, out_w, groups, kh, kw, c_g))
    for index in np.ndindex(cols.shape):
        b, ho, wo, g, i, j, cc = index
        cols[index] = x_pad[b, g * c_g + cc, ho * sh + i * dh, wo * sw + j * dw]
    return cols.reshape(n * out_h * out_w, -1)


@given(config=conv_configs(max_side=2), seed=st.integers(0, 2**16))
def test_im2col_matches_its_definition(config, seed):
    layer_args, shape = config
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(im2col(x, *unfold_args(layer_args)),
                                  im2col_by_definition(x, *unfold_args(layer_args)))


@stateless_xp
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_col2im_is_the_adjoint_of_im2col(xp, config, seed):
    layer_args, shape = config
    draw = np.random.default_rng(seed)
    x = xp.asarray(draw.standard_normal(shape))
    cols = im2col(x, *unfold_args(layer_args))
    c = xp.asarray(draw.standard_normal(cols.shape))
    lhs = float(xp.sum(cols * c))
    rhs = float(xp.sum(x * col2im(c, shape, *unfold_args(layer_args))))
    assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + abs(rhs) + 1)


def test_im2col_writes_into_out_and_returns_fresh_arrays():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    first = im2col(x, 3, padding=1)
    second = im2col(2 * x, 3, padding=1)  # must not overwrite `first`
    np.testing.assert_array_equal(2 * first, second)
    out = np.empty_like(first)
    assert im2col(x, 3, padding=1, out=out) is out
    with pytest.raises(ValueError, match="im2col: out must be"):
        im2col(x, 3, padding=1, out=np.empty((3, 3), np.float32))


# --------------------------------------------------------------------------- fast vs loops
@stateless_xp
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_conv_matches_naive_loops(xp, config, seed):
    layer_args, shape = config
    layer = make_conv(xp, layer_args).to(np.float64)
    x = xp.asarray(np.random.default_rng(seed).standard_normal(shape))
    expected = conv2d_forward(x, layer.weight.data, layer.bias.data,
                              *unfold_args(layer_args)[1:])[0]
    np.testing.assert_allclose(minidl.to_numpy(layer(x)), minidl.to_numpy(expected),
                               rtol=1e-12, atol=1e-12)


def test_threaded_copies_agree_with_single_thread(monkeypatch):
    layer = Conv2d(3, 4, 3, stride=2, padding=1)
    draw = np.random.default_rng(5)
    x = draw.standard_normal((5, 3, 9, 7)).astype(np.float32)
    dy = draw.standard_normal((5, 4, 5, 4)).astype(np.float32)
    results = []
    for min_elements in (10**9, 1):  # never split, always split
        monkeypatch.setattr(cpu_kernels, "_PARALLEL_MIN_ELEMENTS", min_elements)
        layer.zero_grad()
        y = layer(x)
        results.append((y, layer.backward(dy), layer.weight.grad.copy()))
    for single, threaded in zip(*results):
        np.testing.assert_array_equal(single, threaded)


# --------------------------------------------------------------------------- PyTorch reference
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_conv_matches_pytorch_forward_and_backward(config, seed):
    torch = pytest.importorskip("torch")
    layer_args, shape = config
    layer = make_conv(np, layer_args).to(np.float64)
    draw = np.random.default_rng(seed)
    x = draw.standard_normal(shape)
    y = layer(x)
    dy = draw.standard_normal(y.shape)
    dx = layer.backward(dy)
    x_t = torch.tensor(x, requires_grad=True)
    w_t = torch.tensor(layer.weight.data, requires_grad=True)
    b_t = torch.tensor(layer.bias.data, requires_grad=True)
    y_t = torch.nn.functional.conv2d(x_t, w_t, b_t, *unfold_args(layer_args)[1:])
    y_t.backward(torch.tensor(dy))
    for ours, theirs in ((y, y_t), (dx, x_t.grad), (layer.weight.grad, w_t.grad),
                         (layer.bias.grad, b_t.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- dtypes, caching
def test_float32_stays_float32_everywhere():
    layer = Conv2d(3, 4, 3, padding=1)
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32


def test_outputs_never_alias_the_reused_workspaces():
    draw = np.random.default_rng(0)
    layer = Conv2d(2, 3, 3, padding=1)
    x1, x2 = (draw.standard_normal((2, 2, 5, 5)).astype(np.float32) for _ in range(2))
    y1 = layer(x1)
    y1_copy = y1.copy()
    dx1 = layer.backward(np.ones_like(y1))
    dx1_copy = dx1.copy()
    y2 = layer(x2)
    layer.backward(2 * np.ones_like(y2))
    np.testing.assert_array_equal(y1, y1_copy)
    np.testing.assert_array_equal(dx1, dx1_copy)
    # A second layer reuses the shared scratch buffers but not the cached columns.
    other = Conv2d(2, 3, 3, padding=1)
    layer(x1)
    other(x2)
    layer.zero_grad()
    dy = draw.standard_normal(y1.shape).astype(np.float32)
    dx = layer.backward(dy)
    reference = Conv2d(2, 3, 3, padding=1)
    reference.load_state_dict(layer.state_dict())
    reference(x1)
    np.testing.assert_allclose(dx, reference.backward(dy), rtol=1e-6)
    np.testing.assert_allclose(layer.weight.grad, reference.weight.grad, rtol=1e-6)


def test_backward_accumulates_into_grad():
    layer = Conv2d(2, 2, 3)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    dy = np.ones((1, 2, 2, 2), np.float32)
    layer(x)
    layer.backward(dy)
    once = layer.weight.grad.copy()
    layer(x)
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * once, rtol=1e-6)


# --------------------------------------------------------------------------- summary
def test_mnist_cnn_summary_counts_570436_parameters():
    model = L.Sequential(
        L.Conv2d(1, 18, 3, padding=1), L.Conv2d(18, 36, 3, padding=1), L.MaxPool2d(2),
        L.Conv2d(36, 72, 3, padding=1), L.MaxPool2d(2),
        L.Conv2d(72, 72, 3, padding=1), L.MaxPool2d(2),
        L.Flatten(), L.Linear(648, 750), L.Linear(750, 10))
    lines = []
    totals = model.summary((1, 28, 28), print_fn=lines.append)
    assert totals["params"] == 570_436
    first_conv = 18 * 28 * 28 * 1 * 9
    assert totals["macs"] == (first_conv + 36 * 28 * 28 * 18 * 9 + 72 * 14 * 14 * 36 * 9
                              + 72 * 7 * 7 * 72 * 9 + 648 * 750 + 750 * 10)


def test_macs_count_groups():
    layer = Conv2d(4, 6, (3, 2), groups=2)
    assert layer.macs((4, 5, 5), (6, 3, 4)) == 6 * 3 * 4 * 2 * 3 * 2


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, error, message", [
    (dict(kernel_size=0), ValueError, "kernel_size must be a positive int"),
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size must be an int or a pair"),
    (dict(kernel_size=2.5), TypeError, "kernel_size must be a positive integer, got 2.5"),
    (dict(stride=0), ValueError, "stride must be a positive int"),
    (dict(padding=-1), ValueError, "padding must be a non-negative int"),
    (dict(dilation=0), ValueError, "dilation must be a positive int"),
    (dict(groups=4), ValueError, "divisible by groups"),
    (dict(in_channels=0), ValueError, "in_channels must be a positive int"),
    (dict(out_channels=True), TypeError, "out_channels must be a positive integer, got True"),
])
def test_constructor_validates_arguments(kwargs, error, message):
    args = dict(in_channels=6, out_channels=6, kernel_size=3) | kwargs
    with pytest.raises(error, match=message):
        Conv2d(**args)


@pytest.mark.parametrize("x, error, message", [
    (np.zeros((3, 8, 8), np.float32), ValueError,
     r"Conv2d: expected input of shape \(N, C, H, W\)"),
    (np.zeros((1, 2, 8, 8), np.float32), ValueError, "Conv2d: expected 3 channels"),
    (np.zeros((1, 3, 8, 8), np.int64), TypeError, "Conv2d: expected a float32 or float64"),
    (np.zeros((1, 3, 2, 8), np.float32), ValueError, "smaller than the dilated kernel 5x5"),
])
def test_bad_input_gets_a_clear_error(x, error, message):
    layer = Conv2d(3, 4, 3, dilation=2)
    with pytest.raises(error, match=message):
        layer(x)


def test_padding_makes_a_small_input_legal():
    layer = Conv2d(1, 1, 3, padding=1)
    y = layer(np.ones((1, 1, 1, 1), np.float32))
    assert y.shape == (1, 1, 1, 1)
    np.testing.assert_allclose(y[0, 0, 0, 0], layer.weight.data[0, 0, 1, 1] + layer.bias.data[0])


def test_col2im_rejects_wrong_shape():
    with pytest.raises(ValueError, match="col2im: expected cols of shape"):
        col2im(np.zeros((5, 9)), (1, 1, 4, 4), 3)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match="Conv2d.backward: nothing saved"):
        Conv2d(1, 1, 1).backward(np.zeros((1, 1, 1, 1), np.float32))


# --------------------------------------------------------------------------- GPU
@pytest.mark.skipif(not minidl.gpu_available(), reason="needs CuPy and a GPU")
@given(config=conv_configs(), seed=st.integers(0, 2**16))
def test_gpu_forward_and_backward_agree_with_cpu(config, seed):
    layer_args, shape = config
    cpu = make_conv(np, layer_args).to(np.float64)
    gpu = make_conv(np, layer_args).to(np.float64)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("gpu")
    draw = np.random.default_rng(seed)
    x = draw.standard_normal(shape)
    y = cpu(x)
    dy = draw.standard_normal(y.shape)
    dx = cpu.backward(dy)
    y_gpu = gpu(minidl.to_device(x, "gpu"))
    dx_gpu = gpu.backward(minidl.to_device(dy, "gpu"))
    for ours, theirs in ((y, y_gpu), (dx, dx_gpu), (cpu.weight.grad, gpu.weight.grad),
                         (cpu.bias.grad, gpu.bias.grad)):
        np.testing.assert_allclose(minidl.to_numpy(theirs), ours, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("in_channels, kernel", [(1, 1), (3, 1), (1, 3)])
def test_returned_gradients_do_not_alias_reused_buffers(in_channels, kernel):
    """dx must survive the next backward (the layers reuse scratch buffers)."""
    layer = Conv2d(in_channels, 3, kernel, padding=kernel // 2)
    x = np.random.default_rng(0).random((2, in_channels, 4, 4)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    kept = dx.copy()
    y = layer(x)
    layer.backward(np.full_like(y, 5.0))
    np.testing.assert_array_equal(dx, kept)
