"""Trainer: learning, exact resume, Ctrl-C, NaN stops, callbacks, schedulers, history, memory."""
import os
import signal
import tracemalloc

import numpy as np
import pytest

import minidl
from minidl import layers as L
from minidl.backend import to_numpy
from minidl.data import DataLoader
from minidl.losses import CrossEntropyLoss
from minidl.optim import SGD
from minidl.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau, StepLR
from minidl.train import (Callback, EarlyStopping, History, LambdaCallback, ModelCheckpoint,
                          NonFiniteLossError, Trainer, accuracy, load_checkpoint, plot_history)


def blobs(n=96, classes=3, features=4, seed=0, dtype=np.float32):
    """Gaussian blobs far apart: linearly separable with overwhelming probability."""
    generator = np.random.default_rng(seed)
    centers = 4.0 * generator.standard_normal((classes, features))
    y = np.arange(n) % classes
    x = centers[y] + 0.5 * generator.standard_normal((n, features))
    return x.astype(dtype), y.astype(np.int64)


class Jitter:
    """A random augmentation: Gaussian noise drawn from the loader's generator."""

    def __call__(self, x, rng):
        return x + (0.1 * rng.standard_normal(x.shape)).astype(x.dtype)


def weights(model):
    return {key: to_numpy(value) for key, value in model.state_dict().items()}


def device_of(xp):
    return "cpu" if xp is np else "gpu"


def assert_bit_identical(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def without_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history.rows]


# --------------------------------------------------------------------------- learning
def test_tiny_mlp_separates_blobs():
    minidl.seed(0)
    x, y = blobs()
    model = L.Sequential(L.Linear(4, 16), L.ReLU(), L.Linear(16, 3))
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9),
                      quiet=True)
    history = trainer.fit(DataLoader(x, y, batch_size=16, seed=0), epochs=15)

    assert len(history) == 15 and history["epoch"] == list(range(1, 16))
    assert history["train_top1"][-1] == 1.0
    assert history["train_loss"][-1] < 0.1 < history["train_loss"][0]
    assert history["train_top5"] == [None] * 15      # 3 classes: top-5 says nothing
    assert history["val_loss"] == [None] * 15
    assert history["lr"] == [0.1] * 15
    assert all(isinstance(v, float) and v > 0 for v in history["seconds"])
    assert accuracy(trainer.predict(x), y, topk=1) == 1.0
    # float32 in, float32 out: nothing drifted to float64
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    assert trainer.predict(x).dtype == np.float32


def test_training_and_checkpoints_on_each_backend(xp, tmp_path):
    x, y = blobs()
    minidl.seed(0)
    model = L.Sequential(L.Linear(4, 16), L.ReLU(), L.Dropout(0.1), L.Linear(16, 3))
    optimizer = SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = Trainer(model, CrossEntropyLoss(), optimizer, device=device_of(xp), quiet=True,
                      log_interval=2)
    history = trainer.fit(DataLoader(x, y, batch_size=16, seed=0),
                          DataLoader(x, y, batch_size=32, shuffle=False), epochs=10)
    assert history["val_top1"][-1] == 1.0
    assert all(isinstance(p.data, xp.ndarray) for p in model.parameters())
    logits = trainer.predict(x)
    assert isinstance(logits, xp.ndarray) and logits.dtype == np.float32

    trainer.save_checkpoint(tmp_path / "run.npz")
    minidl.seed(1)
    other = L.Sequential(L.Linear(4, 16), L.ReLU(), L.Dropout(0.1), L.Linear(16, 3))
    other.to(device_of(xp))
    other_optimizer = SGD(other.parameters(), lr=0.1, momentum=0.9)
    load_checkpoint(tmp_path / "run.npz", other, other_optimizer)
    assert_bit_identical(weights(other), weights(model))
    for state in other_optimizer.state.values():   # momentum buffers back on the device
        assert all(isinstance(v, xp.ndarray) for v in state.values() if hasattr(v, "shape"))


def test_progress_bar_and_quiet_mode(capsys):
    x, y = blobs(n=30)
    for quiet in (False, True):
        model = L.Sequential(L.Linear(4, 3))
        Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), quiet=quiet,
                log_interval=1).fit(DataLoader(x, y, batch_size=10, seed=0),
                                    DataLoader(x, y, batch_size=10, shuffle=False), epochs=2)
        out, err = capsys.readouterr()
        if quiet:
            assert out == err == ""
        else:
            for text in ("epoch 1/2", "epoch 2/2", "loss=", "top1=", "lr=", "img/s",
                         "val_loss=", "val_top1="):
                assert text in err


# --------------------------------------------------------------------------- exact resume
class InterruptAt(Callback):
    """Simulate Ctrl-C at (epoch, step): raise KeyboardInterrupt, or send a real SIGINT."""

    def __init__(self, epoch, step, real_signal=False):
        self.at, self.real_signal, self.epoch = (epoch, step), real_signal, 0

    def on_epoch_begin(self, trainer, epoch):
        self.epoch = epoch

    def on_batch_begin(self, trainer, step):
        if (self.epoch, step) == self.at:
            if self.real_signal:   # deferred by the Trainer until this step is complete
                os.kill(os.getpid(), signal.SIGINT)
            else:                  # as if it arrived between two steps
                raise KeyboardInterrupt


def build_run(dtype, seed, interval, callbacks=(), interrupt_checkpoint=None):
    """Dropout, shuffling with random augmentation, momentum + weight decay, an lr schedule."""
    minidl.seed(seed)
    model = L.Sequential(L.Linear(4, 16), L.ReLU(), L.Dropout(0.3), L.Linear(16, 7)).to(dtype)
    optimizer = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    x, y = blobs(n=50, classes=7, dtype=dtype)
    train = DataLoader(x, y, batch_size=12, transform=Jitter(), seed=seed + 1)
    val = DataLoader(x[:20], y[:20], batch_size=8, shuffle=False)
    if interval == "batch":
        scheduler = OneCycleLR(optimizer, max_lr=0.1, total_steps=4 * len(train))
    else:
        scheduler = StepLR(optimizer, step_size=2, gamma=0.5)
    trainer = Trainer(model, CrossEntropyLoss(), optimizer, scheduler, callbacks=callbacks,
                      scheduler_interval=interval, quiet=True,
                      interrupt_checkpoint=interrupt_checkpoint)
    return trainer, train, val


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("how", ["end_of_epoch", "ctrl_c_mid_epoch", "sigint_at_epoch_end"])
def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, dtype, how):
    trainer, train, val = build_run(dtype, seed=0, interval="epoch" if how == "end_of_epoch"
                                    else "batch")
    full_history = trainer.fit(train, val, epochs=4)
    expected = weights(trainer.model)
    expected_optimizer = trainer.optimizer.state_dict()

    path = tmp_path / "run.npz"
    if how == "end_of_epoch":  # a ModelCheckpoint after every epoch; the first fit stops at 2
        first, train, val = build_run(dtype, 0, "epoch", callbacks=[ModelCheckpoint(path)])
        first.fit(train, val, epochs=2)
    else:
        # 5 batches per epoch: stop before epoch 3's second step, or (a real SIGINT,
        # deferred to the end of the step) after epoch 2's last step, before validation
        at = InterruptAt(3, 2) if how == "ctrl_c_mid_epoch" else InterruptAt(2, 5, True)
        first, train, val = build_run(dtype, 0, "batch", callbacks=[at],
                                      interrupt_checkpoint=path)
        with pytest.raises(KeyboardInterrupt):
            first.fit(train, val, epochs=4)
        assert first.interrupted_checkpoint == str(path)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    # Everything rebuilt from another seed: only the checkpoint can make it match.
    resumed, train, val = build_run(dtype, seed=123, interval=first.scheduler_interval)
    history = resumed.fit(train, val, epochs=4, resume=path)

    assert_bit_identical(weights(resumed.model), expected)
    for index, state in expected_optimizer["state"].items():
        for name, value in state.items():
            np.testing.assert_array_equal(resumed.optimizer.state_dict()["state"][index][name],
                                          value)
    assert without_seconds(history) == without_seconds(full_history)
    assert resumed.global_step == trainer.global_step == 4 * len(train)


def test_ctrl_c_without_a_path_says_so_and_saves_nothing(tmp_path, capsys):
    trainer, train, val = build_run(np.float32, 0, "epoch", callbacks=[InterruptAt(1, 2)])
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, epochs=2)
    assert "interrupted at epoch 1, step 1; no checkpoint written" in capsys.readouterr().err
    assert trainer.interrupted_checkpoint is None
    assert trainer.evaluate(val)["loss"] > 0          # the trainer is usable afterwards


def test_ctrl_c_saves_next_to_model_checkpoint_files(tmp_path):
    callbacks = [ModelCheckpoint(tmp_path / "ckpt" / "epoch{epoch}.npz"), InterruptAt(2, 3)]
    trainer, train, val = build_run(np.float32, 0, "epoch", callbacks=callbacks)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, epochs=3)
    assert sorted(os.listdir(tmp_path / "ckpt")) == ["epoch1.npz", "interrupted.npz"]
    info = load_checkpoint(tmp_path / "ckpt" / "interrupted.npz", trainer.model)
    assert info["epoch"] == 1 and info["extra"]["trainer"]["step"] == 2   # in epoch 2


def test_resume_after_the_last_epoch_trains_nothing(tmp_path):
    trainer, train, val = build_run(np.float64, 0, "epoch")
    trainer.fit(train, epochs=2)
    trainer.save_checkpoint(tmp_path / "done.npz")
    before = weights(trainer.model)
    history = trainer.fit(train, epochs=2, resume=tmp_path / "done.npz")
    assert len(history) == 2
    assert_bit_identical(weights(trainer.model), before)


# --------------------------------------------------------------------------- NaN / Inf
class BadLossAt:
    """CrossEntropyLoss whose value is multiplied by ``factor`` (nan, inf) on one call.

    The product keeps the loss's type: a float on the CPU, a 0-d device array on the GPU
    (where the Trainer finds the bad step without a sync per step).
    """

    def __init__(self, call, factor):
        self.loss, self.call, self.factor, self.calls = CrossEntropyLoss(), call, factor, 0

    def __call__(self, logits, target):
        self.calls += 1
        loss = self.loss(logits, target)
        return loss * self.factor if self.calls == self.call else loss

    def backward(self):
        return self.loss.backward()


@pytest.mark.parametrize("factor", [float("nan"), float("inf")])
def test_non_finite_loss_stops_with_epoch_and_step(xp, factor):
    x, y = blobs(n=40)
    model = L.Sequential(L.Linear(4, 3))
    snapshots = []
    recorder = LambdaCallback(on_batch_end=lambda t, step, logs: snapshots.append(weights(model)))
    trainer = Trainer(model, BadLossAt(7, factor), SGD(model.parameters(), lr=0.1),
                      callbacks=[recorder], quiet=True, device=device_of(xp))
    value = str(factor) if xp is np else "nan or inf"
    with pytest.raises(NonFiniteLossError, match=f"loss is {value} at epoch 2, step 3 of 4"):
        trainer.fit(DataLoader(x, y, batch_size=10, seed=0), epochs=3)
    if xp is np:  # found before the bad step touched the weights
        assert len(snapshots) == 6
        assert_bit_identical(weights(model), snapshots[-1])


def test_a_diverging_model_stops_with_epoch_step_and_lr():
    x, y = blobs(n=40)
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), L.Linear(8, 3))
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=1e30), quiet=True)
    message = (r"the model's output contains NaN or Inf at epoch 1, step \d of 4 \(lr 1e\+30\); "
               "training stopped. Usual causes: a learning rate too high")
    # The overflow itself is what a 1e30 step does: only the Trainer's report is tested.
    with pytest.raises(NonFiniteLossError, match=message), np.errstate(over="ignore",
                                                                       invalid="ignore"):
        trainer.fit(DataLoader(x, y, batch_size=10, seed=0), epochs=3)


def test_an_interrupt_inside_a_step_writes_no_inconsistent_checkpoint(tmp_path, capsys):
    def interrupted_loss(logits, target):
        raise KeyboardInterrupt   # e.g. Ctrl-C with a custom SIGINT handler, mid-update

    trainer, train, val = build_run(np.float32, 0, "epoch",
                                    interrupt_checkpoint=tmp_path / "never.npz")
    trainer.loss_fn = interrupted_loss
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, epochs=1)
    assert "interrupt came in the middle of an update" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- callbacks
def small_trainer(callbacks=(), lr=0.1, **kwargs):
    minidl.seed(0)
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), L.Linear(8, 3))
    return Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=lr),
                   callbacks=callbacks, quiet=True, **kwargs)


def loaders(n=48):
    x, y = blobs(n=n)
    return DataLoader(x, y, batch_size=16, seed=0), DataLoader(x, y, 16, shuffle=False)


def test_early_stopping_stops_after_patience():
    stopper = EarlyStopping("val_loss", patience=2)
    trainer = small_trainer([stopper], lr=0.0)   # nothing learns: val_loss never improves
    history = trainer.fit(*loaders(), epochs=20)
    # epoch 1 sets the best; epochs 2 and 3 do not improve: patience spent, stop (Keras)
    assert len(history) == 3 and stopper.stopped_epoch == 3 and stopper.best_epoch == 1


def test_early_stopping_restores_the_best_weights():
    trainer = small_trainer()
    stopper = EarlyStopping("val_top1", patience=1, min_delta=0.01, restore_best=True)
    assert stopper.mode == "max"
    snapshots = {}
    for epoch, value in enumerate([0.50, 0.80, 0.805], start=1):
        trainer.model.parameters()[0].data += 1.0     # the weights change every epoch
        snapshots[epoch] = weights(trainer.model)
        stopper.on_epoch_end(trainer, epoch, {"val_top1": value})
        assert trainer.stop_training == (epoch == 3)  # 0.805 is within min_delta of 0.80
    stopper.on_train_end(trainer)
    assert stopper.best_epoch == 2 and stopper.best == 0.80
    assert_bit_identical(weights(trainer.model), snapshots[2])


def test_model_checkpoint_save_best_only(tmp_path):
    trainer = small_trainer()
    saver = ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", monitor="val_loss",
                            save_best_only=True)
    for epoch, value in enumerate([1.0, 0.7, 0.9, 0.6, 0.6], start=1):
        trainer.epoch = epoch
        saver.on_epoch_end(trainer, epoch, {"epoch": epoch, "val_loss": value})
    assert sorted(os.listdir(tmp_path)) == ["best-01.npz", "best-02.npz", "best-04.npz"]
    assert saver.last_path == str(tmp_path / "best-04.npz")
    assert load_checkpoint(saver.last_path, trainer.model)["epoch"] == 4


def test_model_checkpoint_every_epoch_during_fit(tmp_path):
    trainer = small_trainer([ModelCheckpoint(tmp_path / "last.npz")])
    trainer.fit(*loaders(), epochs=3)
    info = load_checkpoint(tmp_path / "last.npz", trainer.model)
    assert info["epoch"] == 3 and History.from_dict(info["history"]) == trainer.history


def test_callback_state_is_part_of_the_checkpoint(tmp_path):
    stopper = EarlyStopping("val_loss", patience=3)
    trainer = small_trainer([stopper, ModelCheckpoint(tmp_path / "last.npz")], lr=0.0)
    trainer.fit(*loaders(), epochs=3)                  # best at epoch 1, then 2 misses
    fresh = EarlyStopping("val_loss", patience=3)
    resumed = small_trainer([fresh, ModelCheckpoint(tmp_path / "last.npz")], lr=0.0)
    history = resumed.fit(*loaders(), epochs=20, resume=tmp_path / "last.npz")
    assert (fresh.best_epoch, fresh.best) == (1, stopper.best)
    assert len(history) == 4 and fresh.stopped_epoch == 4   # the 3rd miss, not 3 + 3 later


@pytest.mark.parametrize("callback", [EarlyStopping("val_loss"),
                                      ModelCheckpoint("unused.npz", save_best_only=True)])
def test_monitoring_a_missing_metric_is_a_clear_error(callback):
    trainer = small_trainer([callback])
    with pytest.raises(ValueError, match="'val_loss' is not available.*pass val_loader"):
        trainer.fit(loaders()[0], epochs=2)


def test_callback_hooks_are_called_in_order():
    calls = []
    hooks = {name: (lambda name: lambda trainer, *args: calls.append((name,) + args[:1]))(name)
             for name in LambdaCallback._HOOKS}
    trainer = small_trainer([LambdaCallback(**hooks)])
    train, _ = loaders(n=32)   # 2 batches per epoch
    trainer.fit(train, epochs=1)
    assert [c[:2] for c in calls] == [
        ("on_train_begin",), ("on_epoch_begin", 1), ("on_batch_begin", 1), ("on_batch_end", 1),
        ("on_batch_begin", 2), ("on_batch_end", 2), ("on_epoch_end", 1), ("on_train_end",)]


# --------------------------------------------------------------------------- schedulers
def test_per_batch_scheduler_steps_after_every_optimizer_step():
    trainer = small_trainer(scheduler_interval="batch")
    trainer.scheduler = StepLR(trainer.optimizer, step_size=1, gamma=0.9)
    train, _ = loaders()      # 3 batches per epoch
    history = trainer.fit(train, epochs=2)
    assert trainer.lr == pytest.approx(0.1 * 0.9 ** 6)
    assert history["lr"] == pytest.approx([0.1, 0.1 * 0.9 ** 3])   # lr when each epoch began


class RecordingPlateau(ReduceLROnPlateau):
    def step(self, metric):
        self.seen = getattr(self, "seen", []) + [metric]
        super().step(metric)


def test_reduce_lr_on_plateau_gets_the_monitored_metric():
    trainer = small_trainer()
    # "max" mode with a huge threshold: nothing after the first epoch counts as better
    trainer.scheduler = RecordingPlateau(trainer.optimizer, mode="max", patience=0, factor=0.5,
                                         threshold=10.0, threshold_mode="abs")
    history = trainer.fit(*loaders(), epochs=4)
    assert trainer.scheduler.seen == history["val_loss"]
    assert history["lr"] == [0.1, 0.1, 0.05, 0.025]


def test_reduce_lr_on_plateau_without_validation_is_a_clear_error():
    trainer = small_trainer()
    trainer.scheduler = ReduceLROnPlateau(trainer.optimizer)
    with pytest.raises(ValueError, match="monitors 'val_loss'.*pass a val_loader"):
        trainer.fit(loaders()[0], epochs=1)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"scheduler_interval": "step"}, ValueError,
     "Trainer: scheduler_interval must be one of 'epoch', 'batch', got 'step'"),
    ({"log_interval": 0}, ValueError, r"log_interval must be a positive integer, got 0 \(int\)"),
    ({"log_interval": True}, TypeError, r"log_interval must be a positive integer, got True"),
    ({"log_interval": 2.0}, TypeError, "log_interval must be a positive integer"),
    ({"quiet": "yes"}, TypeError, "Trainer: quiet must be True or False"),
    ({"plateau_monitor": None}, TypeError, "Trainer: plateau_monitor must be"),
    ({"interrupt_checkpoint": 3}, TypeError, "Trainer: interrupt_checkpoint must be a path"),
    ({"callbacks": [print]}, TypeError, r"callbacks\[0\] must be a minidl.train.Callback"),
])
def test_constructor_rejects_bad_arguments(kwargs, error, message):
    model = L.Sequential(L.Linear(4, 3))
    with pytest.raises(error, match=message):
        Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize("call, error, message", [
    (lambda t: t.fit(loaders()[0], epochs=0), ValueError,
     r"Trainer.fit: epochs must be a positive integer, got 0 \(int\)"),
    (lambda t: t.fit(loaders()[0], epochs=True), TypeError, "Trainer.fit: epochs must be"),
    (lambda t: t.fit(loaders()[0], epochs=2.5), TypeError, "Trainer.fit: epochs must be"),
    (lambda t: t.predict(np.zeros((3, 4), np.float32), batch_size=0), ValueError,
     "Trainer.predict: batch_size must be a positive integer"),
    (lambda t: t.predict(np.zeros((3, 4), np.float32), batch_size=None), TypeError,
     "Trainer.predict: batch_size must be a positive integer"),
])
def test_fit_and_predict_check_their_arguments(call, error, message):
    with pytest.raises(error, match=message):
        call(small_trainer())


def test_numpy_integers_are_accepted_as_counts():
    trainer = small_trainer(log_interval=np.int64(2))
    assert trainer.log_interval == 2 and type(trainer.log_interval) is int
    history = trainer.fit(loaders()[0], epochs=np.int64(1))
    assert len(history) == 1
    assert trainer.predict(np.zeros((5, 4), np.float32), batch_size=np.int32(2)).shape == (5, 3)
    stopper = EarlyStopping(patience=np.int64(3), min_delta=np.float32(0.5))
    assert (stopper.patience, stopper._tracker.min_delta) == (3, 0.5)


@pytest.mark.parametrize("build, error, message", [
    (lambda: EarlyStopping(patience=-1), ValueError,
     "EarlyStopping: patience must be a non-negative integer, got -1"),
    (lambda: EarlyStopping(patience=1.5), TypeError, "EarlyStopping: patience must be"),
    (lambda: EarlyStopping(min_delta=float("nan")), ValueError,
     r"EarlyStopping: min_delta must be a real number in \[0, inf\), got nan"),
    (lambda: EarlyStopping(min_delta=True), TypeError, "EarlyStopping: min_delta must be"),
    (lambda: EarlyStopping(mode="lowest"), ValueError,
     "EarlyStopping: mode must be one of 'min', 'max', 'auto'"),
    (lambda: EarlyStopping(monitor=None), TypeError, "EarlyStopping: monitor must be"),
    (lambda: EarlyStopping(restore_best="yes"), TypeError, "restore_best must be True or False"),
    (lambda: ModelCheckpoint(None), TypeError, "ModelCheckpoint: path must be a file path"),
    (lambda: ModelCheckpoint("a.npz", min_delta=-1), ValueError, "ModelCheckpoint: min_delta"),
    (lambda: ModelCheckpoint("a.npz", save_best_only=1), TypeError, "save_best_only must be"),
    (lambda: LambdaCallback(on_epoch_end=3), TypeError, "LambdaCallback: on_epoch_end must be"),
])
def test_callbacks_check_their_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_plateau_scheduler_cannot_step_per_batch():
    model = L.Sequential(L.Linear(4, 3))
    optimizer = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="ReduceLROnPlateau steps on an epoch metric"):
        Trainer(model, CrossEntropyLoss(), optimizer, ReduceLROnPlateau(optimizer),
                scheduler_interval="batch")


# --------------------------------------------------------------------------- evaluate / predict
def test_evaluate_and_predict_use_eval_mode_and_restore_the_mode():
    minidl.seed(0)
    x, y = blobs(n=50, classes=7)
    model = L.Sequential(L.Linear(4, 16), L.ReLU(), L.Dropout(0.5), L.Linear(16, 7))
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), quiet=True)

    logits = trainer.predict(x, batch_size=7)
    assert model.training                               # restored
    model.eval()
    reference = model(x)                                # dropout off: deterministic
    np.testing.assert_allclose(logits, reference, rtol=1e-6)
    result = trainer.evaluate(DataLoader(x, y, batch_size=16, shuffle=False))
    assert not model.training                           # eval stays eval
    model.train()

    assert result["loss"] == pytest.approx(float(CrossEntropyLoss()(reference, y)), rel=1e-5)
    assert (result["top1"], result["top5"]) == pytest.approx(accuracy(reference, y, (1, 5)))


def test_plain_iterables_work_as_loaders():
    x, y = blobs(n=40)
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    trainer = small_trainer()
    history = trainer.fit(batches, batches, epochs=2)
    assert len(history) == 2 and history["val_top1"][-1] is not None


# --------------------------------------------------------------------------- history and plots
def test_history_json_and_csv_round_trip(tmp_path):
    history = History()
    history.append({"epoch": 1, "train_loss": 0.1 + 0.2, "train_top1": 1 / 3, "lr": 0.1,
                    "seconds": 2.5})
    history.append({"epoch": 2, "train_loss": np.float32(0.25), "val_loss": 1e-17,
                    "val_top1": 0.5, "val_top5": 1.0, "lr": 0.05, "seconds": 3.0})
    assert history["val_loss"] == [None, 1e-17] and history[0]["val_top1"] is None

    history.to_json(tmp_path / "h.json")
    history.to_csv(tmp_path / "h.csv")
    assert History.from_json(tmp_path / "h.json") == history
    assert History.from_csv(tmp_path / "h.csv") == history      # floats exact, None kept
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == ",".join(History.columns)
    assert history.best("train_loss")["epoch"] == 2
    assert history.best("val_top1")["epoch"] == 2


def test_history_rejects_unknown_columns():
    with pytest.raises(ValueError, match="unknown columns.*'accuracy'"):
        History().append({"epoch": 1, "accuracy": 0.5})
    with pytest.raises(KeyError, match="no column 'acc'"):
        History()["acc"]
    with pytest.raises(ValueError, match="History.best: mode must be one of 'min', 'max', 'auto'"):
        History([{"epoch": 1, "train_loss": 0.5}]).best("train_loss", mode="lowest")


def test_plot_history_writes_a_png(tmp_path):
    trainer, train, val = build_run(np.float32, 0, "epoch")    # 7 classes: top-5 is recorded
    history = trainer.fit(train, val, epochs=2)
    assert history.has("val_top5") and history.has("train_top5")
    path = plot_history(history, tmp_path / "plots" / "curves.png", title="blobs")
    data = (tmp_path / "plots" / "curves.png").read_bytes()
    assert path == tmp_path / "plots" / "curves.png"
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    with pytest.raises(ValueError, match="history is empty"):
        plot_history(History(), tmp_path / "empty.png")


# --------------------------------------------------------------------------- memory
def test_memory_stays_flat_over_50_steps():
    minidl.seed(0)
    generator = np.random.default_rng(0)
    x = generator.standard_normal((64 * 50, 32)).astype(np.float32)
    y = generator.integers(0, 10, 64 * 50)
    model = L.Sequential(L.Linear(32, 256), L.ReLU(), L.Dropout(0.2), L.Linear(256, 10))
    marks = {}

    def measure(trainer, step, logs):
        if step in (10, 50):
            marks[step] = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()

    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.01, momentum=0.9),
                      callbacks=[LambdaCallback(on_batch_end=measure)], quiet=True)
    tracemalloc.start()
    try:
        trainer.fit(DataLoader(x, y, batch_size=64, seed=0), epochs=1)
    finally:
        tracemalloc.stop()
    (current_10, peak_10), (current_50, peak_50) = marks[10], marks[50]
    # One step allocates several (64, 256) float32 arrays of 64 KiB: a leak of even one
    # of them per step would add 2.5 MiB over these 40 steps.
    assert current_50 - current_10 < 32 * 1024
    assert peak_50 - peak_10 < 32 * 1024
