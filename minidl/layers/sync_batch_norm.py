"""Synchronised batch normalization: batch statistics over every rank's shard.

With data parallelism each rank sees only its shard of the batch (N_r samples). A plain
BatchNorm normalises by the shard's statistics, so small shards give noisy statistics
and the result depends on the number of ranks. ``SyncBatchNorm1d/2d`` compute the
statistics of the whole batch (ChainerMN's ``MultiNodeBatchNormalization``, PyTorch's
``SyncBatchNorm``): with m = sum over ranks of the m_r values per channel,

    mean = all_reduce(sum of x) / m
    var  = all_reduce(sum of (x - mean)^2) / m          (two passes: no cancellation)

then exactly :class:`~minidl.layers.BatchNorm2d`'s formulas. In backward the two sums
of the batch-norm gradient are all-reduced too, so dx is the gradient of the sum of
every rank's loss; ``weight.grad``/``bias.grad`` get this rank's share, which
:class:`~minidl.distributed.DataParallel` averages like any other gradient.
With one process they are BatchNorm1d/2d exactly.
"""
import numpy as np

from .. import distributed
from ..backend import get_array_module
from .normalization import BatchNorm1d, BatchNorm2d


class _SyncBatchNorm:
    """Forward and backward of the synchronised batch norm (mixed into BatchNorm1d/2d).

    Caches ``xhat``, ``inv_std = 1 / sqrt(var + eps)`` (per channel) and m (None in
    eval mode, and for a batch empty on every rank, which uses the running statistics).
    A rank whose own shard is empty still takes part in every all-reduce.
    Gradients, with sums over this rank's values and Sum = all_reduce(sum):

        dbias   = sum(dy)                   dweight = sum(dy * xhat)
        train:  dx = weight * inv_std / m * (m * dy - Sum(dy) - xhat * Sum(dy * xhat))
        eval:   dx = weight * inv_std * dy   (mean and var are constants)
    """

    def forward(self, x):
        xp = get_array_module(x)
        per_channel = (1, self.num_features) + (1,) * (x.ndim - 2)
        count = self._global_count(x) if self.training else 0
        if count > 0:  # with no values on any rank, like BatchNorm: the running statistics
            mean, var = self._batch_statistics(x, count)
            self._update_running_statistics_of_all_ranks(mean, var, count)
        else:
            mean, var, count = self.running_mean, self.running_var, None
        inv_std = (1.0 / xp.sqrt(var + self.eps)).reshape(per_channel)
        xhat = (x - mean.reshape(per_channel)) * inv_std
        self.save_for_backward(xhat, inv_std, count)
        y = xhat * self.weight.data.reshape(per_channel) if self.weight is not None else xhat.copy()
        if self.bias is not None:
            y += self.bias.data.reshape(per_channel)
        return y

    def backward(self, dy):
        xhat, inv_std, count = self.saved_for_backward(dy)
        axes = (0,) + tuple(range(2, dy.ndim))
        dbias, dweight = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
        scale = inv_std
        if self.bias is not None:
            self.bias.grad += dbias
        if self.weight is not None:
            self.weight.grad += dweight
            scale = inv_std * self.weight.data.reshape(inv_std.shape)
        if count is None:  # eval mode
            return dy * scale
        # One message carries both sums: Sum(dy) and Sum(dy * xhat) over every rank.
        xp = get_array_module(dy)
        sums = distributed.all_reduce(xp.concatenate([dbias, dweight]), "sum")
        total_dbias, total_dweight = sums[:self.num_features], sums[self.num_features:]
        dx = xhat * (total_dweight.reshape(inv_std.shape) * (-1.0 / count))
        dx += dy
        dx -= total_dbias.reshape(inv_std.shape) * (1.0 / count)
        dx *= scale
        return dx

    def _batch_statistics(self, x, count):
        """(mean, biased var) per channel over every rank's values of x (m = count)."""
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        per_channel = (1, self.num_features) + (1,) * (x.ndim - 2)
        mean = distributed.all_reduce(x.sum(axis=axes), "sum") / count
        centred = x - mean.reshape(per_channel)
        var = distributed.all_reduce(xp.square(centred).sum(axis=axes), "sum") / count
        return mean, var

    def _update_running_statistics_of_all_ranks(self, mean, var, count):
        # In place through local names, as in BatchNorm (the buffers keep their identity).
        running_mean, running_var = self.running_mean, self.running_var
        running_mean *= 1.0 - self.momentum
        running_mean += self.momentum * mean
        running_var *= 1.0 - self.momentum
        running_var += (self.momentum * count / (count - 1)) * var

    def _global_count(self, x):
        """m, the number of values per channel over every rank: a host-side integer,
        reduced over MPI, so that no GPU value is read back."""
        count = distributed.all_reduce(np.array([x.size // self.num_features], np.int64))
        count = int(count[0])
        if count == 1:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel "
                             f"over all ranks when training, got {count} (input of shape "
                             f"{tuple(x.shape)} on this rank); use bigger batches or .eval()")
        return count


class SyncBatchNorm1d(_SyncBatchNorm, BatchNorm1d):
    """:class:`BatchNorm1d` (x and y ``(N, C)``) with statistics over every rank's batch.

    Same arguments, parameters, buffers and state_dict keys as BatchNorm1d; train mode
    needs 2 or more samples over all ranks together.
    """


class SyncBatchNorm2d(_SyncBatchNorm, BatchNorm2d):
    """:class:`BatchNorm2d` (x and y ``(N, C, H, W)``) with statistics over N, H, W of
    every rank's batch. Same arguments, parameters, buffers and state_dict keys."""


def convert_sync_batchnorm(model):
    """Return ``model`` with every BatchNorm1d/2d replaced by its synchronised twin.

    The new layers take over the parameters (the same Param objects, so an optimizer
    built before still updates them), the running statistics and the train/eval mode.
    A bare BatchNorm is returned converted; containers are changed in place.
    """
    replacement = _sync_twin(model)
    if replacement is not None:
        return replacement
    for _, module in list(model.named_modules()):
        for name, child in list(module._modules.items()):
            twin = _sync_twin(child)
            if twin is not None:
                # Replaced in the registry in place: setattr would move the child to the
                # end of the registry, and Sequential runs its children in that order.
                module._modules[name] = twin
                object.__setattr__(module, name, twin)
    return model


def _sync_twin(layer):
    kinds = {BatchNorm1d: SyncBatchNorm1d, BatchNorm2d: SyncBatchNorm2d}
    if type(layer) not in kinds:
        return None
    twin = kinds[type(layer)](layer.num_features, eps=layer.eps, momentum=layer.momentum,
                              affine=layer.affine, weight=layer.learn_scale)
    twin.weight, twin.bias = layer.weight, layer.bias
    twin.running_mean, twin.running_var = layer.running_mean, layer.running_var
    twin.train(layer.training)
    return twin


__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batchnorm"]
