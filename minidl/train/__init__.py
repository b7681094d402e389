"""Training: the :class:`Trainer` loop, History, callbacks, metrics, checkpoints, plots.

::

    from minidl.train import Trainer, EarlyStopping, ModelCheckpoint, plot_history
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1),
                      callbacks=[ModelCheckpoint("runs/best.npz", save_best_only=True)])
    history = trainer.fit(train_loader, val_loader, epochs=10)
    plot_history(history, "runs/curves.png")
"""
from .callbacks import Callback, EarlyStopping, LambdaCallback, ModelCheckpoint
from .checkpoint import (CheckpointError, load_checkpoint, load_weights, save_checkpoint,
                         save_weights)
from .history import History
from .metrics import accuracy, confusion_matrix, topk_correct
from .plotting import new_figure, plot_history
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Callback", "CheckpointError", "EarlyStopping", "History", "LambdaCallback",
    "ModelCheckpoint", "NonFiniteLossError", "Trainer", "accuracy", "confusion_matrix",
    "load_checkpoint", "load_weights", "new_figure", "plot_history", "save_checkpoint", "save_weights",
    "topk_correct",
]
