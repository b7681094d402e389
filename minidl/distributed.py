"""Data parallelism across processes: MPI (mpi4py) for NumPy, NCCL (CuPy) for the GPU.

Each of p processes ("ranks", launched by ``mpiexec -n p python train.py``) holds a full
copy of the model and a different shard of every batch. After backward, the gradients
are averaged over the ranks (an *all-reduce*), so every rank takes the same optimizer
step as one process on the whole batch would::

    import minidl.distributed as dist
    dist.init()                          # "mpi" on the CPU, "nccl" when the device is "gpu"
    model = dist.DataParallel(model)     # rank 0's weights everywhere; averaged gradients
    ...
    loss = loss_fn(model(x_shard), y_shard)
    model.backward(loss_fn.backward())   # all-reduce overlapped with the backward pass
    optimizer.step()

Without ``init`` (or with one process) everything here works as world size 1: ``rank()``
is 0, the collectives return their input, ``DataParallel`` only forwards. mpi4py is
imported by :func:`init` only, so minidl imports without it.

Transports are the field's own, never home-made: MPI collectives through mpi4py
(``Allreduce``, ``Iallreduce``, ``Bcast``: the CPU path and the control plane), and NCCL
through ``cupy.cuda.nccl`` for CuPy arrays, its unique id sent over MPI.
"""
import hashlib
import os
import sys

import numpy as np

from . import backend
from .checks import boolean, choice, is_array, real_number
from .module import Module

INSTALL_HINT = 'pip install mpi4py mpich   (or: pip install -e ".[distributed]")'
BACKENDS = ("mpi", "nccl")
OPS = ("sum", "mean", "max", "min")
# Set by the MPI launchers in every process they start (MPICH/Hydra, Open MPI).
_LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")

_state = {"backend": None, "comm": None, "mpi": None, "nccl": None, "nccl_module": None,
          "stream": None}


# ---------------------------------------------------------------------------- set-up
def init(backend=None):
    """Join the processes started by ``mpiexec``; call once, before anything else here.

    ``backend``: ``"mpi"`` (NumPy arrays; CuPy arrays pass through host memory),
    ``"nccl"`` (CuPy arrays over NCCL, one GPU per rank: rank r uses GPU
    ``local_rank % gpus``; NumPy arrays still go over MPI), or None: "nccl" when
    minidl's current device is "gpu", else "mpi". Calling it again with the same
    backend does nothing. From here on, an uncaught exception on any rank prints its
    traceback and aborts every rank (MPI_Abort) instead of leaving the others waiting
    forever in a collective.
    """
    if backend is None:
        backend = "nccl" if _current_device() == "gpu" else "mpi"
    backend = choice(backend, "backend", "distributed.init", BACKENDS)
    if _state["backend"] is not None:
        if _state["backend"] != backend:
            raise RuntimeError(f"distributed.init: already initialised with backend "
                               f"{_state['backend']!r}, got {backend!r}")
        return
    try:
        from mpi4py import MPI
    except ImportError as error:
        raise ImportError(f"distributed.init: mpi4py is not installed ({error}); install it "
                          f"with\n    {INSTALL_HINT}\nand launch with mpiexec -n 2 python "
                          "script.py") from None
    _state["mpi"], _state["comm"] = MPI, MPI.COMM_WORLD
    if backend == "nccl":
        _init_nccl()
    _state["backend"] = backend
    _install_abort_on_error()


def _current_device():
    try:
        return backend.current_device()
    except RuntimeError:  # MINIDL_DEVICE=gpu without a GPU: let init's own checks speak
        return "cpu"


def _init_nccl():
    """One NCCL communicator over all ranks; rank 0 makes the id, MPI carries it."""
    if not backend.gpu_available():
        raise RuntimeError("distributed.init: backend 'nccl' needs CuPy and a GPU; "
                           "use backend='mpi' on the CPU")
    cupy, nccl = backend.cupy_module(), backend.nccl_module()
    if nccl is None:
        raise RuntimeError("distributed.init: backend 'nccl' needs CuPy built with NCCL "
                           "(cupy.cuda.nccl is missing or unavailable); use backend='mpi'")
    comm = _state["comm"]
    local_rank = comm.Split_type(_state["mpi"].COMM_TYPE_SHARED).Get_rank()
    cupy.cuda.Device(local_rank % cupy.cuda.runtime.getDeviceCount()).use()
    # The id is 128 bytes: a tuple of signed chars in older CuPy, bytes in newer ones.
    # Sent as uint8 over MPI, with one more byte saying which form to rebuild.
    message = np.zeros(129, dtype=np.uint8)
    if comm.Get_rank() == 0:
        unique_id = nccl.get_unique_id()
        is_bytes = isinstance(unique_id, bytes)
        message[0] = is_bytes
        message[1:] = np.frombuffer(unique_id if is_bytes else
                                    bytes(v & 0xFF for v in unique_id), dtype=np.uint8)
    comm.Bcast(message, root=0)
    unique_id = (message[1:].tobytes() if message[0] else
                 tuple(int(v) for v in message[1:].astype(np.int8)))
    _state["nccl"] = nccl.NcclCommunicator(comm.Get_size(), unique_id, comm.Get_rank())
    _state["nccl_module"] = nccl
    # All-reduces started by DataParallel run here, beside the backward's own kernels.
    _state["stream"] = cupy.cuda.Stream(non_blocking=True)


def _install_abort_on_error():
    previous = sys.excepthook

    def print_and_abort(kind, error, trace):
        sys.stderr.write(f"[minidl.distributed rank {rank()}/{world_size()}] uncaught "
                         f"exception, aborting every rank:\n")
        previous(kind, error, trace)
        sys.stderr.flush()
        sys.stdout.flush()
        _state["comm"].Abort(1)

    sys.excepthook = print_and_abort


def is_initialized():
    """True after :func:`init`."""
    return _state["backend"] is not None


def backend_name():
    """"mpi", "nccl", or None before :func:`init`."""
    return _state["backend"]


def rank():
    """This process's index in ``[0, world_size())``; 0 without :func:`init`."""
    return _state["comm"].Get_rank() if is_initialized() else 0


def world_size():
    """Number of processes; 1 without :func:`init`."""
    return _state["comm"].Get_size() if is_initialized() else 1


def launched_size():
    """Number of processes the MPI launcher started (1 when not under mpiexec), read
    from its environment: lets a script notice it forgot :func:`init`."""
    for variable in _LAUNCHER_SIZE_VARIABLES:
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 1


# ---------------------------------------------------------------------------- collectives
class Handle:
    """An all-reduce in flight; ``wait()`` finishes it and returns the reduced array."""

    def __init__(self, x, op, request=None, host=None, event=None):
        self.x, self.op = x, op
        self._request, self._host, self._event = request, host, event

    def test(self):
        """Let MPI make progress without blocking (a no-op for NCCL); True when done."""
        return self._request is None or bool(self._request.Test())

    def wait(self):
        if self._request is not None:
            self._request.Wait()
            self._request = None
        if self._host is not None:  # a CuPy array reduced through host memory
            self.x[...] = backend.to_device(self._host, "gpu")
            self._host = None
        if self._event is not None:  # the caller's stream waits for the NCCL stream
            backend.cupy_module().cuda.get_current_stream().wait_event(self._event)
            self._event = None
        if self.op == "mean" and world_size() > 1:
            self.x /= world_size()
            self.op = "sum"  # a second wait() must not divide again
        return self.x


def _check_array(x, owner, op=None):
    """The same checks before and after init: what MPI or NCCL could not reduce in place
    (a NumPy scalar, a read-only or byte-swapped array) is refused in one process too."""
    if not is_array(x) or not hasattr(x, "flags") or isinstance(x, np.generic):
        raise TypeError(f"{owner}: expected a NumPy or CuPy array, got {type(x).__name__}")
    if x.dtype.kind not in "iuf":
        raise TypeError(f"{owner}: expected an integer or float array, got dtype {x.dtype}")
    if not x.dtype.isnative:
        raise TypeError(f"{owner}: expected an array in this machine's byte order, got dtype "
                        f"{x.dtype.str}; pass x.astype(x.dtype.newbyteorder('='))")
    if not getattr(x.flags, "writeable", True):
        raise ValueError(f"{owner}: expected a writeable array (reduced in place), got a "
                         "read-only one; pass a copy")
    if op == "mean" and x.dtype.kind != "f":
        raise TypeError(f"{owner}: op 'mean' needs a float array (the mean of integers "
                        f"is not stored in place), got dtype {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError(f"{owner}: expected a C-contiguous array (reduced in place), "
                         "got a strided view; pass a contiguous copy")


def start_all_reduce(x, op="sum"):
    """Start an in-place all-reduce of ``x`` and return a :class:`Handle` at once.

    On MPI this is ``Iallreduce``; on NCCL the reduction is queued on a stream of its
    own after the work already queued on the current stream. ``handle.wait()`` returns
    ``x`` holding the reduction over every rank.
    """
    return _all_reduce(x, op, blocking=False)


def all_reduce(x, op="sum"):
    """Reduce ``x`` over every rank, in place, and return it: ``op`` is "sum",
    "mean" (float arrays), "max" or "min". Every rank must call it with the same shape and
    dtype. ``x``: any shape, NumPy or CuPy."""
    return _all_reduce(x, op, blocking=True).wait()


def _all_reduce(x, op, blocking):
    op = choice(op, "op", "distributed.all_reduce", OPS)
    _check_array(x, "distributed.all_reduce", op)
    if not is_initialized():  # one process: nothing to reduce (after init, even a world
        return Handle(x, op)  # of 1 goes through MPI or NCCL, which tests those paths)
    if backend.device_of(x) == "gpu" and _state["nccl"] is not None:
        return _nccl_all_reduce(x, op, blocking)
    mpi = _state["mpi"]
    mpi_op = {"max": mpi.MAX, "min": mpi.MIN}.get(op, mpi.SUM)
    host = backend.to_numpy(x) if backend.device_of(x) == "gpu" else None
    buffer = x if host is None else host
    if blocking:  # MPICH's blocking Allreduce is faster than Iallreduce + Wait
        _state["comm"].Allreduce(mpi.IN_PLACE, buffer, op=mpi_op)
        return Handle(x, op, host=host)
    request = _state["comm"].Iallreduce(mpi.IN_PLACE, buffer, op=mpi_op)
    return Handle(x, op, request=request, host=host)


def _nccl_all_reduce(x, op, blocking):
    cupy, nccl = backend.cupy_module(), _state["nccl_module"]
    nccl_op = {"max": nccl.NCCL_MAX, "min": nccl.NCCL_MIN}.get(op, nccl.NCCL_SUM)
    current = cupy.cuda.get_current_stream()
    stream = current if blocking else _state["stream"]
    if not blocking:
        ready = cupy.cuda.Event()
        ready.record(current)  # x is final once the current stream gets here
        stream.wait_event(ready)
    _state["nccl"].allReduce(x.data.ptr, x.data.ptr, x.size, _nccl_dtype(x.dtype), nccl_op,
                             stream.ptr)
    if blocking:  # queued on the current stream: later work there sees the result
        return Handle(x, op)
    done = cupy.cuda.Event()
    done.record(stream)
    return Handle(x, op, event=done)


def _nccl_dtype(dtype):
    name = {"f": "FLOAT", "i": "INT", "u": "UINT"}[dtype.kind] + str(8 * dtype.itemsize)
    value = getattr(_state["nccl_module"], f"NCCL_{name}", None)
    if value is None:
        raise TypeError(f"distributed: NCCL has no type for dtype {dtype}")
    return value


def broadcast(x, root=0):
    """Overwrite ``x`` on every rank with rank ``root``'s ``x``, in place; return it."""
    _check_array(x, "distributed.broadcast")
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
        raise TypeError(f"distributed.broadcast: root must be an integer rank, got {root!r}")
    if not 0 <= root < world_size():
        raise ValueError(f"distributed.broadcast: root must be in [0, {world_size()}), "
                         f"got {root}")
    if not is_initialized():
        return x
    if backend.device_of(x) == "gpu" and _state["nccl"] is not None:
        cupy = backend.cupy_module()
        _state["nccl"].bcast(x.data.ptr, x.size, _nccl_dtype(x.dtype), int(root),
                             cupy.cuda.get_current_stream().ptr)
    elif backend.device_of(x) == "gpu":
        host = backend.to_numpy(x)
        _state["comm"].Bcast(host, root=int(root))
        x[...] = backend.to_device(host, "gpu")
    else:
        _state["comm"].Bcast(x, root=int(root))
    return x


def barrier():
    """Wait until every rank gets here."""
    if is_initialized():
        _state["comm"].Barrier()


def all_gather_text(text):
    """The string ``text`` of every rank, as a list indexed by rank (UTF-8 bytes
    over MPI ``Allgatherv``; no pickling)."""
    if not isinstance(text, str):
        raise TypeError(f"distributed.all_gather_text: expected a str, got {type(text).__name__}")
    if not is_initialized():
        return [text]
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    lengths = np.zeros(world_size(), dtype=np.int64)
    _state["comm"].Allgather(np.array([data.size], dtype=np.int64), lengths)
    gathered = np.zeros(int(lengths.sum()), dtype=np.uint8)
    _state["comm"].Allgatherv(data, [gathered, lengths.tolist()])
    ends = np.cumsum(lengths)
    return [gathered[end - length:end].tobytes().decode("utf-8")
            for end, length in zip(ends, lengths)]


# ---------------------------------------------------------------------------- DataParallel
class DataParallel(Module):
    """Wrap ``model`` so that ``backward`` leaves every gradient averaged over the ranks.

    ``DataParallel(model, bucket_mb=25, overlap=True)``; ``forward(x)`` is the model's
    on this rank's shard ``x: (N_rank, ...)``. At wrap, every rank checks that all
    ranks hold the same parameter names, shapes and dtypes (ValueError on every rank
    otherwise), then takes rank 0's parameters and buffers.

    ``backward(dy)``: the model's backward, then ``grad = mean over ranks of grad``.
    Gradients travel in flat *buckets* of about ``bucket_mb`` MB (one all-reduce per
    bucket instead of one per tensor: latency is paid per message), filled with the
    parameters in reverse order of registration, the order backward produces them; a
    bucket closes at the first parameter that takes it to ``bucket_mb`` or beyond.
    With ``overlap`` each layer holding parameters reports when its backward has
    returned (its gradients are then final), and a bucket's all-reduce starts as soon
    as all its parameters are final, while the layers below are still computing.
    Buckets start in index order on every rank, as MPI requires of collectives.

    The loss on each rank is its shard's mean, so the averaged gradient is exactly the
    gradient of the mean loss over the whole batch when the shards have equal sizes.
    Buffers are synchronised at wrap only: plain BatchNorm layers then keep running
    statistics of their own shards on each rank (use SyncBatchNorm, or broadcast the
    buffers before evaluating). ``state_dict`` keys gain the prefix "module."; save
    ``model.module.state_dict()`` to load the weights into the bare model.
    """

    def __init__(self, model, bucket_mb=25, overlap=True):
        super().__init__()
        if not isinstance(model, Module):
            raise TypeError(f"DataParallel: model must be a Module, got {type(model).__name__}")
        bucket_mb = real_number(bucket_mb, "bucket_mb", "DataParallel", low=0, low_open=True)
        self.overlap = boolean(overlap, "overlap", "DataParallel")
        if launched_size() > 1 and not is_initialized():
            raise RuntimeError(f"DataParallel: started by mpiexec with {launched_size()} "
                               "processes but minidl.distributed.init() was not called")
        self.module = model
        self.bucket_mb = bucket_mb
        _check_same_model_on_every_rank(model)
        for _, param in model.named_parameters():
            broadcast(param.data, root=0)
        for _, buffer in model.named_buffers():
            broadcast(buffer, root=0)
        self._buckets = _GradientBuckets(model, int(bucket_mb * 2**20))
        if self.overlap and is_initialized():
            for module in _unique_modules(model):
                if module._params:
                    _report_after_backward(module, self._buckets)

    def forward(self, x, *args, **kwargs):
        return self.module(x, *args, **kwargs)

    def backward(self, dy):
        if not is_initialized():  # one process: the gradients are already the mean
            return self.module.backward(dy)
        self._buckets.begin(listening=self.overlap)
        try:
            dx = self.module.backward(dy)
        finally:
            self._buckets.finish()
        return dx

    def set_needs_input_grad(self, needed):
        super().set_needs_input_grad(needed)
        self.module.set_needs_input_grad(needed)
        return self

    def extra_repr(self):
        return f"bucket_mb={self.bucket_mb:g}, overlap={self.overlap}, world_size={world_size()}"

    def __repr__(self):
        return f"DataParallel({self.extra_repr()},\n  module: " + \
            repr(self.module).replace("\n", "\n  ") + "\n)"


def _check_same_model_on_every_rank(model):
    """Compare "name shape dtype" lines across ranks (a hash first, text on mismatch)."""
    lines = [f"{name} {tuple(p.data.shape)} {p.data.dtype}" for name, p in model.named_parameters()]
    lines += [f"{name} {tuple(b.shape)} {b.dtype} (buffer)" for name, b in model.named_buffers()]
    text = "\n".join(lines)
    digests = all_gather_text(hashlib.sha256(text.encode()).hexdigest())
    if len(set(digests)) == 1:
        return
    texts = all_gather_text(text)
    reference = texts[0].split("\n")
    problems = []
    for other_rank, other in enumerate(texts[1:], start=1):
        other = other.split("\n")
        only_0 = [line for line in reference if line not in other]
        only_other = [line for line in other if line not in reference]
        problems.append(f"rank 0 has {only_0 or 'nothing else'}, rank {other_rank} has "
                        f"{only_other or 'nothing else'}")
    raise ValueError("DataParallel: the model differs between ranks (parameter/buffer "
                     "name, shape, dtype); build the same model on every rank:\n  "
                     + "\n  ".join(problems))


def _report_after_backward(module, buckets):
    """Wrap this module's ``backward`` so that, once it returns, the buckets learn that
    the parameters it owns hold their final gradients."""
    original = module.backward

    def backward_then_report(dy):
        dx = original(dy)
        buckets.mark_ready(module)
        return dx

    object.__setattr__(module, "backward", backward_then_report)


class _GradientBuckets:
    """Flat buffers of gradients, all-reduced bucket by bucket and averaged back."""

    def __init__(self, model, bucket_bytes):
        params, seen = [], set()
        for _, param in reversed(list(model.named_parameters())):
            if id(param) not in seen:  # a Param shared by two modules travels once
                seen.add(id(param))
                params.append(param)
        self.buckets = []  # lists of Params; a bucket closes once it holds bucket_bytes
        for param in params:
            last = self.buckets[-1] if self.buckets else None
            if (last is not None and _same_kind(last[0], param)
                    and sum(p.data.nbytes for p in last) < bucket_bytes):
                last.append(param)
            else:
                self.buckets.append([param])
        self.bucket_of = {id(p): i for i, bucket in enumerate(self.buckets) for p in bucket}
        # How many (module, param) reports complete each bucket.
        self.reports_needed = [0] * len(self.buckets)
        for module in _unique_modules(model):
            for param in module._params.values():
                self.reports_needed[self.bucket_of[id(param)]] += 1
        self.listening = False

    def begin(self, listening):
        self.listening = listening
        self.reports_missing = list(self.reports_needed)
        self.handles = []  # one per started bucket, in bucket order
        self.started_during_backward = 0  # what overlap achieved (read by tests, benchmarks)

    def mark_ready(self, module):
        if not self.listening:  # a backward outside DataParallel.backward
            return
        for param in module._params.values():
            self.reports_missing[self.bucket_of[id(param)]] -= 1
        while (len(self.handles) < len(self.buckets)
               and self.reports_missing[len(self.handles)] <= 0):
            self._start(len(self.handles))
            self.started_during_backward += 1
        for handle in self.handles:
            handle.test()  # MPI progresses non-blocking collectives inside MPI calls

    def _start(self, index):
        grads = [param.grad.reshape(-1) for param in self.buckets[index]]
        xp = backend.get_array_module(grads[0])
        self.handles.append(start_all_reduce(xp.concatenate(grads), "sum"))

    def finish(self):
        self.listening = False
        while len(self.handles) < len(self.buckets):  # parameters no backward reached
            self._start(len(self.handles))
        scale = 1.0 / world_size()
        for bucket, handle in zip(self.buckets, self.handles):
            flat, offset = handle.wait(), 0
            for param in bucket:
                size = param.grad.size
                xp = backend.get_array_module(flat)
                xp.multiply(flat[offset:offset + size], scale, out=param.grad.reshape(-1))
                offset += size
        self.handles = []


def _unique_modules(model):
    modules = {id(module): module for _, module in model.named_modules()}
    return list(modules.values())


def _same_kind(a, b):
    return a.data.dtype == b.data.dtype and backend.device_of(a.data) == backend.device_of(b.data)


__all__ = ["BACKENDS", "DataParallel", "Handle", "INSTALL_HINT", "OPS", "all_gather_text",
           "all_reduce", "backend_name", "barrier", "broadcast", "init", "is_initialized",
           "launched_size", "rank", "start_all_reduce", "world_size"]
