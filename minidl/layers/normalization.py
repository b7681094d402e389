"""Batch normalization: BatchNorm1d on (N, C) and BatchNorm2d on (N, C, H, W).

Semantics are those of ``torch.nn.BatchNorm1d/2d``. For each channel c, with the
statistics taken over every axis but the channel axis (N for 1d; N, H, W for 2d)::

    train:  mean, var = batch mean and *biased* batch variance of x[:, c]
            running_mean = (1 - momentum) * running_mean + momentum * mean
            running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)
    eval:   mean, var = running_mean, running_var
    both:   xhat = (x - mean) / sqrt(var + eps);   y = weight * xhat + bias

where m is the number of values per channel (the unbiased estimate goes into the
running variance, exactly as in PyTorch).
"""
import math

from .. import init as initializers
from ..backend import get_array_module
from ..checks import boolean, positive_int, real_number
from ..module import Module, Param


class _BatchNorm(Module):
    """Shared forward/backward of BatchNorm1d and BatchNorm2d (channel axis 1).

    Caches ``xhat`` (shaped like x) and ``inv_std = 1 / sqrt(var + eps)`` (per channel).
    Gradients, with sums over the m values of each channel:

        dbias   = sum(dy)                   dweight = sum(dy * xhat)
        train:  dx = weight * inv_std / m * (m * dy - dbias - xhat * dweight)
        eval:   dx = weight * inv_std * dy   (mean and var are constants)

    The train-mode dx is the closed form of backpropagating through the graph
    x -> mean -> x - mean -> var -> inv_std -> xhat step by step; both are written out
    in :func:`minidl.naive.batch_norm_backward` and ``batch_norm_backward_alt``.
    """

    input_axis_size = "num_features"  # input_shape is set by the subclasses

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, weight=True):
        super().__init__()
        name = type(self).__name__
        self.num_features = positive_int(num_features, "num_features", name)
        self.eps = real_number(eps, "eps", name, low=0, low_open=True)
        self.momentum = real_number(momentum, "momentum", name, low=0, high=1)
        self.affine = boolean(affine, "affine", name)
        self.learn_scale = boolean(weight, "weight", name) and self.affine
        self.weight = Param(initializers.ones((self.num_features,))) if self.learn_scale else None
        self.bias = Param(initializers.zeros((self.num_features,))) if self.affine else None
        self.register_buffer("running_mean", initializers.zeros((self.num_features,)))
        self.register_buffer("running_var", initializers.ones((self.num_features,)))

    def forward(self, x):
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))                  # every axis but the channels
        per_channel = (1, self.num_features) + (1,) * (x.ndim - 2)
        batch_statistics = self.training and x.shape[0] > 0  # an empty batch has none
        if batch_statistics:
            mean = x.mean(axis=axes, keepdims=True)
            xhat = x - mean
            var = xp.square(xhat).mean(axis=axes, keepdims=True)  # two-pass: no cancellation
            inv_std = 1.0 / xp.sqrt(var + self.eps)
            xhat *= inv_std
            self._update_running_statistics(mean, var, x.shape)
        else:
            inv_std = (1.0 / xp.sqrt(self.running_var + self.eps)).reshape(per_channel)
            xhat = (x - self.running_mean.reshape(per_channel)) * inv_std
        self.save_for_backward(xhat, inv_std, batch_statistics)
        y = xhat * self.weight.data.reshape(per_channel) if self.weight is not None else xhat.copy()
        if self.bias is not None:
            y += self.bias.data.reshape(per_channel)
        return y

    def backward(self, dy):
        xhat, inv_std, batch_statistics = self.saved_for_backward(dy)
        axes = (0,) + tuple(range(2, dy.ndim))
        dbias = dy.sum(axis=axes)
        dweight = (dy * xhat).sum(axis=axes)
        scale = inv_std
        if self.bias is not None:
            self.bias.grad += dbias
        if self.weight is not None:
            self.weight.grad += dweight
            scale = inv_std * self.weight.data.reshape(inv_std.shape)
        if not batch_statistics:
            return dy * scale
        count = dy.size // self.num_features
        # dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)), built in one buffer.
        dx = xhat * (dweight.reshape(inv_std.shape) * (-1.0 / count))
        dx += dy
        dx -= dbias.reshape(inv_std.shape) * (1.0 / count)
        dx *= scale
        return dx

    def _update_running_statistics(self, mean, var, x_shape):
        """running = (1 - momentum) running + momentum batch; the variance unbiased (m/(m-1))."""
        count = math.prod(x_shape) // self.num_features
        if count < 2:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel "
                             f"when training, got input of shape {tuple(x_shape)}; use a batch "
                             "of 2 or more, or call .eval()")
        # Updated in place through local names (``self.buf *= a`` would re-assign the
        # attribute), so the buffers keep their identity, device and dtype.
        running_mean, running_var = self.running_mean, self.running_var
        running_mean *= 1.0 - self.momentum
        running_mean += self.momentum * mean.reshape(-1)
        running_var *= 1.0 - self.momentum
        running_var += (self.momentum * count / (count - 1)) * var.reshape(-1)

    def extra_repr(self):
        scale = "" if self.learn_scale or not self.affine else ", weight=False"
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}{scale}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of features: x and y ``(N, C)``, statistics over N.

    ``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True, weight=True)``.
    Parameters ``weight`` (ones) and ``bias`` (zeros), shape ``(C,)``; buffers
    ``running_mean`` (zeros) and ``running_var`` (ones). ``affine=False``: neither
    parameter. ``weight=False``: no learned scale (fixed at 1), bias still learned.
    Train mode needs N >= 2 (ValueError otherwise, like PyTorch).
    """

    input_shape = "(N, C)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of images: x and y ``(N, C, H, W)``, statistics over N, H, W.

    ``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True, weight=True)``.
    Parameters ``weight`` (ones) and ``bias`` (zeros), shape ``(C,)``; buffers
    ``running_mean`` (zeros) and ``running_var`` (ones). ``affine=False``: neither
    parameter. ``weight=False``: no learned scale (fixed at 1), only the bias is learned
    (the BatchNorm of airbench-style CIFAR nets; the state_dict then has no "weight").
    Train mode needs N * H * W >= 2 (ValueError otherwise, like PyTorch).
    """

    input_shape = "(N, C, H, W)"


__all__ = ["BatchNorm1d", "BatchNorm2d"]
