"""CPU training-step benchmark: minidl (NumPy) against the same network in PyTorch.

For each network, one full training step (forward, CrossEntropyLoss, backward, SGD
update with momentum 0.9) is timed for minidl and for its PyTorch twin, alternating
step by step in this one process so that load from other programs hits both alike.
Printed per network: median milliseconds per step, the ratio minidl / PyTorch against
the target of issue 6, and the share of minidl's step spent inside matrix products
(GEMM), measured by sampling the main thread's current line (see ``StackSampler``).

    python benchmarks/bench_cpu.py                  # every network
    python benchmarks/bench_cpu.py --only cnn --steps 5 --warmup 1
    python benchmarks/bench_cpu.py --threads 2      # BLAS, copy and torch threads

Networks: (a) MLP 784-512-512-10 at batch 100, (b) the MNIST CNN (570,436 parameters)
at batch 64, (c) ResNet-18 for CIFAR-10 (3x3 stem, 11,173,962 parameters) at batch 128,
(d) a 2-layer LSTM (hidden 128, char-rnn sized: 65 inputs, 64 time steps, batch 32)
classifying each sequence from its last hidden state (the time is the LSTM's BPTT),
(e) nanoGPT's Shakespeare-char CPU model (4 layers, 4 heads, 128 wide, block 64, batch 12,
tanh GELU, 809,856 parameters) predicting the next character at every position.
PyTorch is optional: without it, minidl's times are printed and the reference is marked
missing. Inputs are random (timing does not depend on the values).
"""
import argparse
import os
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per network")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--only", default="mlp,cnn,resnet18,lstm,gpt",
                        help="comma-separated subset of: mlp, cnn, resnet18, lstm, gpt")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for BLAS, minidl's copies and PyTorch (default: all cores)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps and --threads must be positive, --warmup non-negative")
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(NETWORKS)
    if unknown:
        parser.error(f"--only: unknown network(s) {sorted(unknown)}; choose from {list(NETWORKS)}")
    return args


# name: (batch, input shape without batch, target ratio, description)
NETWORKS = {
    "mlp": (100, (784,), 1.0, "MLP 784-512-512-10"),
    "cnn": (64, (1, 28, 28), 1.6, "MNIST CNN (570k)"),
    "resnet18": (128, (3, 32, 32), 2.0, "ResNet-18 CIFAR"),
    "lstm": (32, (64, 65), 2.0, "LSTM 2x128, 64 steps"),
    # nanoGPT's Shakespeare-char CPU model (tanh GELU, as examples/char_gpt.py); inputs and
    # targets are (batch, block) character indices.
    "gpt": (12, (64,), 1.5, "GPT 4x4x128, block 64"),
}


# --------------------------------------------------------------------------- the networks
def lstm_classifier():
    """LSTM(65, 128, num_layers=2, batch_first) -> last step's h -> Linear(128, 10)."""
    import numpy as np

    from minidl import Module, layers

    class LSTMClassifier(Module):
        def __init__(self):
            super().__init__()
            self.lstm = layers.LSTM(65, 128, num_layers=2, batch_first=True)
            self.head = layers.Linear(128, 10)

        def set_needs_input_grad(self, needed):
            super().set_needs_input_grad(needed)
            self.lstm.set_needs_input_grad(needed)
            return self

        def forward(self, x):
            output = self.lstm(x)[0]
            self.save_for_backward(output.shape)
            return self.head(output[:, -1])

        def backward(self, dy):
            output_shape = self.saved_for_backward(dy)
            d_output = np.zeros(output_shape, dtype=dy.dtype)
            d_output[:, -1] = self.head.backward(dy)
            return self.lstm.backward(d_output)

    return LSTMClassifier()


def minidl_network(name):
    """The networks the examples train, from the model zoo."""
    from minidl import models
    if name == "lstm":
        return lstm_classifier()
    if name == "gpt":
        return models.gpt(65, 64, n_layer=4, n_head=4, n_embd=128, gelu_approximate="tanh")
    if name == "mlp":
        return models.mlp([784, 512, 512, 10])
    if name == "cnn":
        return models.mnist_cnn()
    return models.resnet18(num_classes=10)


def torch_network(name, torch):
    nn = torch.nn
    if name == "gpt":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from char_gpt_torch import GPT
        return GPT(65, 64, n_layer=4, n_head=4, n_embd=128, gelu="tanh")
    if name == "lstm":
        class LSTMClassifier(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(65, 128, num_layers=2, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                return self.head(self.lstm(x)[0][:, -1])
        return LSTMClassifier()
    if name == "mlp":
        return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 18, 3, padding=1), nn.ReLU(),
            nn.Conv2d(18, 36, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(36, 72, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(72, 72, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(648, 750), nn.ReLU(), nn.Linear(750, 10))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))

    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- GEMM share
class StackSampler:
    """Sample which source line the main thread is executing, every ``interval`` seconds.

    NumPy releases the GIL inside matrix products and large copies, so a sampling thread
    sees the Python line that launched the work; the fraction of samples on a line with
    ``@`` or ``matmul`` estimates the share of time in GEMM. cProfile cannot do this:
    ``np.matmul`` is a ufunc and ``@`` an operator, neither of which it records.
    """

    GEMM_MARKERS = ("@", "matmul", ".dot(")

    def __init__(self, interval=0.0005):
        import threading
        self.interval = interval
        self.samples = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._main_id = threading.main_thread().ident

    def _run(self):
        while not self._stop.wait(self.interval):
            frame = sys._current_frames().get(self._main_id)
            if frame is not None:
                key = (frame.f_code.co_filename, frame.f_lineno)
                self.samples[key] = self.samples.get(key, 0) + 1

    def __enter__(self):
        self._switch = sys.getswitchinterval()
        sys.setswitchinterval(self.interval / 2)  # let the sampler in promptly
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._switch)

    def _line(self, key):
        import linecache
        return linecache.getline(*key).strip()

    def gemm_share(self):
        total = sum(self.samples.values())
        gemm = sum(count for key, count in self.samples.items()
                   if any(marker in self._line(key) for marker in self.GEMM_MARKERS))
        return gemm / total if total else float("nan"), total

    def top_lines(self, count=8):
        total = sum(self.samples.values()) or 1
        ranked = sorted(self.samples.items(), key=lambda item: -item[1])[:count]
        return [(100.0 * n / total, f"{os.path.relpath(key[0])}:{key[1]}", self._line(key))
                for key, n in ranked]


# --------------------------------------------------------------------------- timing
def minidl_step_function(model, x, y):
    from minidl import losses, optim
    loss_fn = losses.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.set_needs_input_grad(False)  # as the Trainer does; PyTorch's input needs no grad either

    def step():  # logits (..., classes) against targets (...): one row per prediction
        optimizer.zero_grad()
        logits = model(x)
        loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        model.backward(loss_fn.backward().reshape(logits.shape))
        optimizer.step()
    return step


def torch_step_function(model, x, y, torch):
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad()
        logits = model(x)
        loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        optimizer.step()
    return step


def median(values):
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def benchmark(name, args, torch):
    import time

    import numpy as np

    import minidl
    batch, shape, target, label = NETWORKS[name]
    minidl.seed(0)
    draw = np.random.default_rng(0)
    if name == "gpt":  # character indices in, the next characters as targets
        x = draw.integers(0, 65, size=(batch,) + shape)
        y = draw.integers(0, 65, size=(batch,) + shape)
    else:
        x = draw.standard_normal((batch,) + shape).astype(np.float32)
        y = draw.integers(0, 10, size=batch)
    model = minidl_network(name)
    ours = minidl_step_function(model, x, y)
    theirs = None
    if torch is not None:
        torch_model = torch_network(name, torch)
        theirs = torch_step_function(torch_model, torch.from_numpy(x),
                                     torch.from_numpy(y.astype(np.int64)), torch)
        params_torch = sum(p.numel() for p in torch_model.parameters())
        if params_torch != model.num_parameters():
            print(f"warning: {label}: parameter counts differ: minidl "
                  f"{model.num_parameters():,}, torch {params_torch:,}")
    for _ in range(args.warmup):
        ours()
        if theirs is not None:
            theirs()
    times_ours, times_theirs = [], []
    for _ in range(args.steps):  # alternate, so a burst of outside load hits both
        start = time.perf_counter()
        ours()
        times_ours.append(time.perf_counter() - start)
        if theirs is not None:
            start = time.perf_counter()
            theirs()
            times_theirs.append(time.perf_counter() - start)
    with StackSampler() as sampler:
        for _ in range(max(1, min(args.steps, 5))):
            ours()
    share, samples = sampler.gemm_share()
    row = {"label": label, "batch": batch, "params": model.num_parameters(),
           "ours": 1e3 * median(times_ours), "target": target, "gemm": share,
           "samples": samples, "top": sampler.top_lines()}
    row["theirs"] = 1e3 * median(times_theirs) if times_theirs else None
    return row


def main(argv=None):
    args = parse_args(argv)
    threads = str(args.threads)
    # Thread counts must be fixed before NumPy (OpenBLAS) and torch are imported.
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                     "MINIDL_NUM_THREADS"):
        os.environ[variable] = threads
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    torch = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(args.threads)
        except ImportError:
            print("PyTorch is not installed: printing minidl's times only (reference missing)")
    import numpy as np
    print(f"threads: {args.threads}; numpy {np.__version__}"
          + (f"; torch {torch.__version__}" if torch is not None else "")
          + f"; {args.warmup} warm-up + {args.steps} timed steps per network")
    rows = [row for row in (benchmark(name, args, torch) for name in args.only) if row]
    header = (f"{'network':<22}{'batch':>6}{'params':>12}{'minidl ms':>11}{'torch ms':>10}"
              f"{'ratio':>7}{'target':>8}{'GEMM %':>8}")
    print("\n" + header + "\n" + "-" * len(header))
    for row in rows:
        theirs = f"{row['theirs']:>10.1f}" if row["theirs"] else f"{'missing':>10}"
        ratio = f"{row['ours'] / row['theirs']:>7.2f}" if row["theirs"] else f"{'-':>7}"
        print(f"{row['label']:<22}{row['batch']:>6}{row['params']:>12,}{row['ours']:>11.1f}"
              f"{theirs}{ratio}{'<= ' + str(row['target']):>8}{100 * row['gemm']:>8.0f}")
    for row in rows:
        print(f"\nwhere minidl's time goes, {row['label']} ({row['samples']} samples):")
        for percent, where, line in row["top"]:
            print(f"  {percent:5.1f}%  {where:<42} {line[:60]}")


if __name__ == "__main__":
    main()
