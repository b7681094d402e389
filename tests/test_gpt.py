"""The GPT model, the character-level text data and the char_gpt example.

Whole-model float64 gradient checks of every parameter on drawn tiny configurations
(dropout in train mode included), equality with nanoGPT's PyTorch model on logits and
every gradient, generation, the Tiny Shakespeare loader, vocabulary and sampler, and a
smoke run of examples/char_gpt.py on synthetic text."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from minidl import backend, data, losses, models, optim
from minidl.gradcheck import TOLERANCES, numerical_gradient, rel_error

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
stateless_xp = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                               HealthCheck.too_slow], max_examples=6)


def load_script(name, relative_path):
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize(model, seed):
    """Parameters of order 1 (nanoGPT's 0.02 init makes every branch nearly linear and
    hides mistakes in its backward)."""
    draw = np.random.default_rng([seed, 11])
    for param in model.parameters():
        param.data[...] = 0.5 * draw.standard_normal(param.shape)
    return model


# ------------------------------------------------------------------ gradients
@stateless_xp
@given(n_layer=st.integers(1, 2), n_head=st.integers(1, 2), head_dim=st.integers(1, 2),
       vocab=st.integers(2, 5), block=st.integers(1, 4), batch=st.integers(1, 2),
       bias=st.booleans(), dropout=st.sampled_from([0.0, 0.3]), training=st.booleans(),
       gelu=st.sampled_from(["none", "tanh"]), seed=st.integers(0, 2**16))
def test_gpt_gradients_of_every_parameter(xp, n_layer, n_head, head_dim, vocab, block, batch,
                                          bias, dropout, training, gelu, seed):
    model = models.gpt(vocab, block, n_layer, n_head, n_head * head_dim, dropout=dropout,
                       bias=bias, gelu_approximate=gelu).to(np.float64)
    model = randomize(model, seed).train(training)
    if xp is not np:
        model.to("gpu")
    draw = np.random.default_rng(seed)
    length = int(draw.integers(1, block + 1))
    idx = xp.asarray(draw.integers(0, vocab, (batch, length)))
    target = xp.asarray(draw.integers(0, vocab, batch * length))
    loss_fn = losses.CrossEntropyLoss()
    rng_state = backend.get_rng_state()

    def loss(_=None):
        backend.set_rng_state(rng_state)  # the same dropout masks in every pass
        value = float(loss_fn(model(idx).reshape(-1, vocab), target))
        model.drop_saved()
        return value

    backend.set_rng_state(rng_state)
    logits = model(idx)
    loss_fn(logits.reshape(-1, vocab), target)
    model.zero_grad()
    assert model.backward(loss_fn.backward().reshape(logits.shape)) is None
    tol = TOLERANCES[np.dtype(np.float64)]
    for name, param in model.named_parameters():
        host = backend.to_numpy(param.data).copy()

        def loss_at(values, param=param):
            param.data[...] = xp.asarray(values)
            return loss()

        numeric = numerical_gradient(loss_at, host, tol["eps"])
        param.data[...] = xp.asarray(host)
        error = rel_error(param.grad, numeric, tiny=tol["atol"] / tol["rtol"])
        assert error <= tol["rtol"], f"{name}: max relative error {error:.2e}"


@pytest.mark.parametrize("gelu", ["none", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_gpt_matches_nanogpt_in_torch(gelu, bias):
    torch = pytest.importorskip("torch")
    reference = load_script("char_gpt_torch", "benchmarks/char_gpt_torch.py")
    vocab, block, n_layer, n_head, n_embd = 7, 6, 2, 2, 8
    model = randomize(models.gpt(vocab, block, n_layer, n_head, n_embd, bias=bias,
                                 gelu_approximate=gelu).to(np.float64), 3)
    t = reference.GPT(vocab, block, n_layer, n_head, n_embd, bias=bias, gelu=gelu).double()
    torch_params = dict(t.named_parameters())  # the tied weight appears once, as wte.weight
    assert set(torch_params) == {name for name, _ in model.named_parameters()}
    transposed = lambda name, p: p.ndim == 2 and not name.startswith(("wte", "wpe"))  # noqa: E731
    with torch.no_grad():
        for name, param in model.named_parameters():
            value = torch.tensor(param.data)
            torch_params[name].copy_(value.T if transposed(name, param.data) else value)
    draw = np.random.default_rng(4)
    idx = draw.integers(0, vocab, (3, 5))
    dlogits = draw.standard_normal((3, 5, vocab))
    logits = model(idx)
    t_logits = t(torch.tensor(idx))
    (t_logits * torch.tensor(dlogits)).sum().backward()
    model.backward(dlogits)
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name, param in model.named_parameters():
        expected = torch_params[name].grad.numpy()
        expected = expected.T if transposed(name, param.data) else expected
        np.testing.assert_allclose(param.grad, expected, rtol=1e-9, atol=1e-12, err_msg=name)


def test_nanogpt_init_and_size():
    model = models.gpt(65, 64, 4, 4, 128)
    assert model.num_parameters() == 809_856  # nanoGPT's count plus wpe (64 * 128)
    std = lambda name: float(dict(model.named_parameters())[name].data.std())  # noqa: E731
    assert abs(std("h.0.attn.c_attn.weight") - 0.02) < 2e-3
    assert abs(std("h.3.mlp.c_proj.weight") - 0.02 / np.sqrt(8)) < 1e-3
    assert abs(std("wte.weight") - 0.02) < 2e-3
    assert float(abs(dict(model.named_parameters())["h.0.mlp.c_fc.bias"].data).max()) == 0
    assert "lm_head.weight" not in model.state_dict()  # tied to wte.weight


def test_generate_and_attention_weights():
    model = models.gpt(5, 4, 1, 2, 4)
    out = model.generate(np.zeros((2, 1), dtype=np.int64), 7, seed=0)
    assert out.shape == (2, 8) and out.min() >= 0 and out.max() < 5
    np.testing.assert_array_equal(out, model.generate(np.zeros((2, 1), dtype=np.int64), 7, seed=0))
    top1 = model.generate(np.zeros((1, 1), dtype=np.int64), 3, top_k=1)
    np.testing.assert_array_equal(top1, model.generate(np.zeros((1, 1), dtype=np.int64), 3,
                                                       top_k=1, seed=5))  # greedy
    assert model.training
    model(np.zeros((1, 3), dtype=np.int64))
    weights = model.h[0].attn.attn_weights
    assert weights.shape == (1, 2, 3, 3) and np.all(weights[..., 0, 1:] == 0)  # causal


def test_gpt_errors():
    with pytest.raises(ValueError, match="divisible"):
        models.gpt(5, 4, 1, 3, 4)
    with pytest.raises(ValueError, match="gelu_approximate"):
        models.gpt(5, 4, 1, 2, 4, gelu_approximate="fast")
    model = models.gpt(5, 4, 1, 2, 4)
    with pytest.raises(TypeError, match=r"integer array of shape \(B, T\)"):
        model(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="exceeds block_size 4"):
        model(np.zeros((1, 5), dtype=np.int64))
    with pytest.raises(ValueError, match="indices must lie in"):
        model(np.full((1, 3), 5))


# ------------------------------------------------------------------ text data
def test_char_vocab_split_and_sampler():
    text = "hello world\nhello there"
    vocab = data.CharVocab(text)
    assert len(vocab) == len(set(text)) and vocab.chars == "".join(sorted(set(text)))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and vocab.decode(ids) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        vocab.encode("hello!")
    train, val = data.split_text(np.arange(100))
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    sampler = data.BlockSampler(np.arange(50), block_size=8, batch_size=5, seed=0)
    x, y = sampler.sample()
    assert x.shape == y.shape == (5, 8) and x.dtype == np.int64
    np.testing.assert_array_equal(y, x + 1)  # y is x shifted by one token
    assert x.min() >= 0 and y.max() <= 49
    x2, _ = data.BlockSampler(np.arange(50), 8, 5, seed=0).sample()
    np.testing.assert_array_equal(x, x2)
    with pytest.raises(ValueError, match="more than block_size"):
        data.BlockSampler(np.arange(8), 8, 2)


def test_load_tiny_shakespeare_from_root(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    text = ("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 20_000)[:1_115_394]
    (folder / "input.txt").write_text(text, encoding="utf-8")
    assert data.load_tiny_shakespeare(tmp_path, download=False) == text
    (folder / "input.txt").write_text(text[:1000], encoding="utf-8")
    with pytest.raises(data.DatasetError, match="expected 1,115,394 characters, got 1,000"):
        data.load_tiny_shakespeare(tmp_path, download=False)
    with pytest.raises(FileNotFoundError, match="input.txt not found"):
        data.load_tiny_shakespeare(tmp_path / "empty", download=False)


# ------------------------------------------------------------------ the example
def test_char_gpt_recipe_pieces():
    example = load_script("char_gpt", "examples/char_gpt.py")
    lr = lambda it: example.learning_rate(it, 2000, 1e-3, 1e-4, 100)  # noqa: E731
    assert lr(0) == pytest.approx(1e-3 / 101) and lr(99) == pytest.approx(1e-3 * 100 / 101)
    assert lr(100) == pytest.approx(1e-3) and lr(2000) == pytest.approx(1e-4)
    assert lr(1050) == pytest.approx(0.55e-3)
    groups = example.param_groups(models.gpt(5, 4, 2, 2, 4), 0.1)
    assert groups[0]["weight_decay"] == 0.1 and groups[1]["weight_decay"] == 0.0
    assert all(p.data.ndim == 2 for p in groups[0]["params"]) and len(groups[0]["params"]) == 8
    assert len(groups[1]["params"]) == 2 + 2 * 8 + 2  # embeddings, biases and LayerNorms
    model = models.gpt(5, 4, 1, 2, 4)
    for p in model.parameters():
        p.grad[...] = 1.0
    total = optim.clip_grad_norm_(model.parameters(), 1.0)  # as the example does
    assert total == pytest.approx(np.sqrt(model.num_parameters()))
    clipped = np.sqrt(sum(float((p.grad ** 2).sum()) for p in model.parameters()))
    assert clipped == pytest.approx(1.0, rel=1e-5)


def test_char_gpt_smoke(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "examples", "char_gpt.py"), "--smoke",
               "--quiet", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    for name in ("history.json", "history.csv", "curves.png", "sample.txt", "attention.png",
                 "result.json"):
        assert (tmp_path / f"char_gpt_{name}").stat().st_size > 0, name
    result = json.loads((tmp_path / "char_gpt_result.json").read_text())
    history = json.loads((tmp_path / "char_gpt_history.json").read_text())
    assert [row["iter"] for row in history] == [0, 3, 6]
    assert np.isfinite(result["val_loss"]) and result["val_loss"] < np.log(14) + 0.5
    assert len((tmp_path / "char_gpt_sample.txt").read_text()) == 501
