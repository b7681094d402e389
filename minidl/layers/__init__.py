"""All layers. ``from minidl import layers as L``; ``L.Conv2d(3, 8, 3, padding=1)``."""
from .activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .containers import Residual, Sequential
from .conv import Conv2d, col2im, im2col
from .dropout import Dropout
from .embedding import Embedding
from .layer_norm import GroupNorm, LayerNorm
from .linear import Linear
from .normalization import BatchNorm1d, BatchNorm2d
from .pooling import AvgPool2d, GlobalAvgPool2d, GlobalMaxPool2d, MaxPool2d
from .recurrent import GRU, LSTM, RNN
from .reshape import Flatten, Identity
from .sync_batch_norm import SyncBatchNorm1d, SyncBatchNorm2d, convert_sync_batchnorm
from .transformer import TransformerEncoderLayer

__all__ = [
    "AvgPool2d", "BatchNorm1d", "BatchNorm2d", "Conv2d", "Dropout", "ELU", "Embedding",
    "Flatten", "GELU", "GRU", "GlobalAvgPool2d", "GlobalMaxPool2d", "GroupNorm", "Identity",
    "LSTM", "LayerNorm", "LeakyReLU", "Linear", "MaxPool2d", "MultiheadAttention", "RNN",
    "ReLU", "Residual", "Sequential", "Sigmoid", "Softmax", "SyncBatchNorm1d",
    "SyncBatchNorm2d", "Tanh", "TransformerEncoderLayer", "col2im", "convert_sync_batchnorm",
    "im2col",
]
