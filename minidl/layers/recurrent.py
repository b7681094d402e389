"""Recurrent layers: RNN, LSTM and GRU, trained by backpropagation through time.

Semantics, argument names, parameter names, layouts and gate order are PyTorch's
(``torch.nn.RNN/LSTM/GRU``), so a state_dict maps one-to-one (:mod:`minidl.interop`).
For layer ``l`` and direction suffix ``s`` ("" forward, "_reverse" backward in time)::

    weight_ih_l{l}{s}: (G*H, in)    weight_hh_l{l}{s}: (G*H, H)    bias_*_l{l}{s}: (G*H,)

with H = hidden_size, in = input_size for layer 0 and D*H above it (D = 2 when
bidirectional), and G gates stacked in this order (x: the step's input, h: the previous
hidden state, "sig" the logistic function)::

    RNN  (G=1): h' = act(W_ih x + b_ih + W_hh h + b_hh)             act: tanh or relu
    LSTM (G=4): i, f, g, o = sig, sig, tanh, sig of (W_ih x + b_ih + W_hh h + b_hh)
                c' = f * c + i * g;   h' = o * tanh(c')
    GRU  (G=3): r, z = sig of the r and z rows of (W_ih x + b_ih + W_hh h + b_hh)
                n = tanh(W_in x + b_in + r * (W_hn h + b_hn));   h' = (1 - z) * n + z * h

Weights are stored as PyTorch stores them, ``(out, in)``, unlike minidl's Linear.
All weights and biases start as U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default.

Speed: the input projection ``W_ih x + b_ih`` of all T steps is one GEMM before the
time loop, and its gradients are GEMMs over all steps after the backward loop; only the
``W_hh h`` products run step by step (the loops are per step and per cell, as in
PyTorch's CPU code). Between layers, with ``dropout > 0`` in training, inverted dropout.
"""
import math
import sys

import numpy as np

from .. import checks
from .. import init as initializers
from ..backend import default_dtype, device_of, get_array_module, rng
from ..module import Module, Param


def _sigmoid(x):
    """``1 / (1 + exp(-x)) = 0.5 * tanh(x / 2) + 0.5``, in place on ``x`` (returned).

    The tanh form never overflows and costs one transcendental function.
    """
    x *= 0.5
    xp = get_array_module(x)
    xp.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


def _flat(a):
    """(T, N, K) -> (T*N, K): every step as rows of one matrix (for the big GEMMs)."""
    return a.reshape(-1, a.shape[-1])


class _RNNBase(Module):
    """Layers, directions, dropout and BPTT shared by RNN, LSTM and GRU.

    A subclass sets ``num_gates`` (G), ``state_size`` (1: h; 2: h and c) and
    ``fold_hidden_bias`` (b_hh can be added to the input projection once) and writes
    one cell step: ``_cell_forward(gx_t, state, w_hh_t, b_hh) -> (state', cache)`` and
    ``_cell_backward(d_state', cache, w_hh) -> (d_gx_t, d_gh_t, d_state)``, where gx_t
    is the step's ``W_ih x + b_ih`` (N, G*H), gh_t = ``W_hh h (+ b_hh)``, computed as
    ``h @ w_hh_t`` with ``w_hh_t`` a contiguous copy of ``W_hh.T`` (BLAS multiplies it
    ~20% faster than the transposed view), and d_state includes the path through W_hh.
    """

    input_shape = "(T, N, input_size)"  # "(N, T, input_size)" with batch_first
    input_axis_size = "input_size"
    input_axis = -1
    num_gates = 1
    state_size = 1
    fold_hidden_bias = True

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__()
        owner = type(self).__name__
        self.input_size = checks.positive_int(input_size, "input_size", owner)
        self.hidden_size = checks.positive_int(hidden_size, "hidden_size", owner)
        self.num_layers = checks.positive_int(num_layers, "num_layers", owner)
        self.bias = checks.boolean(bias, "bias", owner)
        self.batch_first = checks.boolean(batch_first, "batch_first", owner)
        if self.batch_first:
            self.input_shape = "(N, T, input_size)"
        self.dropout = checks.real_number(dropout, "dropout", owner, 0.0, 1.0, high_open=True)
        self.bidirectional = checks.boolean(bidirectional, "bidirectional", owner)
        self.num_directions = 2 if self.bidirectional else 1
        self.grad_initial_state = None
        rows, bound = self.num_gates * self.hidden_size, 1.0 / math.sqrt(self.hidden_size)
        self._check_total_size(rows)
        for layer in range(self.num_layers):
            columns = self.input_size if layer == 0 else self.num_directions * self.hidden_size
            for suffix in self._suffixes():
                shapes = [("weight_ih", (rows, columns)), ("weight_hh", (rows, self.hidden_size))]
                if self.bias:
                    shapes += [("bias_ih", (rows,)), ("bias_hh", (rows,))]
                for name, shape in shapes:
                    setattr(self, f"{name}_l{layer}{suffix}",
                            Param(initializers.uniform(shape, low=-bound, high=bound)))

    def _check_total_size(self, rows):
        """Refuse, before the loop allocating layer after layer, sizes that no array of
        NumPy could hold (``num_layers=2**63`` would otherwise loop for ever)."""
        columns = max(self.input_size, self.num_directions * self.hidden_size)
        per_layer = self.num_directions * rows * (columns + self.hidden_size + 2)
        if self.num_layers * per_layer * np.dtype(default_dtype()).itemsize > sys.maxsize:
            raise ValueError(f"{type(self).__name__}: the sizes are too large to allocate "
                             f"(num_layers={checks.describe(self.num_layers)}, "
                             f"{per_layer} parameters per layer)")

    def _suffixes(self):
        return ["", "_reverse"][:self.num_directions]

    def _weights(self, layer, direction):
        """(weight_ih, weight_hh, bias_ih, bias_hh) Params of one layer and direction."""
        suffix = self._suffixes()[direction]
        return tuple(getattr(self, f"{name}_l{layer}{suffix}", None)
                     for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    # ------------------------------------------------------------------ forward
    def forward(self, x, hx=None):
        """x: (T, N, input_size), or (N, T, input_size) with batch_first.
        hx: initial state (D*L, N, H) (LSTM: a pair (h0, c0)); None means zeros.

        Returns output (T, N, D*H) (batch_first: (N, T, D*H)), the last layer's h at
        every step, and h_n (D*L, N, H) (LSTM: (h_n, c_n)), every layer's last state.
        Caches, per layer and direction, the layer input, h0 and each step's cell cache.
        """
        seq = x.swapaxes(0, 1) if self.batch_first else x
        initial = self._initial_states(seq, hx)
        caches, finals, keeps = [], [], []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                out, final, cache = self._direction_forward(seq, initial[index], layer, direction)
                outputs.append(out)
                finals.append(final)
                caches.append(cache)
            seq = outputs[0] if len(outputs) == 1 else get_array_module(x).concatenate(outputs, -1)
            seq, keep = self._dropout(seq, last=layer == self.num_layers - 1)
            keeps.append(keep)
        output = seq.swapaxes(0, 1) if self.batch_first else seq
        self.save_for_backward(caches, keeps, hx is not None,
                               (tuple(output.shape), output.dtype, device_of(output)))
        return output, self._pack_states(finals)

    def _direction_forward(self, seq, state, layer, direction):
        """Run one layer in one direction over seq (T, N, in); returns its hidden states
        (T, N, H) in time order, its last state, and the cache for backward."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        time_steps, batch = seq.shape[:2]
        gx = (_flat(seq) @ w_ih.data.T).reshape(time_steps, batch, len(w_ih.data))  # one GEMM
        hidden_bias = None
        if b_ih is not None:
            gx += (b_ih.data + b_hh.data) if self.fold_hidden_bias else b_ih.data
            hidden_bias = None if self.fold_hidden_bias else b_hh.data
        if direction == 1:
            gx = gx[::-1]  # the reverse direction reads time backwards
        w_hh_t = get_array_module(seq).ascontiguousarray(w_hh.data.T)
        hs, final, steps = self._scan(gx, state, w_hh_t, hidden_bias)
        return (hs[::-1] if direction == 1 else hs), final, (seq, state[0], hs, steps)

    def _scan(self, gx, state, w_hh_t, b_hh):
        """The time loop: the cell over the T steps of gx (T, N, G*H) from ``state``.
        Returns every step's h (T, N, H), the last state and the per-step caches."""
        xp = get_array_module(gx)
        hs = xp.empty(gx.shape[:2] + (self.hidden_size,), dtype=gx.dtype)
        steps = []
        for t in range(gx.shape[0]):
            state, cache = self._cell_forward(gx[t], state, w_hh_t, b_hh)
            hs[t] = state[0]
            steps.append(cache)
        return hs, state, steps

    def _dropout(self, seq, last):
        """Inverted dropout on a layer's output (not the last layer's), in training."""
        if last or not self.training or self.dropout == 0.0:
            return seq, None
        keep = rng(get_array_module(seq)).random(seq.shape, dtype=seq.dtype) >= self.dropout
        return seq * keep * (1.0 / (1.0 - self.dropout)), keep

    # ------------------------------------------------------------------ backward
    def backward(self, d_output, d_state=None):
        """d_output: dL/d output, shaped like output; d_state: dL/d h_n (LSTM: a pair
        (dL/dh_n, dL/dc_n), either may be None), or None when the loss ignores it.

        Returns dL/dx (None when ``needs_input_grad`` is off); adds into every
        parameter's grad; when forward was given hx, sets ``grad_initial_state`` to
        dL/dhx (LSTM: (dL/dh0, dL/dc0)). BPTT: each direction's loop runs backwards
        in its own time, carrying dL/dh (and dL/dc) to the step before.
        """
        if self._saved:  # Module checks dy for single-array outputs; this one is a pair
            self._check_output_gradient(d_output, *self._saved[-1])
        caches, keeps, hx_given, _ = self.saved_for_backward(d_output)
        d_seq = d_output.swapaxes(0, 1) if self.batch_first else d_output
        d_finals = self._initial_states(d_seq, d_state)
        d_initials = [None] * len(caches)
        hidden = self.hidden_size
        for layer in reversed(range(self.num_layers)):
            if keeps[layer] is not None:
                d_seq = d_seq * keeps[layer] * (1.0 / (1.0 - self.dropout))
            d_input = None
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                d_out = d_seq[..., direction * hidden:(direction + 1) * hidden]
                d_in, d_initials[index] = self._direction_backward(
                    d_out, d_finals[index], caches[index], layer, direction,
                    need_input=layer > 0 or self.needs_input_grad)
                d_input = d_in if d_input is None else d_input + d_in
            d_seq = d_input
        self.grad_initial_state = self._pack_states(d_initials) if hx_given else None
        if d_seq is None:
            return None
        return d_seq.swapaxes(0, 1) if self.batch_first else d_seq

    def _direction_backward(self, d_out, d_final, cache, layer, direction, need_input):
        """Backward of one layer and direction: accumulates the parameter gradients,
        returns dL/d(layer input) (T, N, in) (None unless need_input) and dL/d(state0)."""
        w_ih, w_hh, b_ih, b_hh = self._weights(layer, direction)
        seq, h0, hs, steps = cache
        xp = get_array_module(seq)
        d_hs = d_out[::-1] if direction == 1 else d_out  # the loop's own time order
        d_gx, d_gh, d_initial = self._scan_backward(d_hs, d_final, steps, w_hh.data)
        h_prev = xp.concatenate([h0[None], hs[:-1]])  # the h each step multiplied by W_hh
        w_hh.grad += _flat(d_gh).T @ _flat(h_prev)
        if direction == 1:
            d_gx = d_gx[::-1]
        w_ih.grad += _flat(d_gx).T @ _flat(seq)
        if b_ih is not None:
            b_ih.grad += d_gx.sum(axis=(0, 1))
            b_hh.grad += d_gh.sum(axis=(0, 1))
        if not need_input:
            return None, d_initial
        return (_flat(d_gx) @ w_ih.data).reshape(seq.shape), d_initial

    def _scan_backward(self, d_hs, d_state, steps, w_hh):
        """The time loop backwards: returns dL/dgx and dL/dgh (T, N, G*H) and dL/d(state0).
        dL/dh at step t is d_hs[t] plus what flows back from step t+1."""
        xp = get_array_module(d_hs)
        shape = d_hs.shape[:2] + (self.num_gates * self.hidden_size,)
        d_gx = xp.empty(shape, dtype=d_hs.dtype)
        d_gh = d_gx if self.fold_hidden_bias else xp.empty(shape, dtype=d_hs.dtype)
        for t in reversed(range(len(steps))):
            d_state = (d_state[0] + d_hs[t],) + tuple(d_state[1:])
            d_gx_t, d_gh_t, d_state = self._cell_backward(d_state, steps[t], w_hh)
            d_gx[t] = d_gx_t
            if d_gh is not d_gx:
                d_gh[t] = d_gh_t
        return d_gx, d_gh, d_state

    # ------------------------------------------------------------------ states and checks
    def _initial_states(self, seq, hx):
        """Split hx (D*L, N, H) (LSTM: a pair) into one state tuple per layer and
        direction; zeros where hx (or one of the LSTM's pair) is None."""
        xp = get_array_module(seq)
        shape = (self.num_layers * self.num_directions, seq.shape[1], self.hidden_size)
        if self.state_size == 2 and hx is not None and (
                not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"{type(self).__name__}: expected the state as a pair (h, c) of "
                            f"arrays of shape {shape}, got {type(hx).__name__}")
        parts = hx if self.state_size == 2 and hx is not None else (hx,) * self.state_size
        arrays = []
        for name, part in zip(("h", "c"), parts):
            if part is None:
                part = xp.zeros(shape, dtype=seq.dtype)
            else:
                self._check_state(part, shape, seq, name)
            arrays.append(part)
        return [tuple(array[k] for array in arrays) for k in range(shape[0])]

    def _pack_states(self, states):
        """One state tuple per layer and direction -> h (D*L, N, H) (LSTM: (h, c))."""
        xp = get_array_module(states[0][0])
        stacked = tuple(xp.stack([state[i] for state in states]) for i in range(self.state_size))
        return stacked if self.state_size == 2 else stacked[0]

    def check_input(self, x):
        """Module's contract, and a sequence of at least one step."""
        super().check_input(x)
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"{type(self).__name__}: expected a sequence of at least one step "
                             f"(T >= 1 in {self.input_shape}), got input of shape "
                             f"{tuple(x.shape)}")

    def _check_state(self, state, shape, seq, name):
        owner = type(self).__name__
        checks.float_array(state, owner, str(shape), f"the state {name}")
        if tuple(state.shape) != shape:
            raise ValueError(f"{owner}: expected the state {name} of shape (num_layers * "
                             f"num_directions, N, hidden_size) = {shape}, got "
                             f"{tuple(state.shape)}")
        if state.dtype != seq.dtype or get_array_module(state) is not get_array_module(seq):
            raise TypeError(f"{owner}: the state {name} must have the input's dtype and "
                            f"device ({seq.dtype}), got {state.dtype} on "
                            f"{type(state).__module__.split('.')[0]}")
        if device_of(state) == "cpu" and not bool(np.isfinite(state).all()):
            raise ValueError(f"{owner}: the state {name} contains NaN or Inf")  # as x: refused

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False),
                              ("dropout", 0.0), ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


class RNN(_RNNBase):
    """Elman RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``, act = tanh or relu.

    Cell cache: h'. Gradient: ``d_pre = dh' * act'(pre)`` (tanh: ``1 - h'^2``; relu:
    ``h' > 0``), ``dh = d_pre @ W_hh``.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        nonlinearity = checks.choice(nonlinearity, "nonlinearity", "RNN", ("tanh", "relu"))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional)
        self.nonlinearity = nonlinearity

    def _cell_forward(self, gx_t, state, w_hh_t, b_hh):
        xp = get_array_module(gx_t)
        pre = gx_t + state[0] @ w_hh_t
        if self.nonlinearity == "tanh":
            h_next = xp.tanh(pre, out=pre)
        else:
            h_next = xp.maximum(pre, 0, out=pre)
        return (h_next,), h_next

    def _cell_backward(self, d_state, h_next, w_hh):
        if self.nonlinearity == "tanh":
            d_pre = d_state[0] * (1 - h_next * h_next)
        else:
            d_pre = d_state[0] * (h_next > 0)
        return d_pre, d_pre, (d_pre @ w_hh,)

    def extra_repr(self):
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(_RNNBase):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), gates i, f, g, o.

    ``i, f, g, o = sig, sig, tanh, sig of (W_ih x + b_ih + W_hh h + b_hh)``,
    ``c' = f * c + i * g``, ``h' = o * tanh(c')``. State: (h, c); forward returns
    ``(output, (h_n, c_n))``. Cell cache: the gate activations (N, 4H), c and tanh(c').
    Gradient: ``dc = dc' + dh' * o * (1 - tanh(c')^2)``; ``di, df, dg, do = dc * g,
    dc * c, dc * i, dh' * tanh(c')``, times each gate's derivative; ``dc_prev = dc * f``.
    """

    num_gates = 4
    state_size = 2

    def _cell_forward(self, gx_t, state, w_hh_t, b_hh):
        xp = get_array_module(gx_t)
        h, c = state
        hidden = self.hidden_size
        gates = gx_t + h @ w_hh_t
        g_rows = gates[:, 2 * hidden:3 * hidden]
        g = xp.tanh(g_rows)
        acts = _sigmoid(gates)  # i, f, o; the g rows are overwritten next
        acts[:, 2 * hidden:3 * hidden] = g
        i, f, o = acts[:, :hidden], acts[:, hidden:2 * hidden], acts[:, 3 * hidden:]
        c_next = f * c
        c_next += i * g
        tanh_c = xp.tanh(c_next)
        return (o * tanh_c, c_next), (acts, c, tanh_c)

    def _cell_backward(self, d_state, cache, w_hh):
        xp = get_array_module(cache[0])
        dh, dc_next = d_state
        acts, c, tanh_c = cache
        hidden = self.hidden_size
        i, f, g, o = (acts[:, k * hidden:(k + 1) * hidden] for k in range(4))
        dc = dc_next + dh * o * (1 - tanh_c * tanh_c)
        d_acts = xp.concatenate([dc * g, dc * c, dc * i, dh * tanh_c], axis=1)
        derivative = acts * (1 - acts)  # sigmoid' = s (1 - s); the g rows: tanh' = 1 - g^2
        derivative[:, 2 * hidden:3 * hidden] = 1 - g * g
        d_gates = d_acts * derivative
        return d_gates, d_gates, (d_gates @ w_hh, dc * f)


class GRU(_RNNBase):
    """Gated recurrent unit (Cho et al. 2014), PyTorch's variant, gates r, z, n.

    ``r, z = sig(gx_r + gh_r), sig(gx_z + gh_z)``, ``n = tanh(gx_n + r * gh_n)``,
    ``h' = (1 - z) * n + z * h`` with gx = W_ih x + b_ih, gh = W_hh h + b_hh (b_hh is
    not folded into gx: r multiplies gh_n with its bias). Cell cache: h, (r, z), n, gh_n.
    Gradient: ``dn = dh' (1 - z)``, ``dz = dh' (h - n)``, ``dh = dh' z + dgh @ W_hh``,
    where dgh equals dgx except in the n rows: ``dgh_n = r * dgx_n``.
    """

    num_gates = 3
    fold_hidden_bias = False

    def _cell_forward(self, gx_t, state, w_hh_t, b_hh):
        xp = get_array_module(gx_t)
        h = state[0]
        hidden = self.hidden_size
        gh = h @ w_hh_t
        if b_hh is not None:
            gh += b_hh
        rz = _sigmoid(gx_t[:, :2 * hidden] + gh[:, :2 * hidden])
        r, z = rz[:, :hidden], rz[:, hidden:]
        gh_n = gh[:, 2 * hidden:]
        n = xp.tanh(gx_t[:, 2 * hidden:] + r * gh_n)
        h_next = n + z * (h - n)  # (1 - z) * n + z * h
        return (h_next,), (h, rz, n, gh_n)

    def _cell_backward(self, d_state, cache, w_hh):
        xp = get_array_module(cache[0])
        dh_next = d_state[0]
        h, rz, n, gh_n = cache
        hidden = self.hidden_size
        r, z = rz[:, :hidden], rz[:, hidden:]
        dn_pre = dh_next * (1 - z) * (1 - n * n)
        d_rz = xp.concatenate([dn_pre * gh_n, dh_next * (h - n)], axis=1) * rz * (1 - rz)
        d_gx = xp.concatenate([d_rz, dn_pre], axis=1)
        d_gh = xp.concatenate([d_rz, dn_pre * r], axis=1)
        return d_gx, d_gh, (dh_next * z + d_gh @ w_hh,)


__all__ = ["GRU", "LSTM", "RNN"]
