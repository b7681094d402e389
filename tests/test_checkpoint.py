"""Checkpoints: complete round trips, atomic writes, and clear errors for bad files."""
import json
import os

import numpy as np
import pytest

import minidl
from minidl import backend, layers as L
from minidl.data import DataLoader
from minidl.optim import SGD, Adam
from minidl.optim.lr_scheduler import StepLR
from minidl.train import (CheckpointError, History, load_checkpoint, load_weights,
                          save_checkpoint, save_weights)


def mlp(hidden=5):
    return L.Sequential(L.Linear(4, hidden), L.ReLU(), L.Linear(hidden, 3))


def take_steps(model, optimizer, steps=3, seed=0):
    """A few optimizer steps from random upstream gradients (no loss needed)."""
    generator = np.random.default_rng(seed)
    for _ in range(steps):
        x = generator.standard_normal((8, 4)).astype(np.float32)
        optimizer.zero_grad()
        model.backward(generator.standard_normal(model(x).shape).astype(np.float32))
        optimizer.step()


def assert_same_state(a, b):
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for key in state_a:
        np.testing.assert_array_equal(state_a[key], state_b[key])
        assert state_a[key].dtype == state_b[key].dtype


def make_run(seed):
    """Model, Adam (state arrays + an int step), StepLR and a loader, all from ``seed``."""
    minidl.seed(seed)
    model = mlp()
    optimizer = Adam(model.parameters(), lr=0.01)
    scheduler = StepLR(optimizer, step_size=2, gamma=0.5)
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    loader = DataLoader(x, np.arange(10), batch_size=3, seed=seed)
    return model, optimizer, scheduler, loader


@pytest.fixture
def saved(tmp_path):
    """A checkpoint of a run part-way through, and the run itself."""
    model, optimizer, scheduler, loader = make_run(seed=1)
    take_steps(model, optimizer)
    scheduler.step()
    scheduler.step()
    scheduler.step()
    next(iter(loader))  # the loader is part-way through an epoch
    history = History([{"epoch": 1, "train_loss": 0.5, "lr": 0.01, "seconds": 1.5}])
    path = tmp_path / "run.npz"
    extra = {"note": "hello", "counts": np.arange(3), "by_index": {0: 1.5, 7: (1, 2)},
             "scalar": np.float32(0.25)}
    save_checkpoint(path, model, optimizer, scheduler, epoch=3, history=history, extra=extra,
                    loaders={"train": loader})
    return path, (model, optimizer, scheduler, loader), history, extra


def test_round_trip_restores_every_part(saved):
    path, (model, optimizer, scheduler, loader), history, extra = saved
    rng_after_save = backend.rng().random(4)  # what the saved RNG state draws next

    fresh_model, fresh_optimizer, fresh_scheduler, fresh_loader = make_run(seed=99)
    info = load_checkpoint(path, fresh_model, fresh_optimizer, fresh_scheduler,
                           loaders={"train": fresh_loader})

    assert_same_state(model, fresh_model)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert fresh_optimizer.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] == 0.005
    saved_state = optimizer.state_dict()["state"]
    loaded_state = fresh_optimizer.state_dict()["state"]
    assert sorted(saved_state) == sorted(loaded_state)
    for index in saved_state:
        for name, value in saved_state[index].items():
            np.testing.assert_array_equal(loaded_state[index][name], value)
    assert fresh_loader.state_dict() == loader.state_dict()
    np.testing.assert_array_equal(backend.rng().random(4), rng_after_save)

    assert info["epoch"] == 3 and info["model_class"] == "Sequential"
    assert History.from_dict(info["history"]) == history
    assert info["extra"]["note"] == "hello"
    np.testing.assert_array_equal(info["extra"]["counts"], np.arange(3))
    assert info["extra"]["by_index"] == {0: 1.5, 7: (1, 2)}      # int keys and tuples survive
    assert info["extra"]["scalar"].dtype == np.float32            # NumPy scalars keep dtype


def test_file_is_plain_npz_with_a_json_string(saved):
    path = saved[0]
    with np.load(path, allow_pickle=False) as data:
        assert "model/0.weight" in data.files
        meta = data["__meta__"]
        assert meta.dtype.kind == "U"
        decoded = json.loads(str(meta[()]))
    assert decoded["format"] == "minidl.checkpoint" and decoded["epoch"] == 3


def test_a_crash_mid_save_keeps_the_previous_checkpoint(saved, monkeypatch):
    path, (model, optimizer, scheduler, _), _, _ = saved
    before = path.read_bytes()

    def crash(file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    take_steps(model, optimizer, seed=5)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model, optimizer, scheduler, epoch=4)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]        # no temp file left behind
    load_checkpoint(path, mlp(), restore_rng=False)       # still loadable


def test_ctrl_c_mid_save_leaves_no_temp_file(saved, monkeypatch):
    path, (model, *_), _, _ = saved

    def interrupted(file, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model)
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "garbage", "empty"])
def test_damaged_file_raises_a_clear_error_naming_it(saved, damage):
    path = saved[0]
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "flip_bytes":  # inside the first array's data: the zip CRC check fails
        header = data.index(b"\x93NUMPY", data.index(b"model/0.weight"))
        middle = data.index(b"\n", header) + 8  # past the .npy header, into the numbers
        path.write_bytes(data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 16])
                         + data[middle + 16:])
    elif damage == "garbage":
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    else:
        path.write_bytes(b"")
    model = mlp()
    before = model.state_dict()
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(path, model)
    assert str(path) in str(info.value)
    for key, value in before.items():  # nothing was loaded
        np.testing.assert_array_equal(model.state_dict()[key], value)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.npz", mlp())


@pytest.mark.parametrize("other, message", [
    (lambda: mlp(hidden=6), "0.weight: expected shape (4, 6), got (4, 5)"),
    (lambda: L.Sequential(L.Linear(4, 5), L.ReLU(), L.Linear(5, 5), L.ReLU(), L.Linear(5, 3)),
     "missing keys: 4.weight, 4.bias"),
])
def test_checkpoint_from_another_architecture(saved, other, message):
    path = saved[0]
    model = other()
    before = model.state_dict()
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, model, restore_rng=False)
    text = str(info.value)
    assert str(path) in text and "another architecture" in text and message in text
    for key, value in before.items():
        np.testing.assert_array_equal(model.state_dict()[key], value)


def test_optimizer_of_another_model_is_refused_before_loading(saved):
    path = saved[0]
    model = mlp()
    before = model.state_dict()
    other_optimizer = Adam(mlp().parameters()[:2], lr=0.1)
    with pytest.raises(CheckpointError, match=r"parameter groups of sizes \[4\].*has \[2\]"):
        load_checkpoint(path, model, other_optimizer)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before["0.weight"])


def test_optimizer_of_another_class_is_refused_before_loading(saved):
    path = saved[0]
    model = mlp()
    before = model.state_dict()
    with pytest.raises(CheckpointError, match="holds the state of a Adam, not of this SGD"):
        load_checkpoint(path, model, SGD(model.parameters(), lr=0.1))
    np.testing.assert_array_equal(model.state_dict()["0.weight"], before["0.weight"])


def test_asking_for_state_the_file_does_not_hold(tmp_path):
    model = mlp()
    path = save_checkpoint(tmp_path / "weights_only.npz", model)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        load_checkpoint(path, model, SGD(model.parameters(), lr=0.1))
    with pytest.raises(CheckpointError, match="holds no state for the 'train' data loader"):
        loader = DataLoader(np.zeros((4, 4)), np.zeros(4), batch_size=2)
        load_checkpoint(path, model, loaders={"train": loader})


def test_a_weights_file_is_not_a_checkpoint(tmp_path):
    path = save_weights(tmp_path / "w.npz", mlp())
    with pytest.raises(CheckpointError, match="not a minidl checkpoint.*load_weights"):
        load_checkpoint(path, mlp())


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled.npz"):
        load_checkpoint(path, mlp())


def test_save_and_load_weights(tmp_path, saved):
    minidl.seed(3)
    model = mlp()
    path = save_weights(tmp_path / "sub" / "weights.npz", model)   # parent directory created
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(model.state_dict())
    other = mlp()
    load_weights(path, other)
    assert_same_state(model, other)
    from_checkpoint = load_weights(saved[0], mlp())                # the model part of a checkpoint
    assert_same_state(saved[1][0], from_checkpoint)
    with pytest.raises(CheckpointError, match="weights.npz.*another architecture"):
        load_weights(path, mlp(hidden=7))


def test_float64_and_float32_weights_keep_their_dtype(tmp_path):
    model = mlp().to(np.float64)
    path = save_checkpoint(tmp_path / "f64.npz", model)
    with np.load(path) as data:
        assert data["model/0.weight"].dtype == np.float64
    other = mlp().to(np.float64)
    load_checkpoint(path, other, restore_rng=False)
    assert_same_state(model, other)


def test_unstorable_values_are_refused_with_their_location(tmp_path):
    with pytest.raises(TypeError, match=r"type object \(at 'extra/bad'\)"):
        save_checkpoint(tmp_path / "x.npz", mlp(), extra={"bad": object()})
    assert not os.listdir(tmp_path)


def test_object_arrays_are_refused_so_nothing_is_pickled(tmp_path):
    with pytest.raises(TypeError, match=r"array of Python objects \(dtype object, at 'extra/o'\)"):
        save_checkpoint(tmp_path / "x.npz", mlp(), extra={"o": np.array([1, None], object)})
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("epoch, error, message", [
    (-1, ValueError, r"save_checkpoint: epoch must be a non-negative integer, got -1 \(int\)"),
    (True, TypeError, r"save_checkpoint: epoch must be a non-negative integer, got True"),
    (2.0, TypeError, "save_checkpoint: epoch must be a non-negative integer"),
])
def test_save_checkpoint_checks_the_epoch(tmp_path, epoch, error, message):
    with pytest.raises(error, match=message):
        save_checkpoint(tmp_path / "x.npz", mlp(), epoch=epoch)
    assert not os.listdir(tmp_path)


def test_numpy_epoch_is_stored_as_an_int_and_restore_rng_must_be_a_bool(tmp_path):
    path = save_checkpoint(tmp_path / "x.npz", mlp(), epoch=np.int64(3))
    assert load_checkpoint(path, mlp(), restore_rng=False)["epoch"] == 3
    with pytest.raises(TypeError, match="load_checkpoint: restore_rng must be True or False"):
        load_checkpoint(path, mlp(), restore_rng="no")
