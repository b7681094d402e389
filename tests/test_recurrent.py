"""RNN, LSTM and GRU: gradient checks through time, equality with PyTorch, errors.

Configurations are drawn by hypothesis: 1 or 2 layers, one or two directions,
batch_first, with and without biases, tanh or relu (RNN), one or a few time steps, a
batch of 1 or 2, with or without an initial state, dropout between layers in training.
The gradient checks cover the input, h0 (and c0) and every parameter, through a wrapper
that makes the initial state a parameter and the output and final state one array.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import Module, Param, interop
from minidl import layers as L
from minidl.backend import get_array_module
from minidl.gradcheck import assert_gradients

stateless_xp = settings(max_examples=12, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def recurrent_configs(draw):
    """(layer class, constructor arguments, input shape, whether an initial state is given)."""
    cls = draw(st.sampled_from([L.RNN, L.LSTM, L.GRU]))
    args = dict(input_size=draw(st.integers(1, 3)), hidden_size=draw(st.integers(1, 3)),
                num_layers=draw(st.integers(1, 2)), bias=draw(st.booleans()),
                batch_first=draw(st.booleans()), bidirectional=draw(st.booleans()))
    if cls is L.RNN:
        args["nonlinearity"] = draw(st.sampled_from(["tanh", "relu"]))
    if args["num_layers"] == 2:
        args["dropout"] = draw(st.sampled_from([0.0, 0.5]))
    steps, batch = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    shape = (batch, steps) if args["batch_first"] else (steps, batch)
    return cls, args, shape + (args["input_size"],), draw(st.booleans())


def state_shape(rnn, batch):
    return (rnn.num_layers * rnn.num_directions, batch, rnn.hidden_size)


def randomize(rnn, seed):
    """Weights and biases of order 1 (default init is small for hidden sizes 1-3 anyway),
    so every gate works away from saturation and from zero."""
    draw = np.random.default_rng(seed)
    for param in rnn.parameters():
        param.data[...] = draw.uniform(-0.8, 0.8, param.shape)
    return rnn


class Unrolled(Module):
    """``rnn`` with its initial state as parameters (h0, c0) and one output array:
    output, h_n (and c_n) flattened and joined, so a gradient check covers them all."""

    def __init__(self, rnn, initial):
        super().__init__()
        self.rnn = rnn
        self.h0 = Param(initial[0]) if initial is not None else None
        self.c0 = Param(initial[1]) if initial is not None and rnn.state_size == 2 else None

    def forward(self, x):
        xp = get_array_module(x)
        hx = None
        if self.h0 is not None:
            hx = (self.h0.data, self.c0.data) if self.c0 is not None else self.h0.data
        output, state = self.rnn(x, hx)
        parts = [output] + (list(state) if isinstance(state, tuple) else [state])
        self.save_for_backward([part.shape for part in parts])
        return xp.concatenate([part.reshape(-1) for part in parts])

    def backward(self, dy):
        shapes = self.saved_for_backward(dy)
        pieces, start = [], 0
        for shape in shapes:
            size = int(np.prod(shape))
            pieces.append(dy[start:start + size].reshape(shape))
            start += size
        dx = self.rnn.backward(pieces[0], tuple(pieces[1:]) if len(pieces) == 3 else pieces[1])
        if self.h0 is not None:
            grads = self.rnn.grad_initial_state
            grads = grads if isinstance(grads, tuple) else (grads,)
            self.h0.grad += grads[0]
            if self.c0 is not None:
                self.c0.grad += grads[1]
        return dx


@stateless_xp
@given(config=recurrent_configs(), seed=st.integers(0, 2**16))
def test_gradients_input_initial_state_and_every_param(xp, config, seed):
    cls, args, shape, with_state = config
    rnn = randomize(cls(**args), seed)
    draw = np.random.default_rng([seed, 2])
    batch = shape[0] if args["batch_first"] else shape[1]
    initial = None
    if with_state:
        initial = [draw.standard_normal(state_shape(rnn, batch)).astype(np.float32)
                   for _ in range(rnn.state_size)]
    model = Unrolled(rnn, initial)
    if xp is not np:
        model.to("gpu")
    x = xp.asarray(draw.standard_normal(shape))
    result = assert_gradients(model, x, seed=seed)
    expected = {"input"} | {f"rnn.{name}" for name, _ in rnn.named_parameters()}
    expected |= {"h0", "c0"}.intersection(name for name, _ in model.named_parameters())
    assert set(result.entries) == expected


def test_gradients_through_long_sequence_lstm():
    """Twelve steps: the carried dh and dc must be right many steps back, not just one."""
    rnn = randomize(L.LSTM(2, 3, num_layers=2, bidirectional=True), 7)
    x = np.random.default_rng(3).standard_normal((12, 2, 2))
    assert_gradients(Unrolled(rnn, None), x, directional=True)
    assert_gradients(rnn_output_only(rnn), x)


def rnn_output_only(rnn):
    class OutputOnly(Module):
        def __init__(self):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]

        def backward(self, dy):
            return self.rnn.backward(dy)  # d_state=None: the final state is unused
    return OutputOnly()


# --------------------------------------------------------------------------- PyTorch
def torch_twin(torch, rnn):
    kinds = {L.RNN: torch.nn.RNN, L.LSTM: torch.nn.LSTM, L.GRU: torch.nn.GRU}
    extra = {"nonlinearity": rnn.nonlinearity} if isinstance(rnn, L.RNN) else {}
    twin = kinds[type(rnn)](rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias,
                            batch_first=rnn.batch_first, bidirectional=rnn.bidirectional,
                            **extra).double()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in
                          interop.torch_state_dict(rnn).items()})
    return twin


@settings(max_examples=15)
@given(config=recurrent_configs(), seed=st.integers(0, 2**16))
def test_equal_to_torch_outputs_and_every_gradient(config, seed):
    torch = pytest.importorskip("torch")
    cls, args, shape, with_state = config
    args["dropout"] = 0.0  # torch's dropout masks are its own
    rnn = randomize(cls(**args), seed).to(np.float64)
    twin = torch_twin(torch, rnn)
    draw = np.random.default_rng(seed)
    batch = shape[0] if args["batch_first"] else shape[1]
    x = draw.standard_normal(shape)
    states = [draw.standard_normal(state_shape(rnn, batch)) for _ in range(rnn.state_size)]
    hx = None if not with_state else (tuple(states) if cls is L.LSTM else states[0])
    output, final = rnn(x, hx)

    x_t = torch.tensor(x, requires_grad=True)
    states_t = [torch.tensor(s, requires_grad=True) for s in states]
    hx_t = None if not with_state else (tuple(states_t) if cls is L.LSTM else states_t[0])
    output_t, final_t = twin(x_t, hx_t)
    finals, finals_t = (final, final_t) if cls is L.LSTM else ((final,), (final_t,))
    np.testing.assert_allclose(output, output_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for ours, theirs in zip(finals, finals_t):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)

    d_output = draw.standard_normal(output.shape)
    d_finals = [draw.standard_normal(f.shape) for f in finals]
    loss = (output_t * torch.from_numpy(d_output)).sum() + sum(
        (f * torch.from_numpy(d)).sum() for f, d in zip(finals_t, d_finals))
    loss.backward()
    dx = rnn.backward(d_output, tuple(d_finals) if cls is L.LSTM else d_finals[0])
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-12)
    grads = interop.torch_state_dict(rnn, grads=True)
    assert list(grads) == [name for name, _ in twin.named_parameters()]
    for name, param in twin.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=name)
    if with_state:
        ours = rnn.grad_initial_state if cls is L.LSTM else (rnn.grad_initial_state,)
        for grad, state_t in zip(ours, states_t):
            np.testing.assert_allclose(grad, state_t.grad.numpy(), rtol=1e-9, atol=1e-12)
    else:
        assert rnn.grad_initial_state is None


@pytest.mark.parametrize("cls", [L.RNN, L.LSTM, L.GRU])
def test_parameter_names_and_shapes_match_torch(cls):
    torch = pytest.importorskip("torch")
    kinds = {L.RNN: torch.nn.RNN, L.LSTM: torch.nn.LSTM, L.GRU: torch.nn.GRU}
    ours = cls(5, 7, num_layers=2, bidirectional=True)
    theirs = kinds[cls](5, 7, num_layers=2, bidirectional=True)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == [
        (k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    bound = 1 / np.sqrt(7)  # PyTorch's init: U(-1/sqrt(H), 1/sqrt(H)) for everything
    for param in ours.parameters():
        assert np.abs(param.data).max() <= bound and param.data.std() > bound / 4


# --------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize("cls", [L.RNN, L.LSTM, L.GRU])
def test_float32_shapes_and_state_layout(cls):
    rnn = cls(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    x = np.random.default_rng(0).standard_normal((3, 5, 4)).astype(np.float32)
    output, final = rnn(x)
    assert output.shape == (3, 5, 12) and output.dtype == np.float32
    h_n = final[0] if cls is L.LSTM else final
    assert h_n.shape == (4, 3, 6) and h_n.dtype == np.float32
    # The last layer's forward direction ends at the last step, the reverse one at step 0.
    np.testing.assert_allclose(h_n[2], output[:, -1, :6])
    np.testing.assert_allclose(h_n[3], output[:, 0, 6:])
    dx = rnn.backward(np.ones_like(output))
    assert dx.shape == x.shape and dx.dtype == np.float32


@pytest.mark.parametrize("cls", [L.RNN, L.LSTM, L.GRU])
def test_empty_batch_gives_empty_outputs_and_zero_grads(cls):
    rnn = cls(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    output, final = rnn(np.zeros((0, 5, 3), dtype=np.float32))
    assert output.shape == (0, 5, 8)
    assert (final[0] if cls is L.LSTM else final).shape == (4, 0, 4)
    assert rnn.backward(output).shape == (0, 5, 3)
    assert all(not param.grad.any() for param in rnn.parameters())


def test_needs_input_grad_off_skips_dx_and_keeps_param_grads():
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    grads = []
    for needed in (True, False):
        rnn = randomize(L.GRU(3, 4, num_layers=2), 0).to(np.float64)
        rnn.set_needs_input_grad(needed)
        output, _ = rnn(x)
        dx = rnn.backward(np.ones_like(output))
        assert (dx is None) == (not needed)
        grads.append([p.grad.copy() for p in rnn.parameters()])
    for with_dx, without in zip(*grads):
        np.testing.assert_allclose(with_dx, without)


def test_dropout_only_between_layers_and_only_in_training():
    rnn = L.LSTM(3, 5, num_layers=2, dropout=0.5)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    rnn.eval()
    first, second = rnn(x)[0], rnn(x)[0]
    np.testing.assert_array_equal(first, second)
    rnn.train()
    assert not np.allclose(rnn(x)[0], first)
    single = L.LSTM(3, 5, dropout=0.5)  # one layer: nothing between layers to drop
    np.testing.assert_array_equal(single(x)[0], single.eval()(x)[0])


def test_state_carries_over_between_calls():
    """Truncated BPTT feeds h_n back as the next h0: two halves equal the whole."""
    rnn = L.LSTM(2, 3)
    x = np.random.default_rng(1).standard_normal((6, 2, 2)).astype(np.float32)
    whole, _ = rnn(x)
    first, state = rnn(x[:3])
    second, _ = rnn(x[3:], state)
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-6)


# --------------------------------------------------------------------------- errors
def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="RNN: hidden_size must be a positive integer"):
        L.RNN(3, 0)
    with pytest.raises(TypeError, match="LSTM: input_size"):
        L.LSTM(2.5, 3)
    with pytest.raises(ValueError, match="RNN: nonlinearity must be one of 'tanh', 'relu'"):
        L.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match=r"GRU: dropout must be a real number in \[0, 1\)"):
        L.GRU(3, 4, dropout=1.0)
    with pytest.raises(TypeError, match="LSTM: bidirectional must be True or False"):
        L.LSTM(3, 4, bidirectional=1)


def test_bad_inputs_and_states():
    rnn = L.LSTM(3, 4, num_layers=2)
    x = np.zeros((5, 2, 3), dtype=np.float32)
    with pytest.raises(TypeError, match="LSTM: expected a float32 or float64 array"):
        rnn(x.astype(np.int64))
    with pytest.raises(ValueError, match=r"LSTM: expected input of shape \(T, N, input_size\)"):
        rnn(x[0])
    with pytest.raises(ValueError, match="LSTM: expected 3 features"):
        rnn(np.zeros((5, 2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"LSTM: expected a sequence of at least one step"):
        rnn(x[:0])
    h0 = np.zeros((2, 2, 4), dtype=np.float32)
    with pytest.raises(TypeError, match=r"LSTM: expected the state as a pair \(h, c\)"):
        rnn(x, h0)
    with pytest.raises(ValueError, match=r"LSTM: expected the state c of shape .* = \(2, 2, 4\)"):
        rnn(x, (h0, np.zeros((1, 2, 4), dtype=np.float32)))
    with pytest.raises(TypeError, match="GRU: the state h must have the input's dtype"):
        L.GRU(3, 4)(x, np.zeros((1, 2, 4)))


def test_bad_backward_calls():
    rnn = L.GRU(3, 4)
    with pytest.raises(RuntimeError, match="GRU.backward: nothing saved from a forward pass"):
        rnn.backward(np.zeros((5, 2, 4), dtype=np.float32))
    output, _ = rnn(np.zeros((5, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"GRU.backward: expected dy of shape \(5, 2, 4\)"):
        rnn.backward(np.zeros((5, 2, 3), dtype=np.float32))
    rnn.backward(np.zeros_like(output))
    with pytest.raises(RuntimeError, match="nothing saved"):
        rnn.backward(np.zeros_like(output))


# --------------------------------------------------------------------------- example
def test_char_lstm_example_smoke(tmp_path):
    """examples/char_lstm.py end to end on synthetic text (truncated BPTT, eval, sampling)."""
    import json
    import os
    import subprocess
    import sys
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "examples", "char_lstm.py")
    completed = subprocess.run([sys.executable, script, "--smoke", "--out", str(tmp_path)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    result = json.loads((tmp_path / "char_lstm_result.json").read_text())
    assert np.isfinite(result["val_loss"]) and result["val_loss"] < np.log(14) + 0.1
    assert (tmp_path / "char_lstm_sample.txt").read_text().startswith("to")
