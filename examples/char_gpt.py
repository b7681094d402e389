"""A character-level GPT on Tiny Shakespeare: nanoGPT's ``shakespeare_char`` recipe.

Model (:func:`minidl.models.gpt`) and recipe are nanoGPT's (Karpathy): AdamW, lr 1e-3,
betas (0.9, 0.99), weight decay 0.1 on the matrices only (not on biases, LayerNorms or
embeddings), 100 linear warm-up iterations then a cosine decay to 1e-4 at the last
iteration, gradient clipping at norm 1.0, the train and val losses estimated on
``--eval-iters`` random batches every ``--eval-interval`` iterations, and text sampled
at the end. One deviation by default: the MLP's GELU is the tanh approximation (GPT-2's
original form; ``--gelu none`` for nanoGPT's exact one, which costs minidl ~25 % more
time per step because NumPy has no erf). Two configurations, as in nanoGPT's README:

    python examples/char_gpt.py                 # CPU: 4 layers, 4 heads, 128 wide, block 64,
                                                # batch 12, 2000 iterations, dropout 0
    python examples/char_gpt.py --device gpu    # GPU: 6/6/384, block 256, batch 64,
                                                # 5000 iterations, dropout 0.2

nanoGPT's figures (val loss, nats per character): ~1.88 for the CPU configuration,
1.4697 for the GPU one. Every option can override its configuration value
(``--iters 500``). Writes ``char_gpt_history.json/.csv``, ``char_gpt_curves.png``,
``char_gpt_sample.txt``, ``char_gpt_attention.png`` and ``char_gpt_result.json`` into
``--out``. ``--smoke``: a tiny model on synthetic text, for the tests.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minidl  # noqa: E402
from minidl import data, losses, models, optim  # noqa: E402
from minidl.train.plotting import new_figure  # noqa: E402

CONFIGS = {
    "cpu": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, iters=2000,
                dropout=0.0, eval_interval=250, eval_iters=20),
    "gpu": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, iters=5000,
                dropout=0.2, eval_interval=250, eval_iters=200),
    "smoke": dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, iters=6,
                  dropout=0.1, eval_interval=3, eval_iters=2),
}
RECIPE = dict(lr=1e-3, min_lr=1e-4, betas=(0.9, 0.99), weight_decay=0.1, warmup_iters=100,
              grad_clip=1.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    for key in ("n_layer", "n_head", "n_embd", "block_size", "batch_size", "iters",
                "eval_interval", "eval_iters"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--lr", type=float, default=RECIPE["lr"])
    p.add_argument("--gelu", default="tanh", choices=["tanh", "none"],
                   help="GELU form: 'tanh' (default: GPT-2's approximation, a third of the "
                        "NumPy cost of the exact one) or 'none' (exact, nanoGPT's)")
    p.add_argument("--data-dir", default=None,
                   help="folder with tinyshakespeare/input.txt (default: $MINIDL_DATA or "
                        "~/.cache/minidl)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--sample-chars", type=int, default=500)
    p.add_argument("--out", default="results/char_gpt")
    p.add_argument("--smoke", action="store_true", help="tiny model, synthetic text (tests)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    config = dict(CONFIGS["smoke" if args.smoke else args.device])
    for key in config:
        if getattr(args, key, None) is not None:
            config[key] = getattr(args, key)
    return args, config


def synthetic_text(n=4000, seed=0):
    """Text with structure a tiny model can learn: repeated words in random order."""
    words = ["to be ", "or not ", "that is ", "the question\n"]
    order = np.random.default_rng(seed).integers(0, len(words), n // 8)
    return "".join(words[i] for i in order)


def learning_rate(it, iters, lr, min_lr, warmup_iters):
    """nanoGPT's get_lr: linear warm-up, then cosine decay from lr to min_lr at ``iters``."""
    if it < warmup_iters:
        return lr * (it + 1) / (warmup_iters + 1)
    if it > iters:
        return min_lr
    ratio = (it - warmup_iters) / max(iters - warmup_iters, 1)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def param_groups(model, weight_decay):
    """Weight decay on the matrices of Linear layers only; none on biases, LayerNorm
    parameters or the (tied) embeddings."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_matrix = param.data.ndim == 2 and not name.startswith(("wte.", "wpe."))
        (decay if is_matrix else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def estimate_loss(model, samplers, eval_iters, loss_fn):
    """Mean loss over ``eval_iters`` random batches of each split, in eval mode."""
    model.eval()
    result = {}
    for split, sampler in samplers.items():
        total = 0.0
        for _ in range(eval_iters):
            x, y = (minidl.to_device(a, minidl.current_device()) for a in sampler.sample())
            logits = model(x)
            total += float(loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)))
            model.drop_saved()
        result[split] = total / eval_iters
    model.train()
    return result


def write_history(rows, out):
    with open(os.path.join(out, "char_gpt_history.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(out, "char_gpt_history.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(rows, path, title):
    figure = new_figure(6, 4)
    axes = figure.subplots()
    iters = [r["iter"] for r in rows]
    axes.plot(iters, [r["train_loss"] for r in rows], "C0-o", label="train", markersize=4)
    axes.plot(iters, [r["val_loss"] for r in rows], "C1--o", label="validation", markersize=4)
    axes.set(xlabel="iteration", ylabel="loss (nats per character)", title=title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def plot_attention(model, ids, vocab, path, length=32):
    """Each head's causal attention weights, first and last block, on a val window."""
    x = minidl.to_device(ids[None, :length], minidl.current_device())
    model.eval()
    model(x)
    model.drop_saved()
    blocks = [0, model.n_layer - 1] if model.n_layer > 1 else [0]
    heads = model.h[0].attn.n_head
    figure = new_figure(2.6 * heads, 2.8 * len(blocks))
    grid = figure.subplots(len(blocks), heads, squeeze=False)
    labels = [repr(c)[1:-1] for c in vocab.decode(ids[:length])]
    for row, block in enumerate(blocks):
        weights = minidl.to_numpy(model.h[block].attn.attn_weights[0])
        for head in range(heads):
            axes = grid[row, head]
            axes.imshow(weights[head], cmap="viridis", vmin=0.0)
            axes.set_title(f"block {block}, head {head}", fontsize=8)
            axes.set_xticks(range(length), labels, fontsize=4)
            axes.set_yticks(range(length), labels, fontsize=4)
    figure.suptitle("attention weights (row: query position, column: key)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)
    model.train()


def main(argv=None):
    args, cfg = parse_args(argv)
    minidl.seed(args.seed)
    if args.device == "gpu" and not args.smoke:
        minidl.use_device("gpu")
    os.makedirs(args.out, exist_ok=True)
    text = synthetic_text() if args.smoke else data.load_tiny_shakespeare(args.data_dir)
    vocab = data.CharVocab(text)
    train_ids, val_ids = data.split_text(vocab.encode(text))
    samplers = {"train": data.BlockSampler(train_ids, cfg["block_size"], cfg["batch_size"],
                                           seed=args.seed)}
    evaluation = {split: data.BlockSampler(ids, cfg["block_size"], cfg["batch_size"],
                                           seed=args.seed + 1 + k)
                  for k, (split, ids) in enumerate((("train", train_ids), ("val", val_ids)))}
    model = models.gpt(len(vocab), cfg["block_size"], cfg["n_layer"], cfg["n_head"],
                       cfg["n_embd"], dropout=cfg["dropout"],
                       gelu_approximate=args.gelu).to(minidl.current_device())
    params = model.parameters()
    optimizer = optim.AdamW(param_groups(model, RECIPE["weight_decay"]), lr=args.lr,
                            betas=RECIPE["betas"])
    loss_fn = losses.CrossEntropyLoss()
    min_lr = RECIPE["min_lr"] * args.lr / RECIPE["lr"]
    print(f"char_gpt: {model.num_parameters():,} parameters, {len(vocab)} characters, "
          f"{len(train_ids):,} train / {len(val_ids):,} val tokens, config {cfg}", flush=True)
    rows, train_seconds, start = [], 0.0, time.perf_counter()
    for it in range(cfg["iters"] + 1):
        lr = learning_rate(it, cfg["iters"], args.lr, min_lr, RECIPE["warmup_iters"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        if it % cfg["eval_interval"] == 0 or it == cfg["iters"]:
            est = estimate_loss(model, evaluation, cfg["eval_iters"], loss_fn)
            rows.append({"iter": it, "train_loss": est["train"], "val_loss": est["val"],
                         "lr": lr, "train_seconds": round(train_seconds, 2)})
            if not args.quiet:
                print(f"iter {it}: train loss {est['train']:.4f}, val loss {est['val']:.4f}, "
                      f"{train_seconds:.1f} s", flush=True)
        if it == cfg["iters"]:
            break
        step_start = time.perf_counter()
        minidl.threads.adapt_to_load()  # fewer BLAS threads while other programs use the cores
        x, y = (minidl.to_device(a, minidl.current_device()) for a in samplers["train"].sample())
        logits = model(x)
        loss_fn(logits.reshape(-1, len(vocab)), y.reshape(-1))
        model.zero_grad()
        model.backward(loss_fn.backward().reshape(logits.shape))
        optim.clip_grad_norm_(params, RECIPE["grad_clip"])
        optimizer.step()
        train_seconds += time.perf_counter() - step_start
    wall = time.perf_counter() - start
    context = minidl.to_device(np.zeros((1, 1), dtype=np.int64), minidl.current_device())
    sample = vocab.decode(minidl.to_numpy(model.generate(context, args.sample_chars,
                                                         seed=args.seed))[0])
    write_history(rows, args.out)
    plot_curves(rows, os.path.join(args.out, "char_gpt_curves.png"),
                f"char GPT {cfg['n_layer']}x{cfg['n_embd']}, Tiny Shakespeare")
    plot_attention(model, val_ids, vocab, os.path.join(args.out, "char_gpt_attention.png"),
                   min(32, cfg["block_size"]))
    with open(os.path.join(args.out, "char_gpt_sample.txt"), "w") as f:
        f.write(sample)
    result = {"val_loss": rows[-1]["val_loss"], "train_loss": rows[-1]["train_loss"],
              "iters": cfg["iters"], "train_seconds": round(train_seconds, 1),
              "wall_seconds": round(wall, 1), "params": model.num_parameters(), "config": cfg,
              "seed": args.seed, "gelu": args.gelu, "device": minidl.current_device()}
    with open(os.path.join(args.out, "char_gpt_result.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"char_gpt: val loss {result['val_loss']:.4f} nats/char after {cfg['iters']} "
          f"iterations; training {train_seconds:.0f} s ({wall:.0f} s with evaluations)")
    print("sample:\n" + sample[:300])
    return result


if __name__ == "__main__":
    main()
