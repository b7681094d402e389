"""minidl.interop: PyTorch state_dicts in and out (names, layouts, torch-only buffers).

The round trip needs no PyTorch; the agreement tests (same outputs after moving the
weights either way, same gradients after one backward) import it when installed.
"""
import numpy as np
import pytest

from minidl import Module, Param, interop, losses
from minidl import layers as L


def small_cnn(seed=0):
    """Conv, both BatchNorms, pooling and Linears: every layout interop converts."""
    model = L.Sequential(
        L.Conv2d(3, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2), L.Flatten(),
        L.Linear(4 * 3 * 3, 5), L.BatchNorm1d(5), L.ReLU(), L.Linear(5, 3))
    draw = np.random.default_rng(seed)
    for _, param in model.named_parameters():  # non-trivial BatchNorm affine, non-zero biases
        param.data[...] = draw.uniform(-0.5, 0.5, param.shape)
    for name, buffer in model.named_buffers():
        buffer[...] = draw.uniform(0.5, 1.5, buffer.shape) if "var" in name else \
            draw.uniform(-0.2, 0.2, buffer.shape)
    return model.to(np.float64)


def torch_cnn(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5), nn.BatchNorm1d(5), nn.ReLU(),
        nn.Linear(5, 3)).double()


def images(batch=4):
    return np.random.default_rng(5).standard_normal((batch, 3, 6, 6))


def test_round_trip_and_layouts_without_torch():
    model = small_cnn()
    state = interop.torch_state_dict(model)
    assert state["5.weight"].shape == (5, 36)  # torch's Linear layout (out, in)
    np.testing.assert_array_equal(state["5.weight"], model[5].weight.data.T)
    assert state["0.weight"].shape == (4, 3, 3, 3)
    assert state["1.num_batches_tracked"].dtype == np.int64
    assert all(isinstance(v, np.ndarray) for v in state.values())
    other = small_cnn(seed=1)
    interop.load_torch_state_dict(other, state)
    for (name, ours), (_, theirs) in zip(model.state_dict().items(), other.state_dict().items()):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_gradients_by_torch_names():
    model = small_cnn()
    loss = losses.CrossEntropyLoss()
    loss(model(images()), np.array([0, 2, 1, 2]))
    model.backward(loss.backward())
    grads = interop.torch_state_dict(model, grads=True)
    assert list(grads) == [name for name, _ in model.named_parameters()]  # no buffers
    np.testing.assert_array_equal(grads["8.weight"], model[8].weight.grad.T)


def test_errors_name_the_problem():
    model = small_cnn()
    state = interop.torch_state_dict(model)
    with pytest.raises(ValueError, match="unexpected keys: 9.weight"):
        interop.load_torch_state_dict(model, {**state, "9.weight": np.zeros(3)})
    with pytest.raises(ValueError, match=r"5.weight: expected shape \(36, 5\), got \(5, 5\)"):
        interop.load_torch_state_dict(model, {**state, "5.weight": np.zeros((5, 5))})
    del state["8.bias"]
    with pytest.raises(ValueError, match="missing keys: 8.bias"):
        interop.load_torch_state_dict(model, state)
    interop.load_torch_state_dict(model, state, strict=False)
    with pytest.raises(TypeError, match="load_torch_state_dict: expected a dict of arrays"):
        interop.load_torch_state_dict(model, list(state.items()))


def test_registry_extends_to_new_layers(monkeypatch):
    class Scale(Module):  # a layer whose torch twin keeps its weight as "gain", doubled
        def __init__(self):
            super().__init__()
            self.weight = Param(np.arange(3.0))

    monkeypatch.setitem(interop.CONVERSIONS, "Scale", {
        "weight": ("gain", lambda a: 2 * a, lambda a: a / 2)})
    model = L.Sequential(Scale())
    assert list(interop.torch_state_dict(model)) == ["0.gain"]
    np.testing.assert_array_equal(interop.torch_state_dict(model)["0.gain"], [0, 2, 4])
    interop.load_torch_state_dict(model, {"0.gain": np.array([2.0, 2.0, 2.0])})
    np.testing.assert_array_equal(model[0].weight.data, [1, 1, 1])


# --------------------------------------------------------------------------- PyTorch
def test_weights_to_torch_and_back_give_equal_outputs():
    torch = pytest.importorskip("torch")
    model, twin = small_cnn().eval(), torch_cnn(torch).eval()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in
                          interop.torch_state_dict(model).items()})  # strict: every key
    x = images()
    with torch.no_grad():
        np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).numpy(), rtol=1e-10)
    fresh = small_cnn(seed=3).eval()
    interop.load_torch_state_dict(fresh, {k: v.numpy() for k, v in twin.state_dict().items()})
    np.testing.assert_allclose(fresh(x), model(x), rtol=1e-12)


def test_gradients_equal_torch_after_one_training_step():
    torch = pytest.importorskip("torch")
    model, twin = small_cnn(), torch_cnn(torch)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in
                          interop.torch_state_dict(model).items()})
    x, y = images(), np.array([0, 2, 1, 2])
    loss = losses.CrossEntropyLoss()
    loss(model(x), y)
    model.backward(loss.backward())
    torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    grads = interop.torch_state_dict(model, grads=True)
    for name, param in twin.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
    state = interop.torch_state_dict(model)  # running statistics after a training step
    for name, buffer in twin.named_buffers():
        if "running" in name:
            np.testing.assert_allclose(state[name], buffer.numpy(), rtol=1e-10, err_msg=name)


def test_lstm_language_model_maps_to_torch():
    """An LSTM with a Linear head, as examples/char_lstm.py builds it."""
    torch = pytest.importorskip("torch")

    class CharModel(Module):
        def __init__(self):
            super().__init__()
            self.lstm = L.LSTM(4, 6, num_layers=2)
            self.head = L.Linear(6, 4)

    class TorchCharModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(4, 6, num_layers=2)
            self.head = torch.nn.Linear(6, 4)

    model, twin = CharModel(), TorchCharModel()
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in
                          interop.torch_state_dict(model).items()})
    interop.load_torch_state_dict(model, {k: v.numpy() for k, v in twin.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    with torch.no_grad():
        expected = twin.head(twin.lstm(torch.from_numpy(x))[0]).numpy()
    ours = model.head(model.lstm(x)[0].reshape(10, 6)).reshape(5, 2, 4)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("make_ours, make_torch, shape", [
    (lambda: L.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
     lambda nn: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), (2, 5, 8)),
    (lambda: L.MultiheadAttention(8, 2, batch_first=True),
     lambda nn: nn.MultiheadAttention(8, 2, batch_first=True), (2, 5, 8)),
    (lambda: L.LayerNorm(8), lambda nn: nn.LayerNorm(8), (2, 5, 8)),
    (lambda: L.GroupNorm(2, 4), lambda nn: nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (lambda: L.Embedding(10, 4), lambda nn: nn.Embedding(10, 4), None),
])
def test_sequence_layers_map_to_torch(make_ours, make_torch, shape):
    """The attention-side layers need no registry entry: names and layouts are torch's
    (their inner Linears go through Linear's transpose)."""
    torch = pytest.importorskip("torch")
    ours, theirs = make_ours().to(np.float64), make_torch(torch.nn).double().eval()
    state = {key: value.detach().numpy() for key, value in theirs.state_dict().items()}
    interop.load_torch_state_dict(ours, state)
    assert sorted(interop.torch_state_dict(ours)) == sorted(state)
    ours.eval()
    if shape is None:
        x = np.array([[1, 3, 9]])
        expected = theirs(torch.tensor(x)).detach().numpy()
    else:
        x = np.random.default_rng(0).standard_normal(shape)
        t = torch.tensor(x)
        expected = (theirs(t, t, t)[0] if isinstance(theirs, torch.nn.MultiheadAttention)
                    else theirs(t)).detach().numpy()
    y = ours(x)
    y = y[0] if isinstance(y, tuple) else y
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-12)
