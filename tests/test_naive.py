"""minidl.naive: each loop reference against finite differences, and against its fast layer.

1. Every backward (for the input and every parameter) is compared with centered
   differences of ``L = sum(out * dout)`` for a random ``dout``, in float64, with the
   tolerances of :data:`minidl.gradcheck.TOLERANCES`.
2. Every reference is compared with the fast layer it defines (Linear, Conv2d,
   MaxPool2d, AvgPool2d, BatchNorm1d/2d, Dropout, CrossEntropyLoss): forward values and
   every gradient equal within float64 round-off (the two sum in different orders).

Configs (stride, padding, dilation, groups, ints or pairs, odd sizes, a batch of 1) are
drawn by hypothesis; tensors are tiny so the full finite-difference checks stay fast.
Max-pool inputs are distinct values spaced far beyond eps (no ties, differentiable),
except in the tie tests, which check that the first maximum wins.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import minidl
from minidl import backend, naive
from minidl import layers as L
from minidl.gradcheck import TOLERANCES, numerical_gradient, rel_error
from minidl.losses import CrossEntropyLoss

TOL = TOLERANCES[np.dtype(np.float64)]
ROUNDOFF = dict(rtol=1e-10, atol=1e-12)  # same math, another summation order

few = settings(max_examples=15, deadline=None)
# The xp fixture only names an array module (no state): safe to share across examples.
few_xp = settings(max_examples=15, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow])


def assert_matches_finite_differences(forward, tensors, analytic, dout):
    """forward() recomputes out from ``tensors`` (name -> array, perturbed in place);
    ``analytic`` maps the same names to the backward's gradients of ``sum(out * dout)``."""
    def loss(_):
        return np.sum(forward() * dout)

    for name, tensor in tensors.items():
        numeric = numerical_gradient(loss, tensor, TOL["eps"])
        error = rel_error(analytic[name], numeric, tiny=TOL["atol"] / TOL["rtol"])
        assert error <= TOL["rtol"], f"d{name}: max relative error {error:.2e}"


def assert_close(actual, expected):
    np.testing.assert_allclose(minidl.to_numpy(actual), minidl.to_numpy(expected), **ROUNDOFF)


def normal(draw_seed, shape, stream=0):
    return np.random.default_rng([draw_seed, stream]).standard_normal(shape)


def distinct_values(shape, seed):
    """A random permutation of 0, 0.1, 0.2, ...: no ties anywhere."""
    size = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(size).reshape(shape) / 10.0 - size / 20.0


def int_or_pair(values):
    """3 or (3, 1): the references and the layers accept both."""
    return st.one_of(st.sampled_from(values),
                     st.tuples(st.sampled_from(values), st.sampled_from(values)))


def as_pair(value):
    return value if isinstance(value, tuple) else (value, value)


# --------------------------------------------------------------------------- strategies
@st.composite
def conv_configs(draw):
    """Conv2d arguments and an input shape that fits them."""
    kernel = draw(int_or_pair([1, 2, 3]))
    stride, dilation = draw(int_or_pair([1, 2, 3])), draw(int_or_pair([1, 2]))
    padding = draw(int_or_pair([0, 1, 2]))
    groups = draw(st.sampled_from([1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    (kh, kw), (ph, pw), (dh, dw) = as_pair(kernel), as_pair(padding), as_pair(dilation)
    height = max(1, dh * (kh - 1) + 1 - 2 * ph) + draw(st.integers(0, 2))
    width = max(1, dw * (kw - 1) + 1 - 2 * pw) + draw(st.integers(0, 2))
    args = dict(in_channels=c_in, out_channels=c_out, kernel_size=kernel, stride=stride,
                padding=padding, dilation=dilation, groups=groups)
    return args, (draw(st.integers(1, 2)), c_in, height, width)


@st.composite
def pool_configs(draw):
    """(kernel_size, stride, padding) and an input shape; stride None sometimes."""
    kernel = draw(int_or_pair([1, 2, 3]))
    kh, kw = as_pair(kernel)
    stride = draw(st.one_of(st.none(), int_or_pair([1, 2, 3])))
    padding = draw(st.one_of(st.just(0), st.tuples(st.integers(0, kh // 2),
                                                   st.integers(0, kw // 2))))
    ph, pw = as_pair(padding)
    height = max(1, kh - 2 * ph) + draw(st.integers(0, 3))
    width = max(1, kw - 2 * pw) + draw(st.integers(0, 3))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), height, width)
    return (kernel, stride, padding), shape


def conv_reference_args(args):
    return dict(stride=args["stride"], padding=args["padding"], dilation=args["dilation"],
                groups=args["groups"])


def conv_weight_shape(args):
    kh, kw = as_pair(args["kernel_size"])
    return (args["out_channels"], args["in_channels"] // args["groups"], kh, kw)


batch_norm_shapes = st.one_of(
    st.tuples(st.integers(2, 5), st.integers(1, 3)),  # (N, C): N >= 2 values per channel
    st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(2, 3)))


# --------------------------------------------------------------------------- linear
@few
@given(lead=st.sampled_from([(1,), (3,), (2, 3)]), sizes=st.tuples(st.integers(1, 4),
       st.integers(1, 4)), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_backward_matches_finite_differences(lead, sizes, bias, seed):
    x = normal(seed, lead + sizes[:1])
    weight, b = normal(seed, sizes, 1), normal(seed, sizes[1:], 2) if bias else None
    dout = normal(seed, lead + sizes[1:], 3)
    dx, dweight, dbias = naive.linear_backward(dout, naive.linear_forward(x, weight, b)[1])
    tensors, grads = {"x": x, "weight": weight}, {"x": dx, "weight": dweight}
    if bias:
        tensors["bias"], grads["bias"] = b, dbias
    else:
        assert dbias is None
    assert_matches_finite_differences(lambda: naive.linear_forward(x, weight, b)[0],
                                      tensors, grads, dout)


@few_xp
@given(n=st.integers(1, 3), sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       bias=st.booleans(), seed=st.integers(0, 2**16))
def test_linear_matches_fast_layer(xp, n, sizes, bias, seed):
    layer = L.Linear(*sizes, bias=bias).to(np.float64)
    layer.weight.data[...] = normal(seed, sizes, 1)
    if bias:
        layer.bias.data[...] = normal(seed, sizes[1:], 2)
    if xp is not np:
        layer.to("gpu")
    x, dout = xp.asarray(normal(seed, (n, sizes[0]))), xp.asarray(normal(seed, (n, sizes[1]), 3))
    out, cache = naive.linear_forward(x, layer.weight.data, layer.bias.data if bias else None)
    dx, dweight, dbias = naive.linear_backward(dout, cache)
    assert_close(layer(x), out)
    assert_close(layer.backward(dout), dx)
    assert_close(layer.weight.grad, dweight)
    if bias:
        assert_close(layer.bias.grad, dbias)


# --------------------------------------------------------------------------- conv2d
@few
@given(config=conv_configs(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_backward_matches_finite_differences(config, bias, seed):
    args, shape = config
    x, weight = normal(seed, shape), normal(seed, conv_weight_shape(args), 1)
    b = normal(seed, (args["out_channels"],), 2) if bias else None
    kwargs = conv_reference_args(args)
    out, cache = naive.conv2d_forward(x, weight, b, **kwargs)
    dout = normal(seed, out.shape, 3)
    dx, dweight, dbias = naive.conv2d_backward(dout, cache)
    tensors, grads = {"x": x, "weight": weight}, {"x": dx, "weight": dweight}
    if bias:
        tensors["bias"], grads["bias"] = b, dbias
    else:
        assert dbias is None
    assert_matches_finite_differences(lambda: naive.conv2d_forward(x, weight, b, **kwargs)[0],
                                      tensors, grads, dout)


@few_xp
@given(config=conv_configs(), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_matches_fast_layer(xp, config, bias, seed):
    args, shape = config
    layer = L.Conv2d(**args, bias=bias).to(np.float64)
    layer.weight.data[...] = normal(seed, conv_weight_shape(args), 1)
    if bias:
        layer.bias.data[...] = normal(seed, (args["out_channels"],), 2)
    if xp is not np:
        layer.to("gpu")
    x = xp.asarray(normal(seed, shape))
    out, cache = naive.conv2d_forward(x, layer.weight.data, layer.bias.data if bias else None,
                                      **conv_reference_args(args))
    dout = xp.asarray(normal(seed, out.shape, 3))
    dx, dweight, dbias = naive.conv2d_backward(dout, cache)
    assert_close(layer(x), out)
    assert_close(layer.backward(dout), dx)
    assert_close(layer.weight.grad, dweight)
    if bias:
        assert_close(layer.bias.grad, dbias)


def test_conv2d_forward_is_the_definition_on_a_small_case():
    """One output pixel by hand: 2x2 kernel, stride 2, so windows do not overlap."""
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    weight = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out, _ = naive.conv2d_forward(x, weight, np.array([0.5]), stride=2)
    assert out.shape == (1, 1, 2, 2)
    assert out[0, 0, 1, 0] == 8 * 1 + 9 * 2 + 12 * 3 + 13 * 4 + 0.5


# --------------------------------------------------------------------------- pooling
POOLS = {"max": (naive.max_pool2d_forward, naive.max_pool2d_backward, L.MaxPool2d),
         "avg": (naive.avg_pool2d_forward, naive.avg_pool2d_backward, L.AvgPool2d)}


@pytest.mark.parametrize("kind", POOLS)
@few
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_pool_backward_matches_finite_differences(kind, config, seed):
    forward, backward, _ = POOLS[kind]
    args, shape = config
    x = distinct_values(shape, seed)
    out, cache = forward(x, *args)
    dout = normal(seed, out.shape, 3)
    assert_matches_finite_differences(lambda: forward(x, *args)[0], {"x": x},
                                      {"x": backward(dout, cache)}, dout)


@pytest.mark.parametrize("kind", POOLS)
@few_xp
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_pool_matches_fast_layer(xp, kind, config, seed):
    forward, backward, layer_class = POOLS[kind]
    args, shape = config
    x = xp.asarray(distinct_values(shape, seed))
    out, cache = forward(x, *args)
    dout = xp.asarray(normal(seed, out.shape, 3))
    layer = layer_class(*args)
    assert_close(layer(x), out)
    assert_close(layer.backward(dout), backward(dout, cache))


@few_xp
@given(config=pool_configs(), seed=st.integers(0, 2**16))
def test_max_pool_ties_go_where_the_fast_layer_sends_them(xp, config, seed):
    args, shape = config
    x = xp.asarray(np.random.default_rng(seed).integers(0, 2, shape).astype(np.float64))
    out, cache = naive.max_pool2d_forward(x, *args)
    dout = xp.asarray(normal(seed, out.shape, 3))
    layer = L.MaxPool2d(*args)
    assert_close(layer(x), out)
    assert_close(layer.backward(dout), naive.max_pool2d_backward(dout, cache))


def test_max_pool_tie_goes_to_the_first_maximum_in_row_major_order():
    x = np.array([[[[0.0, 1.0], [1.0, 1.0]]]])  # three tied maxima
    out, cache = naive.max_pool2d_forward(x, 2)
    dx = naive.max_pool2d_backward(np.array([[[[5.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[0.0, 5.0], [0.0, 0.0]]]])


def test_avg_pool_counts_padding_as_zeros():
    x = np.ones((1, 1, 2, 2))
    out, _ = naive.avg_pool2d_forward(x, 2, stride=2, padding=1)
    np.testing.assert_allclose(out, np.full((1, 1, 2, 2), 0.25))  # 1 real entry of 4


# --------------------------------------------------------------------------- batch norm
@few
@given(shape=batch_norm_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_backward_matches_finite_differences(shape, seed):
    x = normal(seed, shape)
    gamma, beta = normal(seed, shape[1:2], 1), normal(seed, shape[1:2], 2)
    out, cache = naive.batch_norm_forward(x, gamma, beta)
    dout = normal(seed, out.shape, 3)
    dx, dgamma, dbeta = naive.batch_norm_backward(dout, cache)
    assert_matches_finite_differences(lambda: naive.batch_norm_forward(x, gamma, beta)[0],
                                      {"x": x, "gamma": gamma, "beta": beta},
                                      {"x": dx, "gamma": dgamma, "beta": dbeta}, dout)


@few
@given(shape=batch_norm_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_graph_backward_equals_closed_form(shape, seed):
    x = normal(seed, shape)
    out, cache = naive.batch_norm_forward(x, normal(seed, shape[1:2], 1),
                                          normal(seed, shape[1:2], 2))
    dout = normal(seed, out.shape, 3)
    for graph, closed in zip(naive.batch_norm_backward(dout, cache),
                             naive.batch_norm_backward_alt(dout, cache)):
        assert_close(graph, closed)


@few_xp
@given(shape=batch_norm_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_matches_fast_layer(xp, shape, seed):
    layer = (L.BatchNorm1d if len(shape) == 2 else L.BatchNorm2d)(shape[1]).to(np.float64)
    layer.weight.data[...] = normal(seed, shape[1:2], 1)
    layer.bias.data[...] = normal(seed, shape[1:2], 2)
    if xp is not np:
        layer.to("gpu")
    x, dout = xp.asarray(normal(seed, shape)), xp.asarray(normal(seed, shape, 3))
    out, cache = naive.batch_norm_forward(x, layer.weight.data, layer.bias.data,
                                          eps=layer.eps)
    dx, dgamma, dbeta = naive.batch_norm_backward(dout, cache)
    assert_close(layer(x), out)
    assert_close(layer.backward(dout), dx)
    assert_close(layer.weight.grad, dgamma)
    assert_close(layer.bias.grad, dbeta)


# --------------------------------------------------------------------------- dropout
@few
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5)),
       p=st.sampled_from([0.0, 0.25, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_dropout_backward_matches_finite_differences(shape, p, seed):
    x = normal(seed, shape)
    mask = np.random.default_rng([seed, 4]).random(shape) >= p
    out, cache = naive.dropout_forward(x, p, mask)
    dout = normal(seed, shape, 3)
    assert_matches_finite_differences(lambda: naive.dropout_forward(x, p, mask)[0],
                                      {"x": x}, {"x": naive.dropout_backward(dout, cache)}, dout)


@few
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3)),
       p=st.sampled_from([0.0, 0.25, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_dropout_matches_fast_layer(shape, p, seed):
    """Same generator state, same draw: the layer's mask is the reference's."""
    x, dout = normal(seed, shape), normal(seed, shape, 3)
    layer = L.Dropout(p)
    backend.seed(seed)
    y = layer(x)
    backend.seed(seed)
    out, cache = naive.dropout_forward(x, p, generator=backend.rng(np))
    assert_close(y, out)
    assert_close(layer.backward(dout), naive.dropout_backward(dout, cache))


def test_dropout_needs_a_mask_or_a_generator():
    with pytest.raises(ValueError, match="mask or a generator"):
        naive.dropout_forward(np.ones(3), 0.5)


# --------------------------------------------------------------------------- loss
@few
@given(n=st.integers(1, 4), k=st.integers(2, 5), scale=st.sampled_from([1.0, 5.0]),
       seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_gradient_matches_finite_differences(n, k, scale, seed):
    logits = scale * normal(seed, (n, k))
    y = np.random.default_rng([seed, 5]).integers(0, k, n)
    _, dlogits = naive.softmax_cross_entropy(logits, y)
    numeric = numerical_gradient(lambda z: naive.softmax_cross_entropy(z, y)[0], logits,
                                 TOL["eps"])
    assert rel_error(dlogits, numeric, tiny=TOL["atol"] / TOL["rtol"]) <= TOL["rtol"]


@few_xp
@given(n=st.integers(1, 4), k=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_softmax_cross_entropy_matches_fast_loss(xp, n, k, seed):
    logits = xp.asarray(3.0 * normal(seed, (n, k)))
    y = xp.asarray(np.random.default_rng([seed, 5]).integers(0, k, n))
    loss, dlogits = naive.softmax_cross_entropy(logits, y)
    fast = CrossEntropyLoss()
    assert_close(fast(logits, y), loss)
    assert_close(fast.backward(), dlogits)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    logits = np.array([[1000.0, 0.0, -1000.0], [3.0, 1.0, 2.0]])
    y = np.array([1, 0])
    loss, dlogits = naive.softmax_cross_entropy(logits, y)
    shifted_loss, shifted_grad = naive.softmax_cross_entropy(logits + 1e4, y)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    np.testing.assert_allclose(shifted_loss, loss, rtol=1e-12)
    np.testing.assert_allclose(shifted_grad, dlogits, atol=1e-15)
