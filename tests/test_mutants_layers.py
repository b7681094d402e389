"""Contracts of the layers that mutation testing (issue 12) found unpinned.

SyncBatchNorm's own multi-rank tests run under ``mpiexec`` in subprocesses (see
tests/test_distributed.py), where a mutation-testing tool cannot see them. Here a world of
``k`` ranks is simulated in-process: ``k`` threads, each holding its own SyncBatchNorm and
its own shard of the batch, meet in an all-reduce that sums their arrays through a
barrier. The result must be BatchNorm on the whole batch: the same outputs, dx, running
statistics on every rank, and parameter gradients whose sum over the ranks is BatchNorm's.
"""
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

import minidl
from minidl import distributed
from minidl import layers as L

# No shrinking: a failing example is reported as drawn, so that a mutation-testing run
# (one test run per mutant) sees a failure in seconds instead of a long shrink.
stateless = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow],
                     phases=[Phase.explicit, Phase.reuse, Phase.generate])


# ---------------------------------------------------------------------------- SyncBatchNorm
class ThreadWorld:
    """``size`` ranks as threads; ``all_reduce`` reduces over them like MPI's Allreduce."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=5)
        self.slots = [None] * size
        self.local = threading.local()
        self.calls = []  # (rank, op, dtype) of every all-reduce, in order

    def all_reduce(self, x, op="sum"):
        if op not in distributed.OPS:
            raise ValueError(f"all_reduce: unknown op {op!r}")
        rank = self.local.rank
        self.calls.append((rank, op, x.dtype))
        self.slots[rank] = x.copy()
        self.barrier.wait()
        shapes = {slot.shape for slot in self.slots}
        assert len(shapes) == 1, f"ranks all-reduce different shapes {shapes}"
        stack = np.stack(self.slots)
        reduced = {"sum": stack.sum(0), "mean": stack.mean(0), "max": stack.max(0),
                   "min": stack.min(0)}[op]
        self.barrier.wait()  # every rank has read every slot before any is overwritten
        x[...] = reduced
        return x

    def run(self, work, *per_rank):
        """``work(rank, *args)`` on every rank at once; its results, or the first error."""
        results, errors = [None] * self.size, [None] * self.size

        def main(rank):
            self.local.rank = rank
            try:
                results[rank] = work(rank, *(args[rank] for args in per_rank))
            except BaseException as error:  # noqa: B036 - handed to the caller below
                errors[rank] = error
                self.barrier.abort()

        threads = [threading.Thread(target=main, args=(r,)) for r in range(self.size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = [e for e in errors if e is not None and
                 not isinstance(e, threading.BrokenBarrierError)] or [e for e in errors if e]
        if first:
            raise first[0]
        return results


@pytest.fixture
def world(monkeypatch):
    def make(size):
        fake = ThreadWorld(size)
        monkeypatch.setattr(distributed, "all_reduce", fake.all_reduce)
        return fake
    return make


def random_bn(kind, channels, mode, seed, eps, momentum):
    layer = kind(channels, eps=eps, momentum=momentum, affine=mode != "no_affine",
                 weight=mode != "no_scale")
    draw = np.random.default_rng(seed)
    for param in layer.parameters():
        param.data[...] = draw.uniform(0.5, 2.0, channels)
    layer.running_mean[...] = draw.standard_normal(channels)
    layer.running_var[...] = draw.uniform(0.5, 2.0, channels)
    return layer


@stateless
@given(dims=st.sampled_from([1, 2]), sizes=st.lists(st.integers(0, 3), min_size=1, max_size=3),
       c=st.integers(1, 3), hw=st.sampled_from([(1, 1), (2, 3), (3, 1)]),
       mode=st.sampled_from(["affine", "no_scale", "no_affine"]), training=st.booleans(),
       eps=st.sampled_from([1e-5, 0.3]), momentum=st.sampled_from([0.1, 0.7]),
       seed=st.integers(0, 2**16))
def test_sync_batchnorm_over_k_ranks_is_batchnorm_on_the_whole_batch(
        world, dims, sizes, c, hw, mode, training, eps, momentum, seed):
    """Any split of the batch over 1-3 ranks (empty shards included), train and eval,
    each BatchNorm variant: outputs, dx, grads summed over ranks, running statistics."""
    minidl.set_default_dtype(np.float64)
    spatial = hw if dims == 2 else ()
    if training and sum(sizes) * int(np.prod(spatial)) == 1:
        sizes = sizes + [1]  # one value per channel is an error (tested below)
    kinds = {1: (L.SyncBatchNorm1d, L.BatchNorm1d), 2: (L.SyncBatchNorm2d, L.BatchNorm2d)}
    sync_kind, plain_kind = kinds[dims]
    fake = world(len(sizes))
    rng = np.random.default_rng([seed, 0])
    shards = [rng.standard_normal((n, c) + spatial) * 2 + 1 for n in sizes]
    dys = [rng.standard_normal((n, c) + spatial) for n in sizes]
    layers = [random_bn(sync_kind, c, mode, seed, eps, momentum).train(training)
              for _ in sizes]
    plain = random_bn(plain_kind, c, mode, seed, eps, momentum).train(training)

    def step(rank, layer, x, dy):
        return layer(x), layer.backward(dy)

    for repeat in (1, 2):  # a second step: statistics move on, gradients accumulate
        outputs = fake.run(step, layers, shards, dys)
        y = plain(np.concatenate(shards))
        dx = plain.backward(np.concatenate(dys))
        np.testing.assert_allclose(np.concatenate([o[0] for o in outputs]), y,
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.concatenate([o[1] for o in outputs]), dx,
                                   rtol=1e-10, atol=1e-12)
        for out, x in zip(outputs, shards):
            assert out[0].shape == out[1].shape == x.shape
            assert out[0].dtype == out[1].dtype == np.float64
        for layer in layers:
            for name, value in plain.state_dict().items():
                np.testing.assert_allclose(layer.state_dict()[name], value, rtol=1e-12,
                                           atol=1e-12, err_msg=name)
        for index, param in enumerate(plain.parameters()):
            total = sum(layer.parameters()[index].grad for layer in layers)
            np.testing.assert_allclose(total, param.grad, rtol=1e-10, atol=1e-12)
    # every all-reduce is a sum, the same sequence on each rank
    ops = [[(op, dtype) for r, op, dtype in fake.calls if r == rank] for rank in
           range(len(sizes))]
    assert all(o == ops[0] for o in ops) and {op for op, _ in ops[0]} <= {"sum"}


@pytest.mark.parametrize("kind, shapes", [
    (L.SyncBatchNorm1d, [(1, 3), (0, 3)]),
    (L.SyncBatchNorm1d, [(1, 3)]),
    (L.SyncBatchNorm2d, [(0, 3, 1, 1), (1, 3, 1, 1), (0, 3, 1, 1)]),
])
def test_sync_batchnorm_one_value_per_channel_over_all_ranks_is_an_error(world, kind, shapes):
    fake = world(len(shapes))
    layers = [kind(3) for _ in shapes]
    before = [layer.state_dict() for layer in layers]
    with pytest.raises(ValueError) as error:
        fake.run(lambda rank, layer, shape: layer(np.ones(shape, np.float32)), layers, shapes)
    message = str(error.value)
    assert kind.__name__ in message and "more than 1 value per channel" in message
    assert "got 1" in message and ".eval()" in message
    for layer, state in zip(layers, before):  # nothing was updated
        for name, value in layer.state_dict().items():
            assert np.array_equal(value, state[name]), name
    # the same shapes in eval mode are fine
    for layer in layers:
        layer.eval()
    fake.run(lambda rank, layer, shape: layer(np.ones(shape, np.float32)), layers, shapes)


def test_sync_batchnorm_two_values_per_channel_train():
    """m = 2 is the smallest batch that trains (the unbiased variance has m - 1 = 1)."""
    for sync, plain, shape in ((L.SyncBatchNorm1d(2), L.BatchNorm1d(2), (2, 2)),
                               (L.SyncBatchNorm2d(2), L.BatchNorm2d(2), (1, 2, 1, 2))):
        x = np.arange(4, dtype=np.float32).reshape(shape)
        np.testing.assert_allclose(sync(x), plain(x), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sync.running_var, plain.running_var, rtol=1e-6)


def test_sync_batchnorm_float32_stays_float32(world):
    fake = world(2)
    layers = [L.SyncBatchNorm2d(3) for _ in range(2)]
    shards = [np.random.default_rng(r).standard_normal((2, 3, 2, 2)).astype(np.float32)
              for r in range(2)]
    outputs = fake.run(lambda rank, layer, x: (layer(x), layer.backward(x)), layers, shards)
    for y, dx in outputs:
        assert y.dtype == dx.dtype == np.float32
    for layer in layers:
        assert layer.running_mean.dtype == layer.running_var.dtype == np.float32


# ---------------------------------------------------------------------------- convert_sync_batchnorm
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine, weight", [(True, True), (True, False), (False, True)])
def test_convert_sync_batchnorm_keeps_every_setting(training, affine, weight):
    bn1 = L.BatchNorm1d(5, eps=0.25, momentum=0.6, affine=affine, weight=weight)
    bn2 = L.BatchNorm2d(4, eps=0.125, momentum=0.3, affine=affine, weight=weight)
    for bn in (bn1, bn2):
        bn.running_mean[...] = np.arange(bn.num_features)
        bn.running_var[...] = 1 + np.arange(bn.num_features)
    residual = L.Residual(bn2)  # a container that reads its child by attribute
    model = L.Sequential(L.Conv2d(2, 4, 3, padding=1), residual, L.ReLU(), L.Flatten(),
                         L.Linear(36, 5), bn1).train(training)
    keys, params = list(model.state_dict()), model.parameters()
    state = model.state_dict()
    converted = L.convert_sync_batchnorm(model)
    assert converted is model
    assert [type(m).__name__ for m in model] == [
        "Conv2d", "Residual", "ReLU", "Flatten", "Linear", "SyncBatchNorm1d"]
    assert type(residual.body) is L.SyncBatchNorm2d
    assert residual.body is residual.children()[0]
    assert model[5] is model._modules["5"] is getattr(model, "5")
    for old, new in ((bn1, model[5]), (bn2, residual.body)):
        assert (new.num_features, new.eps, new.momentum, new.affine, new.learn_scale) == (
            old.num_features, old.eps, old.momentum, old.affine, old.learn_scale)
        assert new.weight is old.weight and new.bias is old.bias
        assert new.running_mean is old.running_mean and new.running_var is old.running_var
        assert new.training is training
        assert list(new._buffers) == ["running_mean", "running_var"]
    assert list(model.state_dict()) == keys
    assert all(a is b for a, b in zip(model.parameters(), params))
    for name, value in model.state_dict().items():
        assert np.array_equal(value, state[name]), name
    x = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    assert model(x).shape == (4, 5)


def test_convert_sync_batchnorm_of_a_bare_layer():
    for kind, twin in ((L.BatchNorm1d, L.SyncBatchNorm1d), (L.BatchNorm2d, L.SyncBatchNorm2d)):
        bn = kind(3, momentum=0.2).eval()
        converted = L.convert_sync_batchnorm(bn)
        assert type(converted) is twin and converted.momentum == 0.2
        assert not converted.training and converted.weight is bn.weight
    # already synchronised, or no BatchNorm at all: the same object back, unchanged
    for layer in (L.SyncBatchNorm2d(3), L.Linear(2, 3), L.Sequential(L.SyncBatchNorm1d(2))):
        children = layer.children()
        assert L.convert_sync_batchnorm(layer) is layer
        assert all(a is b for a, b in zip(layer.children(), children))


# ---------------------------------------------------------------------------- repr and macs
REPR_CASES = [
    (L.ReLU, (), {}), (L.LeakyReLU, (0.2,), {}), (L.ELU, (), {"alpha": 0.5}),
    (L.GELU, (), {}), (L.GELU, ("tanh",), {}), (L.Softmax, (), {"axis": 1}),
    (L.Sigmoid, (), {}), (L.Tanh, (), {}), (L.Dropout, (0.25,), {}), (L.Dropout, (), {}),
    (L.Linear, (3, 4), {}), (L.Linear, (3, 4), {"bias": False}),
    (L.Conv2d, (1, 2, 3), {}),
    (L.Conv2d, (4, 6, (3, 2)), {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2),
                                "groups": 2, "bias": False}),
    (L.Conv2d, (2, 2, 3), {"dilation": 2}), (L.Conv2d, (2, 2, 3), {"dilation": (2, 1)}),
    (L.Conv2d, (2, 4, 1), {"groups": 2}),
    (L.BatchNorm1d, (3,), {}), (L.BatchNorm1d, (3,), {"eps": 0.01, "momentum": 0.2, "weight": False}),
    (L.BatchNorm2d, (3,), {"affine": False}), (L.BatchNorm2d, (3,), {"affine": False, "weight": False}),
    (L.SyncBatchNorm2d, (2,), {"weight": False}),
    (L.MaxPool2d, (3,), {"stride": 2, "padding": 1}), (L.AvgPool2d, ((2, 3),), {}),
    (L.GlobalAvgPool2d, (), {}), (L.GlobalMaxPool2d, (), {}), (L.Flatten, (), {}),
    (L.Identity, (), {}),
]


def settings_of(layer):
    """Every plain setting of a layer (no arrays, parameters or caches) and its parameters'
    names and shapes."""
    plain = {name: value for name, value in vars(layer).items() if not name.startswith("_")
             and isinstance(value, (bool, int, float, str, tuple, type(None)))}
    return plain, [(name, p.data.shape) for name, p in layer.named_parameters()]


@pytest.mark.parametrize("kind, args, kwargs", REPR_CASES,
                         ids=[f"{k.__name__}-{i}" for i, (k, _, _) in enumerate(REPR_CASES)])
def test_repr_is_the_call_that_builds_the_same_layer(kind, args, kwargs):
    """repr(layer) names the class and every non-default setting, as a constructor call:
    evaluating it builds a layer with the same settings and parameter shapes."""
    layer = kind(*args, **kwargs)
    text = repr(layer)
    assert text.startswith(kind.__name__ + "(")
    rebuilt = eval(text, {name: getattr(L, name) for name in dir(L)})  # noqa: S307
    assert type(rebuilt) is kind
    assert settings_of(rebuilt) == settings_of(layer)
    assert repr(rebuilt) == text


def test_conv_repr_leaves_out_default_dilation_and_groups():
    text = repr(L.Conv2d(2, 4, 3))
    assert "dilation" not in text and "groups" not in text, text


def test_batchnorm_repr_shows_weight_false_only_for_an_unscaled_affine_layer():
    for affine, weight, shown in ((True, True, False), (True, False, True),
                                  (False, True, False), (False, False, False)):
        text = repr(L.BatchNorm2d(3, affine=affine, weight=weight))
        assert ("weight=False" in text) is shown, text
        assert f"affine={affine}" in text


@pytest.mark.parametrize("layer, sample_in, sample_out, expected", [
    (L.Linear(4, 5), (4,), (5,), 4 * 5),
    (L.Linear(4, 5), (3, 4), (3, 5), 3 * 4 * 5),       # a (T, features) sample: T rows
    (L.Linear(4, 5), (2, 3, 4), (2, 3, 5), 2 * 3 * 4 * 5),
    (L.Conv2d(3, 6, 3), (3, 5, 5), (6, 3, 3), 6 * 3 * 3 * 3 * 3 * 3),
    (L.Conv2d(4, 6, (3, 2), groups=2), (4, 5, 5), (6, 3, 4), 6 * 3 * 4 * 2 * 3 * 2),
    (L.Conv2d(6, 6, 1, groups=3), (6, 4, 4), (6, 4, 4), 6 * 4 * 4 * 2),
    (L.ReLU(), (3, 4), (3, 4), 0),
])
def test_macs_per_sample_are_exact_integers(layer, sample_in, sample_out, expected):
    """Multiply-adds of one sample: each output value costs (fan-in) multiply-adds."""
    macs = layer.macs(sample_in, sample_out)
    assert type(macs) is int and macs == expected
    x = np.zeros((2,) + sample_in, np.float32)
    assert layer(x).shape[1:] == sample_out  # the shapes above are the layer's own


def test_summary_counts_linear_on_sequences_per_position():
    lines = []
    model = L.Sequential(L.Linear(4, 5), L.ReLU(), L.Linear(5, 2))
    totals = model.summary((3, 4), print_fn=lines.append)
    assert totals["macs"] == 3 * (4 * 5 + 5 * 2)


# ---------------------------------------------------------------------------- defaults
def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


DEFAULT_CASES = [  # (minidl layer, the PyTorch module built with the same arguments, settings)
    ("Dropout", (), ["p"]),
    ("LeakyReLU", (), ["negative_slope"]),
    ("ELU", (), ["alpha"]),
    ("GELU", (), ["approximate"]),
    ("Linear", (3, 4), ["in_features", "out_features", "bias"]),
    ("Conv2d", (2, 4, 3), ["kernel_size", "stride", "padding", "dilation", "groups", "bias"]),
    ("BatchNorm1d", (3,), ["eps", "momentum", "affine", "weight"]),
    ("BatchNorm2d", (3,), ["eps", "momentum", "affine", "weight"]),
    ("MaxPool2d", (3,), ["kernel_size", "stride", "padding"]),
    ("AvgPool2d", (3,), ["kernel_size", "stride", "padding"]),
]


@pytest.mark.parametrize("name, args, names", DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_defaults_are_pytorchs(name, args, names):
    """A layer built with only its required arguments has PyTorch's settings."""
    torch = pytest.importorskip("torch")
    ours, theirs = getattr(L, name)(*args), getattr(torch.nn, name)(*args)
    for setting in names:
        if setting in ("bias", "weight"):  # a parameter, present or not
            assert (getattr(ours, setting) is None) == (getattr(theirs, setting) is None), setting
            continue
        mine, torchs = getattr(ours, setting), getattr(theirs, setting)
        if isinstance(mine, tuple):
            torchs = _pair(torchs)
        assert mine == torchs and type(mine) is type(torchs), (setting, mine, torchs)


# ---------------------------------------------------------------------------- copy threads
@pytest.mark.parametrize("conv_args", [
    dict(in_channels=16, out_channels=16, kernel_size=3, padding=1),
    dict(in_channels=16, out_channels=16, kernel_size=(3, 2), stride=2, dilation=(1, 2),
         groups=2),
    dict(in_channels=16, out_channels=16, kernel_size=1),
    dict(in_channels=16, out_channels=16, kernel_size=1, stride=2),
])
def test_copy_threads_give_the_one_thread_result_exactly(monkeypatch, conv_args):
    """Large copies are split over the batch between threads (uneven chunks for N = 5).
    Every value must be the one-thread value: a chunk computed twice or left out shows.
    (MINIDL_NUM_THREADS=1 runs never reach that code without setting the count here.)"""
    from minidl import threads
    from minidl.layers import cpu_kernels
    # A pool of this test's own, shut down at the end: no idle threads are left behind
    # in the process (a mutation-testing tool forks it once per mutant).
    monkeypatch.setattr(cpu_kernels, "_pool", None)
    try:
        _compare_thread_counts(monkeypatch, threads, cpu_kernels, conv_args)
    finally:
        if cpu_kernels._pool is not None:
            cpu_kernels._pool.shutdown(wait=True)


def _compare_thread_counts(monkeypatch, threads, cpu_kernels, conv_args):
    draw = np.random.default_rng(0)
    x = draw.standard_normal((5, 16, 64, 64)).astype(np.float32)  # > 2**18 values
    weight = draw.standard_normal((16, 16 // conv_args.get("groups", 1))
                                  + L.Conv2d(**conv_args).kernel_size).astype(np.float32)
    results = []
    for count in (4, 1):  # threaded first: its buffers are fresh, not left by the other
        monkeypatch.setattr(threads, "get_num_threads", lambda count=count: count)
        cpu_kernels._scratch.clear()
        layer = L.Conv2d(**conv_args)
        layer.weight.data[...] = weight
        layer.bias.data[...] = np.arange(16)
        y = layer(x)
        dy = draw.standard_normal(y.shape).astype(np.float32) if not results else results[0][3]
        dx = layer.backward(dy)
        results.append((y, dx, layer.weight.grad.copy(), dy, layer.bias.grad.copy()))
    for threaded, single, name in zip(results[0], results[1], ["y", "dx", "dW", "dy", "db"]):
        assert np.array_equal(threaded, single), name
    monkeypatch.setattr(threads, "get_num_threads", lambda: 4)
    cpu_kernels._scratch.clear()
    columns = L.im2col(x, 3, padding=1)  # im2col/col2im alone, into fresh arrays
    monkeypatch.setattr(threads, "get_num_threads", lambda: 1)
    cpu_kernels._scratch.clear()
    assert np.array_equal(columns, L.im2col(x, 3, padding=1))
    monkeypatch.setattr(threads, "get_num_threads", lambda: 3)
    back = L.col2im(columns, x.shape, 3, padding=1)
    monkeypatch.setattr(threads, "get_num_threads", lambda: 1)
    assert np.array_equal(back, L.col2im(columns, x.shape, 3, padding=1))


# ---------------------------------------------------------------------------- containers
def _linear(n_in, n_out, seed):
    layer = L.Linear(n_in, n_out)
    draw = np.random.default_rng(seed)
    layer.weight.data[...] = draw.standard_normal(layer.weight.data.shape)
    layer.bias.data[...] = draw.standard_normal(layer.bias.data.shape)
    return layer


@pytest.mark.parametrize("projection", [False, True])
def test_residual_is_body_plus_the_given_shortcut(projection):
    """y = body(x) + shortcut(x), dx = body'(dy) + shortcut'(dy), against the float64
    formulas of two Linear layers (the identity when no shortcut is given)."""
    minidl.set_default_dtype(np.float64)
    body, shortcut = _linear(3, 3, 0), (_linear(3, 3, 1) if projection else None)
    block = L.Residual(body, shortcut)
    assert (block.shortcut is shortcut) if projection else type(block.shortcut) is L.Identity
    x = np.random.default_rng(2).standard_normal((4, 3))
    dy = np.random.default_rng(3).standard_normal((4, 3))
    w_skip = shortcut.weight.data if projection else np.eye(3)
    b_skip = shortcut.bias.data if projection else 0.0
    expected = x @ body.weight.data + body.bias.data + x @ w_skip + b_skip
    np.testing.assert_allclose(block(x), expected, rtol=1e-12)
    np.testing.assert_allclose(block.backward(dy), dy @ body.weight.data.T + dy @ w_skip.T,
                               rtol=1e-12)
    np.testing.assert_allclose(body.weight.grad, x.T @ dy, rtol=1e-12)
    if projection:
        np.testing.assert_allclose(shortcut.weight.grad, x.T @ dy, rtol=1e-12)


@pytest.mark.parametrize("body, shortcut, label", [
    (None, None, "body"), (5, None, "body"), (L.ReLU, None, "body"),
    (L.ReLU(), 5, "shortcut"), (L.ReLU(), "identity", "shortcut"), (L.ReLU(), L.ReLU, "shortcut"),
])
def test_residual_refuses_what_is_not_a_module(body, shortcut, label):
    with pytest.raises(TypeError) as error:
        L.Residual(body, shortcut)
    message = str(error.value)
    assert "Residual" in message and label in message
    wrong = body if label == "body" else shortcut
    assert type(wrong).__name__ in message


def test_residual_with_mismatched_shapes_is_a_value_error_naming_both():
    block = L.Residual(L.Linear(3, 4))
    with pytest.raises(ValueError) as error:
        block(np.ones((2, 3), np.float32))
    message = str(error.value)
    assert "Residual" in message and "(2, 4)" in message and "(2, 3)" in message


def test_needs_input_grad_reaches_every_container_and_dx_skipping_is_consistent():
    """set_needs_input_grad(False): the containers and every layer up to the first one
    with parameters skip dx (the backward returns None); later layers keep dx; with
    True, everyone computes dx again."""
    minidl.set_default_dtype(np.float64)
    body = L.Sequential(_linear(3, 3, 0), L.ReLU())
    model = L.Sequential(L.ReLU(), L.Tanh(), L.Residual(body), _linear(3, 2, 1))
    reference = L.Sequential(L.ReLU(), L.Tanh(),
                             L.Residual(L.Sequential(_linear(3, 3, 0), L.ReLU())),
                             _linear(3, 2, 1))
    x = np.random.default_rng(2).standard_normal((4, 3))
    dy = np.random.default_rng(3).standard_normal((4, 2))
    model.set_needs_input_grad(False)
    flags = [m.needs_input_grad for _, m in model.named_modules()]
    # model, ReLU, Tanh, Residual, body, Linear, ReLU, Identity, Linear
    assert flags == [False, False, False, False, False, False, True, False, True]
    model(x)
    assert model.backward(dy) is None
    for layer in (model[0], model[1]):  # below the skipped dx: caches released, not kept
        with pytest.raises(RuntimeError, match="nothing saved"):
            layer.backward(np.ones((4, 3)))
    reference(x)
    reference.backward(dy)
    for skipped, full in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(skipped.grad, full.grad, rtol=1e-12)
    model.set_needs_input_grad(True)
    assert all(m.needs_input_grad is True for _, m in model.named_modules())
    model.zero_grad()
    reference.zero_grad()
    model(x)
    reference(x)
    np.testing.assert_allclose(model.backward(dy), reference.backward(dy), rtol=1e-12)


def test_sequential_refuses_what_is_not_a_module():
    with pytest.raises(TypeError) as error:
        L.Sequential(L.ReLU(), L.ReLU, L.ReLU())
    message = str(error.value)
    assert message.startswith("Sequential: argument 1 must be a Module") and \
        message.endswith("got type"), message  # L.ReLU, the class, not an instance


# ---------------------------------------------------------------------------- arguments
ACCEPTED = [  # boundary values that must be accepted, with the setting they give
    (L.Dropout, {"p": 0.0}, "p", 0.0), (L.Dropout, {"p": 0.999}, "p", 0.999),
    (L.ELU, {"alpha": 1e-9}, "alpha", 1e-9), (L.LeakyReLU, {"negative_slope": -2}, "negative_slope", -2.0),
    (L.LeakyReLU, {"negative_slope": 0}, "negative_slope", 0.0),
    (L.GELU, {"approximate": "tanh"}, "approximate", "tanh"),
    (L.Softmax, {"axis": 0}, "axis", 0), (L.Softmax, {"axis": -3}, "axis", -3),
    (L.BatchNorm1d, {"num_features": 2, "momentum": 0}, "momentum", 0.0),
    (L.BatchNorm1d, {"num_features": 2, "momentum": 1}, "momentum", 1.0),
    (L.BatchNorm2d, {"num_features": 2, "eps": 1e-12}, "eps", 1e-12),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": [3, 1]}, "kernel_size", (3, 1)),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 1, "padding": [0, 2]},
     "padding", (0, 2)),
    (L.Conv2d, {"in_channels": 6, "out_channels": 3, "kernel_size": 1, "groups": 3}, "groups", 3),
    (L.MaxPool2d, {"kernel_size": (15, 17)}, "kernel_size", (15, 17)),
    (L.MaxPool2d, {"kernel_size": 3, "padding": 1}, "padding", (1, 1)),
    (L.AvgPool2d, {"kernel_size": (5, 3), "padding": (2, 1)}, "padding", (2, 1)),
    (L.MaxPool2d, {"kernel_size": 3}, "stride", (3, 3)),
    (L.MaxPool2d, {"kernel_size": 3, "stride": 1}, "stride", (1, 1)),
]


@pytest.mark.parametrize("kind, kwargs, name, value", ACCEPTED,
                         ids=[f"{k.__name__}-{n}-{i}" for i, (k, _, n, _) in enumerate(ACCEPTED)])
def test_boundary_arguments_are_accepted(kind, kwargs, name, value):
    setting = getattr(kind(**kwargs), name)
    assert setting == value and type(setting) is type(value)


REFUSED = [  # (layer, arguments, error type, the argument the message must name)
    (L.Dropout, {"p": 1.0}, ValueError, "p"), (L.Dropout, {"p": -0.01}, ValueError, "p"),
    (L.Dropout, {"p": "0.5"}, TypeError, "p"),
    (L.ELU, {"alpha": 0.0}, ValueError, "alpha"), (L.ELU, {"alpha": -1.0}, ValueError, "alpha"),
    (L.LeakyReLU, {"negative_slope": None}, TypeError, "negative_slope"),
    (L.GELU, {"approximate": "Tanh"}, ValueError, "approximate"),
    (L.Softmax, {"axis": 1.0}, TypeError, "axis"),
    (L.BatchNorm1d, {"num_features": 0}, ValueError, "num_features"),
    (L.BatchNorm1d, {"num_features": 2, "eps": 0.0}, ValueError, "eps"),
    (L.BatchNorm1d, {"num_features": 2, "momentum": 1.01}, ValueError, "momentum"),
    (L.BatchNorm2d, {"num_features": 2, "momentum": -0.01}, ValueError, "momentum"),
    (L.BatchNorm2d, {"num_features": 2, "affine": 1}, TypeError, "affine"),
    (L.BatchNorm2d, {"num_features": 2, "weight": "yes"}, TypeError, "weight"),
    (L.Linear, {"in_features": 0, "out_features": 2}, ValueError, "in_features"),
    (L.Linear, {"in_features": 2, "out_features": 2.0}, TypeError, "out_features"),
    (L.Linear, {"in_features": 2, "out_features": 2, "bias": None}, TypeError, "bias"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": (3, 3, 3)}, ValueError,
     "kernel_size"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": (3,)}, ValueError,
     "kernel_size"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "stride": 0}, ValueError,
     "stride"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "padding": -1},
     ValueError, "padding"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 3, "dilation": (1, 0)},
     ValueError, "dilation"),
    (L.Conv2d, {"in_channels": 4, "out_channels": 3, "kernel_size": 1, "groups": 2},
     ValueError, "groups"),
    (L.Conv2d, {"in_channels": 3, "out_channels": 4, "kernel_size": 1, "groups": 2},
     ValueError, "groups"),
    (L.Conv2d, {"in_channels": 2, "out_channels": 2, "kernel_size": 1, "bias": 0}, TypeError,
     "bias"),
    (L.MaxPool2d, {"kernel_size": 16}, ValueError, "255"),
    (L.MaxPool2d, {"kernel_size": 3, "padding": (1, 2)}, ValueError, "padding"),
    (L.AvgPool2d, {"kernel_size": (4, 2), "padding": (3, 0)}, ValueError, "padding"),
    (L.AvgPool2d, {"kernel_size": 2, "stride": 0}, ValueError, "stride"),
    (L.MaxPool2d, {"kernel_size": 3, "padding": -1}, ValueError, "padding"),
    (L.AvgPool2d, {"kernel_size": 3, "padding": 1.0}, TypeError, "padding"),
]


@pytest.mark.parametrize("kind, kwargs, error, name", REFUSED,
                         ids=[f"{k.__name__}-{n}-{i}" for i, (k, _, _, n) in enumerate(REFUSED)])
def test_bad_arguments_are_refused_naming_the_class_and_the_argument(kind, kwargs, error, name):
    with pytest.raises(error) as raised:
        kind(**kwargs)
    message = str(raised.value)
    assert type(raised.value) is error
    assert message.startswith(kind.__name__ + ":"), message
    assert name in message, message


@pytest.mark.parametrize("layer, shape, sizes", [
    (L.Conv2d(1, 1, 3), (1, 1, 2, 5), ("2x5", "3x3")),                  # one row short
    (L.Conv2d(1, 1, 3), (1, 1, 5, 2), ("5x2", "3x3")),                  # one column short
    (L.Conv2d(1, 1, 3, dilation=2, padding=(1, 0)), (1, 1, 2, 4), ("4x4", "5x5")),
    (L.Conv2d(1, 1, (2, 3), dilation=(3, 1)), (1, 1, 3, 3), ("3x3", "4x3")),
    (L.MaxPool2d(3), (1, 1, 2, 3), ("2x3", "3x3")),
    (L.AvgPool2d(2, padding=1), (1, 1, 1, 1), None),                    # padded 3x3 fits
])
def test_an_input_smaller_than_the_dilated_kernel_is_a_value_error(layer, shape, sizes):
    """The message gives the padded input size and the dilated kernel size."""
    x = np.ones(shape, np.float32)
    if sizes is None:
        assert layer(x).shape == (1, 1, 1, 1)
        return
    with pytest.raises(ValueError) as error:
        layer(x)
    message = str(error.value)
    assert message.startswith(type(layer).__name__ + ":"), message
    padded, kernel = sizes
    assert f"is {padded}, smaller than the dilated kernel {kernel}" in message, message


@pytest.mark.parametrize("kind, shape", [
    (L.BatchNorm1d, (0, 3)), (L.BatchNorm2d, (0, 3, 2, 2)),
    (L.SyncBatchNorm1d, (0, 3)), (L.SyncBatchNorm2d, (0, 3, 2, 2))])
def test_batchnorm_on_an_empty_training_batch_keeps_its_statistics(kind, shape):
    """N = 0 in train mode (like PyTorch): an empty output and zero gradients, computed
    with the running statistics, which stay as they were; no warning, no NaN."""
    import warnings
    layer = random_bn(kind, 3, "affine", 0, 1e-5, 0.1)
    before = layer.state_dict()
    x = np.zeros(shape, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = layer(x)
        dx = layer.backward(np.zeros(shape, np.float32))
    assert y.shape == dx.shape == shape and y.dtype == dx.dtype == np.float32
    for name, value in layer.state_dict().items():
        assert np.array_equal(value, before[name]), name
    for param in layer.parameters():
        assert not param.grad.any()


# ---------------------------------------------------------------------------- im2col / col2im
def test_im2col_and_col2im_refuse_inconsistent_arguments():
    x = np.ones((1, 4, 5, 5), np.float32)
    good = np.empty((9, 36), np.float32)
    cases = [
        (lambda: L.im2col(x[0], 3), "im2col", "(N, C, H, W)"),
        (lambda: L.im2col(x, 3, groups=3), "im2col", "groups=3"),
        (lambda: L.im2col(x, 3, out=np.empty((9, 37), np.float32)), "im2col", "out must be"),
        (lambda: L.im2col(x, 3, out=np.empty((36, 9), np.float32).T), "im2col", "C-contiguous"),
        (lambda: L.col2im(good, (1, 4, 5, 5), 3, groups=3), "col2im", "groups=3"),
        (lambda: L.col2im(good[:, :35], (1, 4, 5, 5), 3), "col2im", "(9, 36)"),
        (lambda: L.col2im(good, (1, 4, 2, 5), 3), "col2im", "smaller than the dilated kernel"),
    ]
    for call, owner, detail in cases:
        with pytest.raises(ValueError) as error:
            call()
        message = str(error.value)
        assert message.startswith(owner + ":") and detail in message, message
    assert L.im2col(x, 3, out=good) is good
    assert L.col2im(good, (1, 4, 5, 5), 3, groups=2).shape == (1, 4, 5, 5)


def test_softmax_takes_every_axis_from_minus_ndim_to_ndim_minus_one():
    minidl.set_default_dtype(np.float64)
    x = np.random.default_rng(0).standard_normal((3, 4))
    for axis in (-2, -1, 0, 1):
        expected = np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)
        np.testing.assert_allclose(L.Softmax(axis)(x), expected, rtol=1e-12)
    for axis in (-3, 2):
        with pytest.raises(ValueError, match="Softmax: axis"):
            L.Softmax(axis)(x)


@pytest.mark.parametrize("kind, shape", [(L.BatchNorm1d, (1, 3)), (L.BatchNorm2d, (1, 3, 1, 1))])
def test_batchnorm_with_one_value_per_channel_says_what_to_do(kind, shape):
    with pytest.raises(ValueError) as error:
        kind(3)(np.ones(shape, np.float32))
    message = str(error.value)
    assert message.startswith(kind.__name__ + ": expected more than 1 value per channel")
    assert str(shape) in message and "or call .eval()" in message
    assert kind(3).eval()(np.ones(shape, np.float32)).shape == shape
