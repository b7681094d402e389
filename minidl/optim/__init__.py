"""Optimizers, learning rate schedules, weight averaging (PyTorch's update rules).

``from minidl import optim``::

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=epochs * len(loader))
    ema = optim.ExponentialMovingAverage(model, decay=0.999)

Every update rule is the one torch.optim documents, so results can be compared step by
step with PyTorch; each class's docstring writes its rule out.
"""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, Adamax, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .ema import ExponentialMovingAverage
from .lookahead import Lookahead
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "ExponentialMovingAverage",
           "Lookahead", "Optimizer", "RMSprop", "clip_grad_norm_", "clip_grad_value_", "lr_scheduler"]
