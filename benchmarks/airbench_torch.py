"""PyTorch reference of ``examples/cifar10_fast.py --recipe airbench``, on the same data.

A diagnostic, not part of minidl: the same airbench94-style recipe as a separate
PyTorch port (same hyper-parameters, same data loader; ``torch.optim.SGD`` on a loss
*summed* over the batch in airbench's own units, so minidl's translation to a mean loss
is checked too). If it reaches the same accuracy as minidl's run on the same data, the
gap to a published number lies in the data or in the recipe as both ports read it, not
in minidl's layers; if it reaches more, minidl has a bug to find. (Running Keller
Jordan's own airbench94.py on the data would also check the reading of the recipe.)

Float32 with TF32 off unless ``--tf32``. The printed training time excludes the
per-epoch test evaluations, as ``cifar10_fast.py``'s does, but includes PyTorch's
first-use set-up (no warm-up run).

    python benchmarks/airbench_torch.py --data-dir DIR [--epochs 10,20] [--seeds 0,1]
                                        [--widths 64,256,256] [--tf32]

Each (epochs, seed) pair is one run; the last line gives the median per epoch count.

Needs PyTorch (a GPU makes it take seconds; on this 2-core CPU it takes ~45 min).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # an optional reference: say so rather than fail with a traceback
    sys.exit("benchmarks/airbench_torch.py needs PyTorch (pip install torch); minidl does not")

from minidl import data  # noqa: E402

HP = dict(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153, bias_scaler=64.0,
          label_smoothing=0.2, whiten_bias_epochs=3, warmup_fraction=0.23, start_factor=0.2,
          end_factor=0.07, translate=2, lookahead_every=5, whitening_images=5000)


class BatchNormNoScale(nn.BatchNorm2d):
    """BatchNorm with its scale frozen at 1 (PyTorch momentum 0.4, eps 1e-12)."""

    def __init__(self, channels):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


def conv3x3(in_channels, out_channels):
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        identity = min(in_channels, out_channels)
        nn.init.dirac_(conv.weight[:identity, :identity])
        conv.weight[:identity, identity:] = 0
    return conv


def conv_group(in_channels, out_channels):
    return nn.Sequential(conv3x3(in_channels, out_channels), nn.MaxPool2d(2),
                         BatchNormNoScale(out_channels), nn.GELU(),
                         conv3x3(out_channels, out_channels), BatchNormNoScale(out_channels),
                         nn.GELU())


class Net(nn.Module):
    def __init__(self, widths=(64, 256, 256)):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        nn.init.zeros_(self.whiten.bias)
        self.body = nn.Sequential(nn.GELU(), conv_group(24, widths[0]),
                                  conv_group(widths[0], widths[1]),
                                  conv_group(widths[1], widths[2]))
        self.fc = nn.Linear(widths[2], 10, bias=False)

    def forward(self, x):
        x = self.body(self.whiten(x))
        return self.fc(torch.amax(x, dim=(2, 3))) / 9


def init_whitening(conv, images, eps=5e-4):
    patches = F.unfold(images.double(), 2).transpose(1, 2).reshape(-1, 12)  # (C, kh, kw) order
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)).T.flip(0)  # largest first
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]).reshape(24, 3, 2, 2).float())


def translate_reflect(x, max_shift, generator):
    padded = F.pad(x, (max_shift,) * 4, mode="reflect")
    n, size = len(x), x.shape[-1]
    shift = torch.randint(0, 2 * max_shift + 1, (n, 2), device=x.device, generator=generator)
    out = torch.empty_like(x)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            chosen = (shift[:, 0] == dy) & (shift[:, 1] == dx)
            out[chosen] = padded[chosen, :, dy:dy + size, dx:dx + size]
    return out


def tta_logits(model, x):
    def both(v):
        return 0.5 * model(v) + 0.5 * model(v.flip(-1))
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return 0.5 * both(x) + 0.25 * both(padded[:, :, :-2, :-2]) + 0.25 * both(padded[:, :, 2:, 2:])


@torch.no_grad()
def accuracy(model, x, y, tta):
    model.eval()
    hits = sum(int(((tta_logits(model, xb) if tta else model(xb)).argmax(1) == yb).sum())
               for xb, yb in zip(x.split(2000), y.split(2000)))
    model.train()
    return hits / len(y)


def run(seed, epochs, device, train, test, widths=(64, 256, 256)):
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = train, test
    batch_size, hp = HP["batch_size"], HP
    model = Net(widths).to(device)
    init_whitening(model.whiten, x_train[:hp["whitening_images"]])
    model.whiten.weight.requires_grad_(False)

    kilostep = 1024 * (1 + 1 / (1 - hp["momentum"]))
    lr = hp["lr"] / kilostep
    decay = hp["weight_decay"] * batch_size / kilostep
    norm_biases = [p for name, p in model.named_parameters() if p.requires_grad and p.ndim == 1
                   and name != "whiten.bias"]
    others = [p for name, p in model.named_parameters() if p.requires_grad
              and all(p is not q for q in norm_biases)]
    bias_lr = lr * hp["bias_scaler"]
    optimizer = torch.optim.SGD([dict(params=others, lr=lr, weight_decay=decay / lr),
                                 dict(params=norm_biases, lr=bias_lr, weight_decay=decay / bias_lr)],
                                momentum=hp["momentum"], nesterov=True)
    steps_per_epoch = len(x_train) // batch_size
    total = epochs * steps_per_epoch
    warmup = int(hp["warmup_fraction"] * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: float(np.interp(
        s, [0, warmup, total], [hp["start_factor"], 1.0, hp["end_factor"]])))
    slow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    flip_even = torch.rand(len(x_train), device=device, generator=generator) < 0.5

    if device == "cuda":
        torch.cuda.synchronize()
    seconds, step = 0.0, 0
    for epoch in range(epochs):
        started = time.perf_counter()
        model.whiten.bias.requires_grad_(epoch < hp["whiten_bias_epochs"])
        flip = flip_even if epoch % 2 == 0 else ~flip_even
        images = torch.where(flip[:, None, None, None], x_train.flip(-1), x_train)
        images = translate_reflect(images, hp["translate"], generator)
        order = torch.randperm(len(x_train), device=device, generator=generator)
        for i in range(steps_per_epoch):
            index = order[i * batch_size:(i + 1) * batch_size]
            loss = F.cross_entropy(model(images[index]), y_train[index],
                                   label_smoothing=hp["label_smoothing"], reduction="sum")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step % hp["lookahead_every"] == 0:
                weight = 0.95 ** 5 * (step / total) ** 3
                with torch.no_grad():
                    for name, value in model.state_dict().items():
                        if name in slow:
                            slow[name].lerp_(value, 1 - weight)
                            value.copy_(slow[name])
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        print(f"  seed {seed} epoch {epoch + 1}: test "
              f"{100 * accuracy(model, x_test, y_test, False):.2f} % ({seconds:.1f} s)", flush=True)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name in slow:
                value.copy_(slow[name])
    plain, tta = accuracy(model, x_test, y_test, False), accuracy(model, x_test, y_test, True)
    print(f"seed {seed}: {epochs} epochs in {seconds:.1f} s; test {100 * plain:.2f} %, "
          f"with 6-view TTA {100 * tta:.2f} %", flush=True)
    return tta


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", default="10", help="comma-separated epoch counts")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--widths", default="64,256,256", help="the three block widths")
    parser.add_argument("--tf32", action="store_true", help="let convolutions and matmuls use TF32")
    args = parser.parse_args(argv)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) <= 0:
        parser.error(f"--widths must be three positive integers, got {args.widths!r}")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    (x_train, y_train), (x_test, y_test) = data.load_cifar10(root=args.data_dir)
    mean = torch.tensor(data.CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.CIFAR10_STD, device=device).view(1, 3, 1, 1)

    def prepare(x, y):
        x = torch.as_tensor(x, device=device).float() / 255
        return (x - mean) / std, torch.as_tensor(y, device=device).long()

    train, test = prepare(x_train, y_train), prepare(x_test, y_test)
    print(f"torch {torch.__version__} on {device}"
          f" ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}), "
          f"TF32 {'on' if args.tf32 else 'off'}")
    for epochs in (int(e) for e in args.epochs.split(",")):
        results = [run(int(s), epochs, device, train, test, widths) for s in args.seeds.split(",")]
        print(f"widths {widths}, {epochs} epochs: median TTA accuracy over {len(results)} "
              f"seed(s) {100 * float(np.median(results)):.2f} %", flush=True)


if __name__ == "__main__":
    main()
