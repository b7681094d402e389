"""Where a training step's time goes, layer by layer, on NumPy or CuPy.

:func:`layer_breakdown` wraps every leaf module's ``forward`` and ``backward`` so each
call is timed between two device synchronisations (``synchronize`` is a no-op on the
CPU), runs the step a few times, and returns one row per layer. The synchronisations
remove the overlap between the host queueing work and the GPU doing it, so on the GPU the
layers' sum exceeds the plain step time; the shares are what to read. What no leaf
does (a residual block's add, the loss, the optimizer) is reported as the remainder.

    python benchmarks/layer_times.py --network resnet18 [--device gpu] [--steps 5]
"""
import argparse
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_cpu import NETWORKS, minidl_network, minidl_step_function  # noqa: E402


def _timed(function, key, totals, synchronize):
    def wrapper(*args):
        synchronize()
        start = time.perf_counter()
        result = function(*args)
        synchronize()
        totals[key] += time.perf_counter() - start
        return result
    return wrapper


def layer_breakdown(model, step, synchronize, steps=5, warmup=2):
    """Time ``step()`` (one training step of ``model``) and each leaf layer inside it.

    Returns ``(step_ms, rows)``: the mean milliseconds of a whole step with the timers in
    place, and rows ``(name, type, forward_ms, backward_ms)`` per step, slowest
    first, ending with a ``("(not in a leaf layer)", ...)`` row for the remainder.
    """
    for _ in range(warmup):
        step()
    totals = defaultdict(float)
    leaves = [(name, module) for name, module in model.named_modules() if not module.children()]
    for name, module in leaves:
        for kind in ("forward", "backward"):
            # An instance attribute shadows the class's method; deleted again below.
            module.__dict__[kind] = _timed(getattr(module, kind), (name, kind), totals,
                                           synchronize)
    try:
        synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        step_seconds = (time.perf_counter() - start) / steps
    finally:
        for _, module in leaves:
            module.__dict__.pop("forward", None)
            module.__dict__.pop("backward", None)
    rows = [(name, type(module).__name__, 1e3 * totals[name, "forward"] / steps,
             1e3 * totals[name, "backward"] / steps) for name, module in leaves]
    rows.sort(key=lambda row: row[2] + row[3], reverse=True)
    in_layers = sum(row[2] + row[3] for row in rows)
    rows.append(("(not in a leaf layer)", "loss, optimizer, adds", 1e3 * step_seconds - in_layers,
                 0.0))
    return 1e3 * step_seconds, rows


def format_breakdown(step_ms, rows, limit=15):
    """The rows as a text table (the ``limit`` slowest layers, the rest summed)."""
    lines = [f"step {step_ms:.2f} ms with a synchronisation around every layer call",
             f"{'layer':<28}{'type':<22}{'forward ms':>11}{'backward ms':>12}{'share':>7}"]
    shown, rest = rows[:-1][:limit], rows[:-1][limit:]
    if rest:
        shown.append((f"({len(rest)} more layers)", "", sum(r[2] for r in rest),
                      sum(r[3] for r in rest)))
    for name, kind, forward, backward in shown + rows[-1:]:
        share = 100 * (forward + backward) / step_ms
        lines.append(f"{name:<28}{kind:<22}{forward:>11.2f}{backward:>12.2f}{share:>6.1f}%")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", choices=list(NETWORKS), default="resnet18")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--limit", type=int, default=15, help="layers to list by name")
    args = parser.parse_args(argv)
    import numpy as np

    import minidl
    batch, shape, _, label = NETWORKS[args.network]
    minidl.seed(0)
    draw = np.random.default_rng(0)
    x = draw.standard_normal((batch,) + shape).astype(np.float32)
    y = draw.integers(0, 10, size=batch)
    model = minidl_network(args.network).to(args.device)
    if args.device == "gpu":
        synchronize = minidl.backend.cupy_module().cuda.Device().synchronize
    else:
        def synchronize():
            pass
    step = minidl_step_function(model, minidl.to_device(x, args.device),
                                minidl.to_device(y, args.device))
    step_ms, rows = layer_breakdown(model, step, synchronize, args.steps)
    print(f"{label}, batch {batch}, on {args.device}")
    print(format_breakdown(step_ms, rows, args.limit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
