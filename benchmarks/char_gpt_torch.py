"""PyTorch reference of ``examples/char_gpt.py``: the same nanoGPT recipe, data and batches.

A diagnostic, not part of minidl: nanoGPT's model (model.py: token + position
embeddings, pre-LN blocks with causal ``F.scaled_dot_product_attention`` and a GELU
MLP (``--gelu``, tanh by default as in char_gpt.py), final LayerNorm, tied output
layer, N(0, 0.02) init with the ``c_proj`` weights scaled by 1/sqrt(2 n_layer)) and
the shakespeare_char recipe as ``examples/char_gpt.py`` runs it: the same Tiny
Shakespeare split, the same :class:`minidl.data.BlockSampler` batches for a given
``--seed``, the same AdamW parameter groups, learning-rate schedule, clipping and
loss estimates. Eager PyTorch in float32 (no ``torch.compile``, nanoGPT's CPU
setting). The initial weights are drawn by torch, so they differ from minidl's.

    python benchmarks/char_gpt_torch.py [--iters 2000] [--data-dir DIR] [--seed 1337]

Prints the val loss every ``--eval-interval`` iterations and the training time
(excluding evaluations, as char_gpt.py reports it); ``--out`` gets a result JSON.
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # an optional reference: say so rather than fail with a traceback
    sys.exit("benchmarks/char_gpt_torch.py needs PyTorch (pip install torch); minidl does not")

from minidl import data  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples"))
from char_gpt import CONFIGS, RECIPE, learning_rate, synthetic_text  # noqa: E402


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout, bias):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)
        self.n_head, self.dropout = n_head, dropout

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0,
                                           is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, dropout, bias, gelu):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.Sequential()
        self.mlp.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.mlp.gelu = nn.GELU(approximate=gelu)
        self.mlp.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.mlp.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT, with minidl's parameter names (nanoGPT's, minus ``transformer.``)."""

    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, dropout=0.0, bias=True,
                 gelu="none"):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.h = nn.Sequential(*[Block(n_embd, n_head, dropout, bias, gelu)
                                 for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        return self.lm_head(self.ln_f(self.h(x)))


def param_groups(model, weight_decay):
    """As examples/char_gpt.py: decay on Linear matrices only (not embeddings)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # the tied weight appears once, as wte
        is_matrix = param.dim() == 2 and not name.startswith(("wte.", "wpe."))
        (decay if is_matrix else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def estimate_loss(model, samplers, eval_iters):
    model.eval()
    result = {}
    for split, sampler in samplers.items():
        total = 0.0
        for _ in range(eval_iters):
            x, y = (torch.from_numpy(a) for a in sampler.sample())
            logits = model(x)
            total += F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1)).item()
        result[split] = total / eval_iters
    model.train()
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    for key in ("iters", "eval_interval", "eval_iters"):
        p.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--gelu", default="tanh", choices=["tanh", "none"],
                   help="as char_gpt.py's --gelu (default tanh, as its default)")
    p.add_argument("--out", default=None, help="folder for char_gpt_torch_result.json")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args()
    cfg = dict(CONFIGS["smoke" if args.smoke else args.device])
    for key in ("iters", "eval_interval", "eval_iters"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    device = "cuda" if args.device == "gpu" else "cpu"
    torch.manual_seed(args.seed)
    text = synthetic_text() if args.smoke else data.load_tiny_shakespeare(args.data_dir)
    vocab = data.CharVocab(text)
    train_ids, val_ids = data.split_text(vocab.encode(text))
    sampler = data.BlockSampler(train_ids, cfg["block_size"], cfg["batch_size"], seed=args.seed)
    evaluation = {split: data.BlockSampler(ids, cfg["block_size"], cfg["batch_size"],
                                           seed=args.seed + 1 + k)
                  for k, (split, ids) in enumerate((("train", train_ids), ("val", val_ids)))}
    model = GPT(len(vocab), cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"],
                cfg["dropout"], gelu=args.gelu).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, RECIPE["weight_decay"]), lr=RECIPE["lr"],
                                  betas=RECIPE["betas"])
    print(f"char_gpt_torch: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{torch.get_num_threads()} threads, config {cfg}", flush=True)
    train_seconds, start, val_loss = 0.0, time.perf_counter(), None
    for it in range(cfg["iters"] + 1):
        lr = learning_rate(it, cfg["iters"], RECIPE["lr"], RECIPE["min_lr"], RECIPE["warmup_iters"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        if it % cfg["eval_interval"] == 0 or it == cfg["iters"]:
            est = estimate_loss(model, evaluation, cfg["eval_iters"])
            val_loss = est["val"]
            print(f"iter {it}: train loss {est['train']:.4f}, val loss {est['val']:.4f}, "
                  f"{train_seconds:.1f} s", flush=True)
        if it == cfg["iters"]:
            break
        step_start = time.perf_counter()
        x, y = (torch.from_numpy(a).to(device) for a in sampler.sample())
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), RECIPE["grad_clip"])
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        train_seconds += time.perf_counter() - step_start
    wall = time.perf_counter() - start
    print(f"char_gpt_torch: val loss {val_loss:.4f} nats/char after {cfg['iters']} iterations; "
          f"training {train_seconds:.0f} s ({wall:.0f} s with evaluations)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "char_gpt_torch_result.json"), "w") as f:
            json.dump({"val_loss": val_loss, "iters": cfg["iters"], "config": cfg,
                       "train_seconds": round(train_seconds, 1), "wall_seconds": round(wall, 1),
                       "threads": torch.get_num_threads(), "seed": args.seed,
                       "gelu": args.gelu}, f, indent=2)


if __name__ == "__main__":
    main()
