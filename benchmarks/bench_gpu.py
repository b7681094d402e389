"""GPU training-step benchmark: minidl on CuPy against PyTorch CUDA.

The networks and the step (forward, CrossEntropyLoss, backward, SGD with momentum 0.9)
are those of ``bench_cpu.py``: MLP 784-512-512-10 at batch 100, the MNIST CNN at
batch 64, ResNet-18 CIFAR at batch 128, all float32. Per network it prints the median
milliseconds per step after warm-up for

- minidl on CuPy (im2col kernels + cuBLAS, no host sync inside the step),
- PyTorch CUDA with TF32 off (the fair float32 comparison; cuDNN still picks its
  algorithms), and
- PyTorch CUDA with defaults plus ``cudnn.benchmark = True`` (its best),

and the ratios minidl / PyTorch against the target of issue 6 (<= 2).

    python benchmarks/bench_gpu.py --steps 20 --warmup 5 [--only cnn,resnet18] [--breakdown]

``--breakdown`` also prints minidl's time per layer (see ``layer_times.py``).

Steps are timed with a device synchronisation at both ends of each step.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bench_cpu import (NETWORKS, median, minidl_network, minidl_step_function,  # noqa: E402
                       torch_network, torch_step_function)
from layer_times import format_breakdown, layer_breakdown  # noqa: E402

TARGET = 2.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--only", default="mlp,cnn,resnet18")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print minidl's time per layer for each network")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(NETWORKS)
    if unknown or args.steps < 1 or args.warmup < 0:
        parser.error(f"bad arguments; networks are {list(NETWORKS)}")
    return args


def timed(step, synchronize, steps, warmup):
    for _ in range(warmup):
        step()
    synchronize()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * median(times)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    import minidl
    if not minidl.gpu_available():
        print("bench_gpu: no GPU (CuPy missing or sees no device); nothing to measure")
        return 1
    cupy = minidl.backend.cupy_module()
    try:
        import torch
        if not torch.cuda.is_available():
            print("PyTorch sees no CUDA device: printing minidl's times only")
            torch = None
    except ImportError:
        print("PyTorch is not installed: printing minidl's times only")
        torch = None
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"device: {device.decode() if isinstance(device, bytes) else device}; "
          f"cupy {cupy.__version__}" + (f"; torch {torch.__version__}" if torch else ""))
    rows = []
    for name in args.only:
        batch, shape, _, label = NETWORKS[name]
        minidl.seed(0)
        draw = np.random.default_rng(0)
        x = draw.standard_normal((batch,) + shape).astype(np.float32)
        y = draw.integers(0, 10, size=batch)
        model = minidl_network(name).to("gpu")
        step = minidl_step_function(model, cupy.asarray(x), cupy.asarray(y))
        ours = timed(step, cupy.cuda.Device().synchronize, args.steps, args.warmup)
        if args.breakdown:
            print(f"\n{label}, batch {batch}:")
            print(format_breakdown(*layer_breakdown(model, step, cupy.cuda.Device().synchronize)))
        theirs = {}
        if torch is not None:
            for column, tf32, benchmark in (("fp32", False, False), ("default", True, True)):
                torch.backends.cuda.matmul.allow_tf32 = tf32
                torch.backends.cudnn.allow_tf32 = tf32
                torch.backends.cudnn.benchmark = benchmark
                torch.manual_seed(0)
                net = torch_network(name, torch).cuda()
                step = torch_step_function(net, torch.from_numpy(x).cuda(),
                                           torch.from_numpy(y.astype(np.int64)).cuda(), torch)
                theirs[column] = timed(step, torch.cuda.synchronize, args.steps, args.warmup)
        rows.append((label, batch, ours, theirs))
        del model, step
        cupy.get_default_memory_pool().free_all_blocks()

    header = (f"{'network':<22}{'batch':>6}{'minidl ms':>11}{'torch fp32':>12}{'ratio':>7}"
              f"{'torch default':>15}{'ratio':>7}{'target':>8}")
    print("\n" + header + "\n" + "-" * len(header))
    for label, batch, ours, theirs in rows:
        cells = ""
        for column in ("fp32", "default"):
            if column in theirs:
                cells += f"{theirs[column]:>{12 if column == 'fp32' else 15}.2f}"
                cells += f"{ours / theirs[column]:>7.2f}"
            else:
                cells += f"{'missing':>{12 if column == 'fp32' else 15}}{'-':>7}"
        print(f"{label:<22}{batch:>6}{ours:>11.2f}{cells}{'<= ' + str(TARGET):>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
