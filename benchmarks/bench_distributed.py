"""Data-parallel benchmark: all-reduce cost between processes, and training-step scaling.

    python benchmarks/bench_distributed.py                # everything (~1-2 min on 2 cores)
    python benchmarks/bench_distributed.py --part allreduce --max-mb 16
    python benchmarks/bench_distributed.py --part steps --networks mlp,cnn
    python benchmarks/bench_distributed.py --part model   # the cost model's predictions only

It launches itself under ``mpiexec -n 2`` (and ``-n 1`` for the baseline), one BLAS
thread per rank (OPENBLAS_NUM_THREADS=1), and prints:

1. **allreduce**: median time of an in-place float32 all-reduce vs message size, for
   mpi4py's ``Allreduce`` and minidl's ``all_reduce`` on top of it; bus bandwidth as
   NCCL's tests define it, ``busbw = 2 (p-1)/p * S / t`` (what each link carries in a
   ring), and the fitted ring-model constants alpha (per-step latency) and B.
2. **steps**: median ms per training step (forward, cross-entropy, backward, SGD with
   momentum) of the MNIST MLP (784-512-512-10) and optionally the MNIST CNN, ``--batch``
   samples *per rank*: 1 rank alone; 2 ranks each on its own (no gradient exchange: the
   cost of sharing the machine); 2 ranks with DataParallel, overlap on and off. Weak
   scaling efficiency = t(1 rank) / t(2 ranks, DataParallel).
3. **model**: the ring all-reduce cost model, ``T = 2 (p-1)/p * S/B + 2 (p-1) alpha``,
   applied to the README's single-GPU step times: the efficiency of 8 GPUs on NVLink and
   of 2 nodes x 8 GPUs on 100 Gb/s, without and with overlap (docs/distributed.md).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="allreduce,steps,model",
                        help="comma-separated subset of: allreduce, steps, model")
    parser.add_argument("--max-mb", type=float, default=64, help="largest all-reduce message")
    parser.add_argument("--networks", default="mlp", help="comma-separated: mlp, cnn")
    parser.add_argument("--batch", type=int, default=64, help="samples per rank and step")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the modes (noise)")
    parser.add_argument("--bucket-mb", type=float, default=1.0,
                        help="DataParallel bucket size in the steps part (MLP: 2.7 MB of "
                             "gradients, so 1 MB gives 3 buckets to overlap)")
    parser.add_argument("--workload", action="append", default=[], metavar="NAME:PARAMS:MS",
                        help="another row of the cost model: name, parameter count and "
                             "single-GPU ms per step (repeatable)")
    parser.add_argument("--model-bucket-mb", type=float, nargs="+", default=[25.0, 5.0],
                        help="bucket sizes for the cost model's overlap column")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # set when launched by mpiexec
    args = parser.parse_args(argv)
    args.part = [p.strip() for p in args.part.split(",") if p.strip()]
    args.networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    unknown = set(args.part) - {"allreduce", "steps", "model"}
    if unknown or set(args.networks) - {"mlp", "cnn"}:
        parser.error(f"unknown --part or --networks entries: {sorted(unknown)} {args.networks}")
    return args


# --------------------------------------------------------------------------- launching
def launch(ranks, worker, args):
    """Run this file as ``worker`` on ``ranks`` processes; rank 0's JSON result."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MINIDL_NUM_THREADS="1")
    command = ["mpiexec", "-n", str(ranks), sys.executable, os.path.abspath(__file__),
               "--worker", worker] + [a for a in sys.argv[1:] if a]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):])


def emit(result):
    from minidl import distributed as dist
    if dist.rank() == 0:
        print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- 1. all-reduce
def allreduce_worker(args):
    from mpi4py import MPI

    from minidl import distributed as dist
    dist.init("mpi")
    comm, p = MPI.COMM_WORLD, dist.world_size()
    sizes = [4 * 4**k for k in range(20) if 4 * 4**k <= args.max_mb * 2**20]
    rows = []
    for size in sizes:
        buffer = np.ones(size // 4, dtype=np.float32)
        repeats = max(5, min(1000, int(2e8 / max(size, 1) ** 1.0)))
        times = {"mpi4py": [], "minidl": []}
        for round_ in range(4):
            # Alternate, and swap who goes first, so that load from other programs hits both.
            for name in (list(times) if round_ % 2 else list(times)[::-1]):
                comm.Barrier()
                start = time.perf_counter()
                for _ in range(repeats):
                    if name == "mpi4py":
                        comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
                    else:
                        dist.all_reduce(buffer)
                elapsed = (time.perf_counter() - start) / repeats
                times[name].append(comm.allreduce(elapsed, op=MPI.MAX))
        row = {"bytes": size}
        for name, samples in times.items():
            t = float(np.median(samples))
            row[name] = {"seconds": t, "busbw": 2 * (p - 1) / p * size / t}
        rows.append(row)
    emit({"ranks": p, "rows": rows})


def fit_ring_model(rows, p):
    """Least-squares alpha, B of t = 2(p-1) alpha + 2(p-1)/p S / B over the rows."""
    sizes = np.array([row["bytes"] for row in rows], dtype=float)
    times = np.array([row["mpi4py"]["seconds"] for row in rows])
    design = np.stack([np.full_like(sizes, 2 * (p - 1)), 2 * (p - 1) / p * sizes], axis=1)
    # Relative errors: weight each row by 1/t so that small messages count.
    (alpha, inverse_bandwidth), *_ = np.linalg.lstsq(design / times[:, None], np.ones_like(times),
                                                     rcond=None)
    return alpha, 1.0 / inverse_bandwidth


def print_allreduce(result):
    p = result["ranks"]
    print(f"\n1. all-reduce between {p} processes (float32, in place; median of 4 rounds)")
    print(f"{'size':>10} {'mpi4py us':>11} {'busbw GB/s':>11} {'minidl us':>11} "
          f"{'busbw GB/s':>11}")
    for row in result["rows"]:
        print(f"{human(row['bytes']):>10} {row['mpi4py']['seconds'] * 1e6:>11.1f} "
              f"{row['mpi4py']['busbw'] / 1e9:>11.2f} {row['minidl']['seconds'] * 1e6:>11.1f} "
              f"{row['minidl']['busbw'] / 1e9:>11.2f}")
    alpha, bandwidth = fit_ring_model(result["rows"], p)
    print(f"ring model fit (mpi4py): alpha = {alpha * 1e6:.1f} us per step, "
          f"B = {bandwidth / 1e9:.2f} GB/s")
    return alpha, bandwidth


def human(size):
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


# --------------------------------------------------------------------------- 2. steps
def steps_worker(args):
    import minidl
    from minidl import distributed as dist
    from minidl import models
    from minidl.losses import CrossEntropyLoss
    from minidl.optim import SGD
    dist.init("mpi")
    p = dist.world_size()
    modes = ["alone"] if p == 1 else ["independent", "overlap", "no-overlap"]
    result = {"ranks": p}
    for network in args.networks:
        minidl.seed(0)
        shape = (784,) if network == "mlp" else (1, 28, 28)
        rng = np.random.default_rng(dist.rank())
        x = rng.standard_normal((args.batch,) + shape).astype(np.float32)
        y = rng.integers(0, 10, args.batch)
        runs = {}
        for mode in modes:
            model = models.mlp([784, 512, 512, 10]) if network == "mlp" else models.mnist_cnn()
            model.set_needs_input_grad(False)
            if mode in ("overlap", "no-overlap"):
                model = dist.DataParallel(model, bucket_mb=args.bucket_mb,
                                          overlap=mode == "overlap")
            runs[mode] = (model, SGD(model.parameters(), lr=0.01, momentum=0.9))
        exposed = {mode: [] for mode in ("overlap", "no-overlap") if mode in runs}
        for mode, samples in exposed.items():
            time_finish(runs[mode][0]._buckets, samples)
        loss_fn = CrossEntropyLoss()
        times = {mode: [] for mode in modes}
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for mode in modes:
                model, optimizer = runs[mode]
                dist.barrier()
                for _ in range(args.steps if round_ else 2):
                    start = time.perf_counter()
                    optimizer.zero_grad()
                    loss_fn(model(x), y)
                    model.backward(loss_fn.backward())
                    optimizer.step()
                    if round_:
                        times[mode].append(time.perf_counter() - start)
        # Every rank's median; the slowest rank sets the pace of a synchronous step.
        medians = {mode: float(np.median(samples)) for mode, samples in times.items()}
        gathered = dist.all_gather_text(json.dumps(medians))
        result[network] = {mode: max(json.loads(text)[mode] for text in gathered)
                           for mode in modes}
        for mode, samples in exposed.items():  # rank 0's; the first 2 steps were warm-up
            result[network][f"exposed {mode}"] = float(np.median(samples[2:]))
        if "overlap" in runs:
            model = runs["overlap"][0]
            result[network]["buckets"] = len(model._buckets.buckets)
            result[network]["gradient_bytes"] = sum(p.grad.nbytes for p in model.parameters())
    emit(result)


def time_finish(buckets, samples):
    """Record how long each ``DataParallel`` step waits for its all-reduces after the
    backward pass: the communication that overlap did not hide."""
    finish = buckets.finish

    def timed_finish():
        start = time.perf_counter()
        finish()
        samples.append(time.perf_counter() - start)

    buckets.finish = timed_finish


def print_steps(one, two, args, fit=None):
    print(f"\n2. training step, batch {args.batch} per rank, 1 BLAS thread per rank, "
          f"median ms (slowest rank), bucket_mb={args.bucket_mb:g}")
    print(f"{'network':<8} {'1 rank':>8} {'2 indep.':>9} {'2 DP ovl':>9} {'2 DP no-ovl':>12} "
          f"{'eff. ovl':>9} {'eff. no-ovl':>12} {'buckets':>8}")
    for network in args.networks:
        t1, t2 = one[network]["alone"], two[network]
        print(f"{network:<8} {t1 * 1e3:>8.2f} {t2['independent'] * 1e3:>9.2f} "
              f"{t2['overlap'] * 1e3:>9.2f} {t2['no-overlap'] * 1e3:>12.2f} "
              f"{t1 / t2['overlap']:>9.1%} {t1 / t2['no-overlap']:>12.1%} {t2['buckets']:>8}")
    print("eff. = t(1 rank) / t(2 ranks with DataParallel): weak scaling, per-rank batch fixed; "
          "'2 indep.' = both ranks training alone (machine contention, no communication)")
    if fit is not None:
        alpha, bandwidth = fit
        for network in args.networks:
            t2 = two[network]
            predicted = ring_allreduce_seconds(t2["gradient_bytes"], 2, bandwidth, alpha)
            print(f"{network}: ring model with the fitted alpha, B predicts "
                  f"{predicted * 1e3:.2f} ms for its {t2['gradient_bytes'] / 2**20:.2f} MB of "
                  f"gradients; measured DP no-overlap - independent = "
                  f"{(t2['no-overlap'] - t2['independent']) * 1e3:.2f} ms, "
                  f"overlap - independent = {(t2['overlap'] - t2['independent']) * 1e3:.2f} ms")
    for network in args.networks:
        t2 = two[network]
        print(f"{network}: waiting for the all-reduces after backward (rank 0, median): "
              f"overlap {t2['exposed overlap'] * 1e3:.2f} ms, "
              f"no overlap {t2['exposed no-overlap'] * 1e3:.2f} ms")


# --------------------------------------------------------------------------- 3. cost model
#: Interconnects: (name, GPUs, bus bandwidth B in bytes/s per GPU, latency alpha per step).
#: NVLink: H100/H200 NVLink 4 moves 450 GB/s per direction; NCCL's all-reduce reaches
#: ~360-480 GB/s bus bandwidth on 8 GPUs; 360 GB/s and 5 us are the model's inputs.
#: 2 x 8 over 100 Gb/s: one 12.5 GB/s NIC per node carries every ring crossing between
#: the nodes, so it bounds B; 20 us per step over the network.
LINKS = [("8 GPUs, NVLink (360 GB/s, 5 us)", 8, 360e9, 5e-6),
         ("2x8 GPUs, 100 Gb/s (12.5 GB/s, 20 us)", 16, 12.5e9, 20e-6)]
#: (name, parameters, single-GPU ms per step or 0 when not measured): README's H200
#: table; the GPT is nanoGPT's shakespeare_char GPU configuration (models.gpt(65, 256,
#: 6, 6, 384): 10,770,816 parameters), whose GPU step has not been timed yet. More rows
#: with --workload NAME:PARAMS:MS.
WORKLOADS = [("ResNet-18 CIFAR b128, minidl H200", 11_173_962, 42.1),
             ("ResNet-18 CIFAR b128, PyTorch TF32 H200", 11_173_962, 9.51),
             ("GPT 6x384 (shakespeare_char GPU), not timed", 10_770_816, 0.0)]


def ring_allreduce_seconds(nbytes, p, bandwidth, alpha):
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * alpha


def resnet18_bucket_bytes(bucket_mb):
    """Bytes of the buckets DataParallel makes for ResNet-18; the last one holds the
    first layers, is ready only when backward ends, and so is never overlapped."""
    from minidl import distributed as dist
    from minidl import models
    buckets = dist._GradientBuckets(models.resnet18(num_classes=10), int(bucket_mb * 2**20))
    return [sum(p.data.nbytes for p in bucket) for bucket in buckets.buckets]


def print_model(workloads, bucket_mb, backward_share=2 / 3):
    bucket_bytes = resnet18_bucket_bytes(bucket_mb)
    print("\n3. cost model: ring all-reduce of the float32 gradients, "
          "T = 2(p-1)/p * S/B + 2(p-1) alpha")
    print(f"ResNet-18 buckets at bucket_mb={bucket_mb:g}: "
          f"{[round(b / 2**20, 1) for b in bucket_bytes]} MB; the last one bounds what "
          f"overlap hides; backward taken as {backward_share:.0%} of a step")
    print(f"{'workload':<44} {'interconnect':<38} {'S MB':>6} {'T ms':>7} {'step ms':>8} "
          f"{'eff. serial':>11} {'eff. overlap':>12} {'90% serial needs':>16}")
    for name, params, step_ms in workloads:
        nbytes = 4 * params
        for link, p, bandwidth, alpha in LINKS:
            t = ring_allreduce_seconds(nbytes, p, bandwidth, alpha) * 1e3
            serial = f"{step_ms / (step_ms + t):.1%}" if step_ms else "-"
            # With overlap, what is left after the backward pass stays exposed, and at
            # least the last bucket (ready only when backward ends): a lower bound.
            last = ring_allreduce_seconds(min(bucket_bytes[-1], nbytes), p, bandwidth, alpha) * 1e3
            exposed = max(t - backward_share * step_ms, last)
            overlapped = f"{step_ms / (step_ms + exposed):.1%}" if step_ms else "-"
            step_text = f"{step_ms:>8.2f}" if step_ms else f"{'?':>8}"
            print(f"{name:<44} {link:<38} {nbytes / 2**20:>6.1f} {t:>7.2f} {step_text} "
                  f"{serial:>11} {overlapped:>12} {f'step >= {9 * t:.1f} ms':>16}")


# --------------------------------------------------------------------------- main
def main():
    args = parse_args()
    if args.worker == "allreduce":
        return allreduce_worker(args)
    if args.worker == "steps":
        return steps_worker(args)
    print(f"bench_distributed: numpy {np.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    fit = None
    if "allreduce" in args.part:
        fit = print_allreduce(launch(2, "allreduce", args))
    if "steps" in args.part:
        print_steps(launch(1, "steps", args), launch(2, "steps", args), args, fit)
    if "model" in args.part:
        extra = [(name, int(params), float(ms)) for name, params, ms in
                 (w.rsplit(":", 2) for w in args.workload)]
        for bucket_mb in args.model_bucket_mb:
            print_model(WORKLOADS + extra, bucket_mb)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
