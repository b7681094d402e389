"""Character-level language model: a 2-layer LSTM on tiny Shakespeare (Karpathy's char-rnn).

The recipe (the same in ``benchmarks/char_lstm_torch.py``, which reuses this file's data
functions, so both see the same batches in the same order):

- text: karpathy/char-rnn's ``tinyshakespeare/input.txt`` (1,115,394 characters, 65
  distinct), the first 90 % for training, the last 10 % for validation;
- truncated backpropagation through time: the training text is cut into ``batch``
  contiguous streams read ``seq_len`` characters at a time; the LSTM's last state of
  one chunk is the first state of the next (gradients stop at the chunk border);
- model: one-hot characters -> LSTM(65, hidden, layers) -> Linear(hidden, 65);
- Adam (lr 2e-3), gradient norm clipped at 5, cross-entropy in nats per character;
- validation: the whole val split, read the same way, in eval mode;
- at the end, text sampled from the model (temperature 0.8).

::

    python examples/char_lstm.py --data-dir /path/with/tinyshakespeare   # or MINIDL_DATA
    python examples/char_lstm.py --iters 500 --hidden 128 --layers 2 --seq-len 64 --batch-size 32

Writes ``char_lstm_result.json`` (settings, val loss, time per step, history) and
``char_lstm_sample.txt`` into ``--out``.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import minidl  # noqa: E402
from minidl import Module, losses, optim  # noqa: E402
from minidl import layers as L  # noqa: E402
from minidl.data.datasets import data_root  # noqa: E402


def parse_args(argv=None, description=None, add_arguments=None):
    """The recipe's flags; ``add_arguments(parser)`` adds more (the PyTorch reference's)."""
    p = argparse.ArgumentParser(description=description or __doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=500, help="training steps")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=64, help="steps of truncated BPTT")
    p.add_argument("--batch-size", type=int, default=32, help="parallel text streams")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0, help="max gradient norm")
    p.add_argument("--dropout", type=float, default=0.0, help="between LSTM layers")
    p.add_argument("--eval-interval", type=int, default=250, help="val loss every N steps")
    p.add_argument("--log-interval", type=int, default=50)
    p.add_argument("--sample-chars", type=int, default=400)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--data-dir", default=None,
                   help="folder with input.txt or tinyshakespeare/input.txt "
                        "(default: $MINIDL_DATA or ~/.cache/minidl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/char_lstm", help="output folder")
    p.add_argument("--smoke", action="store_true", help="a few steps on synthetic text")
    if add_arguments is not None:
        add_arguments(p)
    args = p.parse_args(argv)
    if min(args.iters, args.hidden, args.layers, args.seq_len, args.batch_size) < 1:
        p.error("--iters, --hidden, --layers, --seq-len and --batch-size must be positive")
    if args.smoke:
        args.iters, args.eval_interval, args.log_interval, args.sample_chars = 6, 3, 2, 40
        args.hidden, args.seq_len, args.batch_size = 16, 8, 4
    return args


# --------------------------------------------------------------------------- data
def load_text(args):
    """The corpus as one string: synthetic with --smoke, else tiny Shakespeare."""
    if args.smoke:
        draw = np.random.default_rng(args.seed)
        words = ["to", "be", "or", "not", "that", "is", "the", "question", "\n"]
        return " ".join(draw.choice(words, size=3000))
    loader = getattr(minidl.data, "load_tiny_shakespeare", None)
    if loader is not None:
        text = loader(root=args.data_dir)
        if isinstance(text, str):
            return text
    root = data_root(args.data_dir)
    for path in (root / "input.txt", root / "tinyshakespeare" / "input.txt"):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    sys.exit(f"char_lstm: tinyshakespeare/input.txt not found in {root}; give --data-dir "
             "or MINIDL_DATA (karpathy/char-rnn: data/tinyshakespeare/input.txt)")


class Vocabulary:
    """The sorted distinct characters of a text; ``encode`` str -> int64 ids, ``decode`` back."""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.index = {char: i for i, char in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        return np.array([self.index[char] for char in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)


def split(ids, train_fraction=0.9):
    """First 90 % for training, the rest for validation (as nanoGPT splits it)."""
    cut = int(train_fraction * len(ids))
    return ids[:cut], ids[cut:]


def stream_chunks(ids, batch, seq_len):
    """Chunks ``(x, y)`` of shape (seq_len, batch) for truncated BPTT, in order.

    The text is cut into ``batch`` contiguous streams (column n of every chunk comes
    from stream n), so chunk k+1 continues chunk k and the state carries over. y is x
    shifted by one character: the next character to predict.
    """
    per_stream = (len(ids) - 1) // batch
    inputs = ids[:per_stream * batch].reshape(batch, per_stream).T
    targets = ids[1:per_stream * batch + 1].reshape(batch, per_stream).T
    for start in range(0, per_stream - seq_len + 1, seq_len):
        yield inputs[start:start + seq_len], targets[start:start + seq_len]


def training_chunks(ids, batch, seq_len):
    """Endless chunks; None between passes over the text (the state is reset there)."""
    while True:
        yield from stream_chunks(ids, batch, seq_len)
        yield None


# --------------------------------------------------------------------------- model
class CharLSTM(Module):
    """One-hot characters (T, N, V) -> LSTM -> Linear -> logits (T*N, V).

    The LSTM's last state is kept in ``self.state`` and fed back as the next call's
    initial state (truncated BPTT; ``reset_state()`` starts afresh). Backward goes
    through the head and the LSTM back to the chunk's first step only.
    """

    def __init__(self, vocab_size, hidden, layers, dropout=0.0):
        super().__init__()
        self.lstm = L.LSTM(vocab_size, hidden, num_layers=layers, dropout=dropout)
        self.head = L.Linear(hidden, vocab_size)
        self.state = None

    def reset_state(self):
        self.state = None

    def forward(self, x):
        output, self.state = self.lstm(x, self.state)
        steps, batch, hidden = output.shape
        self.save_for_backward(output.shape)
        return self.head(output.reshape(steps * batch, hidden))

    def backward(self, d_logits):
        output_shape = self.saved_for_backward(d_logits)
        return self.lstm.backward(self.head.backward(d_logits).reshape(output_shape))


def one_hot(ids, vocab_size, dtype=np.float32):
    return np.eye(vocab_size, dtype=dtype)[ids]


def evaluate(model, ids, args, vocab_size):
    """Mean cross-entropy (nats per character) over the whole split, in eval mode."""
    loss_fn = losses.CrossEntropyLoss()
    model.eval()
    model.reset_state()
    total, count = 0.0, 0
    for x, y in stream_chunks(ids, args.batch_size, args.seq_len):
        total += float(loss_fn(model(one_hot(x, vocab_size)), y.reshape(-1))) * y.size
        count += y.size
        model.drop_saved()
    model.train()
    model.reset_state()
    return total / count


def sample(model, vocab, prime, length, temperature, draw):
    """Text from the model: feed ``prime``, then draw one character at a time."""
    model.eval()
    model.reset_state()
    ids = list(vocab.encode(prime))
    logits = model(one_hot(np.array(ids)[:, None], len(vocab)))[-1]
    for _ in range(length):
        scaled = logits.astype(np.float64) / temperature
        probs = np.exp(scaled - scaled.max())
        ids.append(int(draw.choice(len(vocab), p=probs / probs.sum())))
        logits = model(one_hot(np.array([[ids[-1]]]), len(vocab)))[-1]
    model.drop_saved()
    model.train()
    model.reset_state()
    return vocab.decode(ids)


# --------------------------------------------------------------------------- training
def train(args):
    text = load_text(args)
    vocab = Vocabulary(text)
    train_ids, val_ids = split(vocab.encode(text))
    minidl.seed(args.seed)
    model = CharLSTM(len(vocab), args.hidden, args.layers, args.dropout)
    model.lstm.set_needs_input_grad(False)  # one-hot data: no dx wanted
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = losses.CrossEntropyLoss()
    chunks = training_chunks(train_ids, args.batch_size, args.seq_len)
    print(f"char_lstm (minidl): {len(text):,} characters, vocabulary {len(vocab)}, "
          f"{model.num_parameters():,} parameters")
    history, recent, train_time = [], [], 0.0
    for step in range(1, args.iters + 1):
        chunk = next(chunks)
        if chunk is None:  # a new pass over the text starts from a zero state
            model.reset_state()
            chunk = next(chunks)
        start = time.perf_counter()
        x, y = chunk
        loss = float(loss_fn(model(one_hot(x, len(vocab))), y.reshape(-1)))
        optimizer.zero_grad()
        model.backward(loss_fn.backward())
        optim.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        train_time += time.perf_counter() - start
        recent.append(loss)
        record = report(step, args, recent, train_time, lambda: evaluate(
            model, val_ids, args, len(vocab)))
        if record:
            history.append(record)
            recent = []
    return model, vocab, history, train_time


def report(step, args, recent, train_time, evaluate_val):
    """Print (and return) a history record at log and eval intervals, else None."""
    at_eval = step % args.eval_interval == 0 or step == args.iters
    if step % args.log_interval and not at_eval:
        return None
    record = {"step": step, "train_loss": float(np.mean(recent)),
              "ms_per_step": 1e3 * train_time / step}
    if at_eval:
        record["val_loss"] = evaluate_val()
    print(f"step {step:5d}  train {record['train_loss']:.4f}"
          + (f"  val {record['val_loss']:.4f}" if at_eval else "")
          + f"  {record['ms_per_step']:.1f} ms/step", flush=True)
    return record


def write_results(args, name, history, train_time, text_sample, extra=None):
    """The result json and the sample, shared with the PyTorch reference."""
    os.makedirs(args.out, exist_ok=True)
    result = {"settings": {k: v for k, v in vars(args).items() if k != "out"},
              "val_loss": history[-1]["val_loss"], "train_time_s": train_time,
              "ms_per_step": 1e3 * train_time / args.iters, "history": history, **(extra or {})}
    with open(os.path.join(args.out, f"{name}_result.json"), "w") as handle:
        json.dump(result, handle, indent=1)
    with open(os.path.join(args.out, f"{name}_sample.txt"), "w") as handle:
        handle.write(text_sample)
    print(f"\nval loss {result['val_loss']:.4f} nats/char after {args.iters} steps; "
          f"{result['ms_per_step']:.1f} ms per training step ({train_time:.1f} s)")
    print(f"sample:\n{text_sample}")


def main(argv=None):
    args = parse_args(argv)
    model, vocab, history, train_time = train(args)
    prime = "ROMEO:" if not args.smoke else "to"
    text_sample = sample(model, vocab, prime, args.sample_chars, args.temperature,
                         np.random.default_rng(args.seed))
    write_results(args, "char_lstm", history, train_time, text_sample)


if __name__ == "__main__":
    main()
