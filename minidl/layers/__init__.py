"""All layers. ``from minidl import layers as L``; ``L.Conv2d(3, 8, 3, padding=1)``."""
from .activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .containers import Residual, Sequential
from .conv import Conv2d, col2im, im2col
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .reshape import Flatten, Identity
from .recurrent import GRU, LSTM, RNN
from .sync_batch_norm import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "ELU", "Flatten", "GELU",
    "GlobalAvgPool2d", "GlobalMaxPool2d", "Identity", "LeakyReLU", "Linear", "MaxPool2d",
    "ReLU", "Residual",
    "Sequential", "Sigmoid", "Softmax", "SyncBatchNorm1d", "SyncBatchNorm2d", "Tanh", "col2im",
    "convert_sync_batchnorm", "im2col",
]
__all__ += ["GRU", "LSTM", "RNN"]
