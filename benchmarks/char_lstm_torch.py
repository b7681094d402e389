"""PyTorch reference of ``examples/char_lstm.py``: the same char-rnn recipe, step for step.

A reference, not part of minidl. It takes its arguments, data, batches (the same
chunks in the same order), evaluation and output files from ``examples/char_lstm.py``,
and by default starts from the same initial weights (minidl's, moved over with
``minidl.interop``), so the two runs differ only in the arithmetic of the two libraries
(and in the dropout masks, when ``--dropout`` > 0). ``--own-init`` uses PyTorch's own
initialisation instead (same distribution, other draws).

    python benchmarks/char_lstm_torch.py --data-dir DIR    # same flags as the example

Float32 on the CPU; the thread count is PyTorch's default unless ``--threads``.
"""
import os
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "examples"))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # an optional reference: say so rather than fail with a traceback
    sys.exit("benchmarks/char_lstm_torch.py needs PyTorch (pip install torch); minidl does not")

import char_lstm  # noqa: E402  (the example: arguments, data, chunks, reporting)
import minidl  # noqa: E402
from minidl import interop  # noqa: E402


class TorchCharLSTM(nn.Module):
    """The example's CharLSTM in PyTorch (same names, so state_dicts map one-to-one)."""

    def __init__(self, vocab_size, hidden, layers, dropout=0.0):
        super().__init__()
        self.lstm = nn.LSTM(vocab_size, hidden, num_layers=layers, dropout=dropout)
        self.head = nn.Linear(hidden, vocab_size)
        self.vocab_size = vocab_size

    def forward(self, ids, state=None):
        output, state = self.lstm(F.one_hot(ids, self.vocab_size).float(), state)
        return self.head(output.reshape(-1, output.shape[-1])), state


def evaluate(model, ids, args):
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in char_lstm.stream_chunks(ids, args.batch_size, args.seq_len):
            logits, state = model(torch.from_numpy(x), state)
            total += float(F.cross_entropy(logits, torch.from_numpy(y.reshape(-1)))) * y.size
            count += y.size
    model.train()
    return total / count


def sample(model, vocab, prime, length, temperature, draw):
    model.eval()
    ids = list(vocab.encode(prime))
    with torch.no_grad():
        logits, state = model(torch.tensor(ids)[:, None])
        for _ in range(length):
            scaled = logits[-1].double().numpy() / temperature
            probs = np.exp(scaled - scaled.max())
            ids.append(int(draw.choice(len(vocab), p=probs / probs.sum())))
            logits, state = model(torch.tensor([[ids[-1]]]), state)
    model.train()
    return vocab.decode(ids)


def build(args, vocab_size):
    torch.manual_seed(args.seed)
    model = TorchCharLSTM(vocab_size, args.hidden, args.layers, args.dropout)
    if not args.own_init:
        minidl.seed(args.seed)  # the example's initial weights, drawn as it draws them
        twin = char_lstm.CharLSTM(vocab_size, args.hidden, args.layers, args.dropout)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in
                               interop.torch_state_dict(twin).items()})
    return model


def train(args):
    text = char_lstm.load_text(args)
    vocab = char_lstm.Vocabulary(text)
    train_ids, val_ids = char_lstm.split(vocab.encode(text))
    model = build(args, len(vocab))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    chunks = char_lstm.training_chunks(train_ids, args.batch_size, args.seq_len)
    print(f"char_lstm (torch {torch.__version__}, {torch.get_num_threads()} threads): "
          f"{len(text):,} characters, vocabulary {len(vocab)}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    history, recent, train_time, state = [], [], 0.0, None
    for step in range(1, args.iters + 1):
        chunk = next(chunks)
        if chunk is None:
            state, chunk = None, next(chunks)
        start = time.perf_counter()
        x, y = (torch.from_numpy(a) for a in chunk)
        if state is not None:
            state = tuple(s.detach() for s in state)  # truncated BPTT
        logits, state = model(x, state)
        loss = F.cross_entropy(logits, y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        train_time += time.perf_counter() - start
        recent.append(loss.item())
        record = char_lstm.report(step, args, recent, train_time,
                                  lambda: evaluate(model, val_ids, args))
        if record:
            history.append(record)
            recent = []
    return model, vocab, history, train_time


def torch_arguments(parser):
    parser.add_argument("--own-init", action="store_true",
                        help="PyTorch's own initial weights instead of minidl's")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.set_defaults(out="runs/char_lstm_torch")


def main(argv=None):
    args = char_lstm.parse_args(argv, description=__doc__.split("\n")[0],
                                add_arguments=torch_arguments)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, vocab, history, train_time = train(args)
    prime = "ROMEO:" if not args.smoke else "to"
    text_sample = sample(model, vocab, prime, args.sample_chars, args.temperature,
                         np.random.default_rng(args.seed))
    char_lstm.write_results(args, "char_lstm_torch", history, train_time, text_sample,
                            {"torch": torch.__version__, "threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
