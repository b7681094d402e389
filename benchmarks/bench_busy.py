"""Two trainings at once on one machine: how much of its solo speed each one keeps.

Trains the MNIST MLP (784-512-512-10, batch 100, SGD) on random data for a fixed
number of steps, first alone, then two copies at the same time, under three thread
policies:

- ``auto``: minidl's default (``minidl.threads.adapt_to_load`` at every step: every core
  on a quiet machine, fewer when other processes are runnable);
- ``all cores``: ``MINIDL_NUM_THREADS=<cores>``, what minidl did before (BLAS and copy
  threads on every core whatever the load);
- ``one thread``: ``MINIDL_NUM_THREADS=1``.

Prints median step times and, per policy, each concurrent run's speed as a share of
the solo speed under the *best* solo policy (the goal: >= 40 %, and ``auto`` as fast
as the best policy alone). Run it on an otherwise quiet machine:

    python benchmarks/bench_busy.py --steps 400
"""
import argparse
import json
import os
import subprocess
import sys
import time


def child(steps):
    """One training run; prints a JSON line with its median step time."""
    import numpy as np

    import minidl
    from minidl import losses, models, optim, threads

    minidl.seed(0)
    model = models.mlp([784, 512, 512, 10])
    model.set_needs_input_grad(False)
    loss_fn = losses.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01)
    draw = np.random.default_rng(0)
    x = draw.random((100 * 50, 784), dtype=np.float32)
    y = draw.integers(0, 10, size=100 * 50)
    times, used = [], []
    for step in range(steps):
        used.append(threads.adapt_to_load())
        start = time.perf_counter()
        batch = slice((step % 50) * 100, (step % 50 + 1) * 100)
        loss_fn(model(x[batch]), y[batch])
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"median_ms": 1000 * times[len(times) // 2],
                      "threads": sorted(set(used))}))


def run(policy_env, copies, steps):
    env = dict(os.environ, **policy_env)
    procs = [subprocess.Popen([sys.executable, __file__, "--child", "--steps", str(steps)],
                              env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(copies)]
    return [json.loads(proc.communicate()[0].strip().splitlines()[-1]) for proc in procs]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.steps)
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    policies = {"auto": {}, "all cores": {"MINIDL_NUM_THREADS": str(cores)},
                "one thread": {"MINIDL_NUM_THREADS": "1"}}
    solo = {name: run(env, 1, args.steps)[0] for name, env in policies.items()}
    best_solo = min(result["median_ms"] for result in solo.values())
    print(f"{cores} cores, {args.steps} steps per run; MLP 784-512-512-10, batch 100")
    print(f"{'policy':<12}{'solo ms':>9}{'threads':>9}   {'two at once: ms (share of best solo speed)'}")
    for name, env in policies.items():
        pair = run(env, 2, args.steps)
        shares = ", ".join(f"{r['median_ms']:.2f} ({best_solo / r['median_ms']:.0%}, "
                           f"threads {r['threads']})" for r in pair)
        print(f"{name:<12}{solo[name]['median_ms']:>9.2f}{str(solo[name]['threads']):>9}   {shares}")


if __name__ == "__main__":
    main()
