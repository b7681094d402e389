"""DataLoader sharding and the Trainer under mpiexec -n 2 (argv[1]: a scratch folder)."""
import json
import os
import sys

import numpy as np
from common import dist, report

import minidl
from minidl import data, models
from minidl.losses import CrossEntropyLoss
from minidl.optim import SGD
from minidl.train import ModelCheckpoint, Trainer

folder = sys.argv[1]
dist.init("mpi")
rank, world = dist.rank(), dist.world_size()
minidl.set_default_dtype(np.float64)

# ---- sharding: every rank its share of the same shuffled order, reshuffled per epoch
N = 21
x, y = np.arange(N, dtype=np.float64)[:, None], np.arange(N)
for drop_last in (False, True):
    minidl.seed(100 + rank)  # different generators: the loader must take rank 0's seed
    loader = data.DataLoader(x, y, batch_size=4, drop_last=drop_last)
    epochs = [[int(i) for _, yb in loader for i in yb] for _ in range(2)]
    everyone = [json.loads(text) for text in dist.all_gather_text(json.dumps(epochs))]
    lengths = [int(n) for n in dist.all_gather_text(str(len(loader)))]
    assert len(set(lengths)) == 1, lengths
    for epoch in range(2):
        shards = [seen[epoch] for seen in everyone]
        seen = sum(shards, [])
        if drop_last:  # 10 per rank, 2 full batches of 4: 8 distinct samples each
            assert all(len(s) == 8 for s in shards) and len(set(seen)) == 16, shards
        else:  # 11 per rank (one sample repeated), 3 batches: every sample at least once
            assert all(len(s) == 11 for s in shards) and set(seen) == set(range(N)), shards
            assert len(seen) == 22
    assert everyone[0][0] != everyone[0][1], "the order was not reshuffled"
report("loader-shards", f"drop_last both, {lengths[0]} batches per rank")

try:
    data.DataLoader(x[:N - rank], y[:N - rank], batch_size=4)
except ValueError as error:
    assert "every rank must hold the same data set" in str(error), error
    report("loader-different-data-refused")

# ---- the Trainer: the same History everywhere, rank 0 writes, exact resume
rng = np.random.default_rng(0)
features = rng.standard_normal((96, 8))
labels = (features[:, 0] > 0).astype(np.int64) + (features[:, 1] > 0)
train, val = (features[:64], labels[:64]), (features[64:], labels[64:])


def run(epochs, checkpoint=None, resume=None):
    minidl.seed(rank)
    model = dist.DataParallel(models.mlp([8, 16, 3]))
    trainer = Trainer(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1, momentum=0.9),
                      callbacks=[ModelCheckpoint(checkpoint)] if checkpoint else [])
    assert trainer.quiet == (rank != 0)
    history = trainer.fit(data.DataLoader(*train, batch_size=8, seed=5),
                          data.DataLoader(*val, batch_size=8, shuffle=False),
                          epochs=epochs, resume=resume)
    return trainer, model, history


trainer, model, history = run(3)
metrics = {k: v for k, v in history.to_dict().items() if k != "seconds"}  # wall time differs
rows = dist.all_gather_text(json.dumps(metrics))
assert rows[0] == rows[1], f"the ranks' histories differ: {rows}"
# Validation is averaged over the ranks: equal to one process on the whole val set.
whole = trainer.evaluate(data.DataLoader(*val, batch_size=32, shuffle=False, shard=False))
assert abs(whole["loss"] - history[-1]["val_loss"]) < 1e-12, (whole, history[-1])
assert abs(whole["top1"] - history[-1]["val_top1"]) < 1e-12
report("trainer-history", f"val_loss {history[-1]['val_loss']:.6f} on every rank")

path = os.path.join(folder, "epoch{epoch}.npz")
run(2, checkpoint=path)
dist.barrier()  # rank 0 has written the checkpoints
assert os.path.exists(path.format(epoch=2))
_, resumed, _ = run(3, resume=path.format(epoch=2))
for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
    assert np.array_equal(a, b), name
report("trainer-resume", "bit-identical to the uninterrupted run")
