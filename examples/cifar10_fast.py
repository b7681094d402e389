"""CIFAR-10 to 94 % test accuracy, fast: the airbench94 recipe, and Page's ResNet-9.

``--recipe airbench`` (default), after Keller Jordan's airbench94 (94.0 % in 3.8 s on an
A100 in PyTorch): the ~2 M-parameter net of :func:`minidl.models.airbench`, whose first
2x2 conv is frozen to a patch-whitening transform of 5,000 training images; batch 1024,
10 epochs (airbench: 9.9), Nesterov SGD (momentum 0.85) with 64x the learning rate on the BatchNorm
biases, label smoothing 0.2, a per-step schedule (linear warm-up over 23 % of the
steps from 0.2x to 1x, then linear decay to 0.07x), lookahead on all weights and
BatchNorm statistics every 5 steps, alternating flip + 2-px reflect translate, and
6-view test-time augmentation (flip x {centre, two 1-px shifts}).

``--recipe resnet9``, after David Page's DAWNBench ResNet-9 (94 % in 79 s on a V100):
batch 512, 24 epochs, Nesterov SGD 0.9, weight decay 5e-4, learning rate warmed up
linearly from 0 to 0.4 over 5 epochs and decayed linearly to 0 at epoch 24 (per step;
a shorter ``--epochs`` keeps the 5/24 : 19/24 proportions),
random crop (4 px, reflect) + flip + 8x8 cutout; flip test-time augmentation (Page's
79 s result used none: ``--tta 0``).

``--lr`` is in each recipe's own units: airbench's 11.5 per 1024 examples of a summed
loss (see :func:`airbench_optimizer`), ResNet-9's peak learning rate 0.4.

    python examples/cifar10_fast.py                     # airbench recipe
    python examples/cifar10_fast.py --recipe resnet9
    python examples/cifar10_fast.py --device gpu        # the recipes were made for a GPU
    python examples/cifar10_fast.py --widths 128,384,384 --epochs 20   # wider, longer
    python examples/cifar10_fast.py --epochs 1 --subset 5000 --test-subset 1000  # CPU, minutes

As in the speed-run literature the model trains on all 50,000 training images and the
test set is evaluated after every epoch (the ``val_*`` columns of the history hold
these test numbers, without test-time augmentation); the final line uses the TTA. The
printed training time excludes these evaluations but includes the whitening init (on
the GPU, one untimed throwaway step first compiles CuPy's kernels); the
"time to 94 %" is the training time at the end of the first epoch whose test accuracy
reached the target (or of the final evaluation with TTA).
"""
import math
import os
import time
from types import SimpleNamespace

import cifar_common
import minidl
from minidl import data, losses, models, optim
from minidl import layers as L
from minidl.optim import lr_scheduler
from minidl.train import History, save_weights, topk_correct

#: airbench94's hyper-parameters, in its own units: learning rate and weight decay are
#: per 1024 examples of a loss *summed* over the batch (see :func:`airbench_optimizer`).
AIRBENCH = dict(epochs=10, batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153,
                bias_scaler=64.0, label_smoothing=0.2, whiten_bias_epochs=3,
                warmup_fraction=0.23, start_factor=0.2, end_factor=0.07, translate=2,
                lookahead_every=5, whitening_images=5000, tta=2)
#: Page's ResNet-9 recipe, in minidl's units (a loss averaged over the batch).
RESNET9 = dict(epochs=24, batch_size=512, lr=0.4, momentum=0.9, weight_decay=5e-4,
               warmup_epochs=5, crop_padding=4, cutout=8, tta=1)


# ---------------------------------------------------------------------------- airbench
def airbench_optimizer(model, batch_size, lr, momentum, weight_decay, bias_scaler):
    """Nesterov SGD with airbench94's parameter groups, translated to a mean loss.

    airbench sums the loss over the batch and states ``lr`` and ``weight_decay`` per
    1024 examples, divided by ``kilostep = 1024 * (1 + 1 / (1 - momentum))`` (the
    momentum buffer amplifies a step by about ``1 / (1 - momentum)``). minidl's losses
    are means, whose gradient is ``1 / batch_size`` of the sum's, so the same updates
    take ``lr_mean = batch_size * lr / kilostep``. airbench's decay is decoupled from
    the learning rate: every step shrinks each weight by ``decay = weight_decay *
    batch_size / kilostep`` (times the schedule's factor); in torch-style SGD that is
    ``weight_decay = decay / lr`` of the group. The BatchNorm biases learn
    ``bias_scaler`` times faster with the same decay. The whitening conv's weight stays
    out (frozen); its bias gets a group of its own so it can be frozen after a few epochs.

    Returns ``(optimizer, index of the whitening-bias group)``.
    """
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr_mean = batch_size * lr / kilostep
    decay = weight_decay * batch_size / kilostep
    norm_biases = [p for _, module in model.named_modules() if isinstance(module, L.BatchNorm2d)
                   for p in module.parameters()]
    placed = {id(model.whiten.weight), id(model.whiten.bias)} | {id(p) for p in norm_biases}
    others = [p for p in model.parameters() if id(p) not in placed]
    groups = [
        {"name": "weights", "params": others, "lr": lr_mean, "weight_decay": decay / lr_mean},
        {"name": "batchnorm biases", "params": norm_biases, "lr": lr_mean * bias_scaler,
         "weight_decay": decay / (lr_mean * bias_scaler)},
        {"name": "whitening bias", "params": [model.whiten.bias], "lr": lr_mean,
         "weight_decay": decay / lr_mean},
    ]
    return optim.SGD(groups, lr=lr_mean, momentum=momentum, nesterov=True), 2


class ScheduledLookahead:
    """airbench's lookahead: every ``every`` steps, pull the slow copy towards the model
    and reset the model to it, with ``decay = 0.95**5 * (step / total_steps)**3``.

    The slow copy is an :class:`~minidl.optim.ExponentialMovingAverage` of every
    parameter *and* BatchNorm statistic: ``slow = decay * slow + (1 - decay) * model``,
    then ``model = slow``. Early on the decay is ~0 (plain SGD); it grows to 0.77 at the
    end, averaging away the noise of the last steps. :meth:`finish` makes the final
    weights the slow ones.
    """

    def __init__(self, model, total_steps, every=5):
        self.ema = optim.ExponentialMovingAverage(model, decay=0.0, average_buffers=True)
        self.total_steps, self.every = total_steps, every
        self.updated = False

    def after_step(self, step):
        if step % self.every == 0:
            self.ema.decay = 0.95 ** 5 * (step / self.total_steps) ** 3
            self.ema.update()
            self.ema.copy_to()
            self.updated = True

    def finish(self):
        # A run shorter than ``every`` steps never updated the slow copy: keep the model.
        if self.updated:
            self.ema.copy_to()


def airbench_recipe(args, hp, train_images, total_steps):
    """Everything the airbench recipe trains with (see :func:`main` for its use)."""
    model = models.airbench(10, widths=(16, 32, 32) if args.smoke else args.widths)
    model.to(minidl.current_device())
    # The whitening conv sees the images the net will see: normalised, not augmented.
    sample = train_images[:hp["whitening_images"]]
    models.whitening_init(model.whiten, minidl.to_device(cifar_common.normalize_array(sample)))
    optimizer, whiten_group = airbench_optimizer(model, args.batch_size, args.lr, hp["momentum"],
                                                 hp["weight_decay"], hp["bias_scaler"])
    scheduler = lr_scheduler.LinearWarmupDecayLR(
        optimizer, int(hp["warmup_fraction"] * total_steps), total_steps,
        start_factor=hp["start_factor"], end_factor=hp["end_factor"])
    lookahead = ScheduledLookahead(model, total_steps, hp["lookahead_every"])

    def on_epoch_start(epoch):
        if epoch == hp["whiten_bias_epochs"] + 1:
            # Freeze the whitening bias: a zero lr moves it no more (the scheduler
            # multiplies its base lr, so that is what is zeroed).
            scheduler.base_lrs[whiten_group] = 0.0
            optimizer.param_groups[whiten_group]["lr"] = 0.0

    augment = data.Compose([*cifar_common.normalize().transforms,
                            data.AlternatingFlip(len(train_images), seed=args.seed),
                            data.RandomTranslate(hp["translate"], padding_mode="reflect")])
    return SimpleNamespace(
        model=model, loss_fn=losses.CrossEntropyLoss(label_smoothing=hp["label_smoothing"]),
        optimizer=optimizer, scheduler=scheduler, augment=augment,
        on_epoch_start=on_epoch_start, after_step=lookahead.after_step, finish=lookahead.finish)


# ---------------------------------------------------------------------------- resnet9
def resnet9_recipe(args, hp, total_steps):
    """Everything the ResNet-9 recipe trains with (see :func:`main` for its use)."""
    model = models.resnet9(10, width=8 if args.smoke else 64)
    model.to(minidl.current_device())
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=hp["momentum"],
                          nesterov=True, weight_decay=hp["weight_decay"])
    # Warm up over the first 5/24 of the run, whatever its length.
    scheduler = lr_scheduler.LinearWarmupDecayLR(
        optimizer, round(total_steps * hp["warmup_epochs"] / hp["epochs"]), total_steps,
        start_factor=0.0, end_factor=0.0)
    augment = cifar_common.standard_augmentation(padding=hp["crop_padding"], cutout=hp["cutout"])
    return SimpleNamespace(model=model, loss_fn=losses.CrossEntropyLoss(), optimizer=optimizer,
                           scheduler=scheduler, augment=augment, on_epoch_start=None,
                           after_step=None, finish=None)


# ---------------------------------------------------------------------------- evaluation
def _flip(x):
    return x[..., ::-1]


def tta_logits(model, x, level):
    """Logits averaged over test-time augmentations of the normalised batch ``x``.

    level 0: ``x`` alone; 1: mean of ``x`` and its mirror image; 2 (airbench's 6 views):
    ``0.5 * level1(x) + 0.25 * level1(x shifted 1 px up-left) + 0.25 * level1(x shifted
    1 px down-right)``, shifts filled by reflection.
    """
    logits = model(x)
    if level >= 1:
        logits = 0.5 * logits + 0.5 * model(_flip(x))
    if level >= 2:
        xp = minidl.get_array_module(x)
        padded = xp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
        height, width = x.shape[2:]
        shifted = [padded[:, :, :height, :width], padded[:, :, 2:, 2:]]
        translated = [0.5 * model(s) + 0.5 * model(_flip(s)) for s in shifted]
        logits = 0.5 * logits + 0.25 * (translated[0] + translated[1])
    return logits


def evaluate(model, loader, loss_fn, tta=0):
    """``{"loss", "top1", "top5"}`` over ``loader`` in eval mode, with ``tta`` views."""
    model.eval()
    loss_sum, hits, count = 0.0, 0, 0
    for xb, yb in loader:
        logits = tta_logits(model, xb, tta)
        loss_sum = loss_sum + loss_fn(logits, yb) * len(yb)
        hits = hits + topk_correct(logits, yb, (1, 5))
        count += len(yb)
    model.train()
    top1, top5 = (int(h) for h in minidl.to_numpy(hits))
    return {"loss": float(loss_sum) / count, "top1": top1 / count, "top5": top5 / count}


# ---------------------------------------------------------------------------- training
def warm_up_device(recipe, train_loader, every):
    """One untimed training step of a throwaway ``recipe``, so that CuPy compiles
    every kernel of a step (augmentation, forward, loss, backward, optimizer, lookahead)
    and cuBLAS initialises outside the timed region (what torch.compile warm-up runs
    are for in airbench). Ends when the device has finished."""
    xb, yb = next(iter(train_loader))
    logits = recipe.model(xb)
    loss = recipe.loss_fn(logits, yb)
    recipe.model.backward(recipe.loss_fn.backward())
    recipe.optimizer.step()
    recipe.scheduler.step()
    if recipe.after_step is not None:
        recipe.after_step(every)
    float(loss + topk_correct(logits, yb, (1, 5)).sum())  # waits for the device


def train(args, model, loss_fn, optimizer, scheduler, train_loader, test_loader,
          total_steps, on_epoch_start=None, after_step=None, setup_seconds=0.0):
    """The training loop, written out: returns (History, training seconds, time to target)."""
    history = History()
    train_seconds, time_to_target, step = setup_seconds, None, 0
    print(f"{'epoch':>5} {'train loss':>10} {'train acc':>9} {'test acc':>8} {'lr':>8} "
          f"{'epoch s':>7} {'train s':>7}")
    for epoch in range(1, math.ceil(total_steps / len(train_loader)) + 1):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        started, lr = time.perf_counter(), optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum, hits, count = 0.0, 0, 0
        for xb, yb in train_loader:
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            model.backward(loss_fn.backward())
            optimizer.step()
            scheduler.step()
            step += 1
            if after_step is not None:
                after_step(step)
            # Sums stay on the device: no sync per step.
            loss_sum = loss_sum + loss * len(yb)
            hits = hits + topk_correct(logits, yb, (1, 5))
            count += len(yb)
            if step == total_steps:
                break
        train_loss = float(loss_sum) / count  # waits for the device: the epoch is done
        epoch_seconds = time.perf_counter() - started
        train_seconds += epoch_seconds
        top1, top5 = (int(h) / count for h in minidl.to_numpy(hits))
        row = {"epoch": epoch, "train_loss": train_loss, "train_top1": top1, "train_top5": top5,
               "lr": lr, "seconds": epoch_seconds}
        if epoch % args.eval_every == 0 or step == total_steps:
            test = evaluate(model, test_loader, loss_fn)
            row.update(val_loss=test["loss"], val_top1=test["top1"], val_top5=test["top5"])
            if time_to_target is None and test["top1"] >= args.target:
                time_to_target = train_seconds
        history.append(row)
        test_text = f"{100 * row['val_top1']:7.2f}%" if row.get("val_top1") is not None else " " * 8
        print(f"{epoch:>5} {train_loss:>10.4f} {100 * top1:>8.2f}% {test_text} {lr:>8.4f} "
              f"{epoch_seconds:>7.1f} {train_seconds:>7.1f}", flush=True)
        if step == total_steps:
            break
    return history, train_seconds, time_to_target


def main(argv=None):
    p = cifar_common.parser(__doc__, epochs=None, batch_size=None, lr=None, out="runs/cifar10_fast")
    p.add_argument("--recipe", choices=("airbench", "resnet9"), default="airbench",
                   help="airbench94-style net or Page's ResNet-9 (sets the other defaults)")
    p.add_argument("--tta", type=int, choices=(0, 1, 2), default=None,
                   help="test-time augmentation: 0 none, 1 flip, 2 flip x 3 shifts "
                        "(default: 2 for airbench, 1 for resnet9)")
    p.add_argument("--target", type=float, default=0.94, help="test accuracy to time (fraction)")
    p.add_argument("--eval-every", type=int, default=1, help="evaluate the test set every k epochs")
    p.add_argument("--widths", default="64,256,256",
                   help="airbench's three block widths (airbench94: 64,256,256)")
    args = p.parse_args(argv)
    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) <= 0:
        p.error(f"--widths must be three positive integers like 64,256,256, got {args.widths!r}")
    args.widths = widths
    if args.recipe != "airbench" and args.widths != (64, 256, 256):
        p.error("--widths applies to the airbench recipe only")
    hp = dict(AIRBENCH if args.recipe == "airbench" else RESNET9)
    for key in ("epochs", "batch_size", "lr", "tta"):
        if getattr(args, key) is None:
            setattr(args, key, hp[key])
    if args.smoke:
        args.epochs, args.batch_size = min(args.epochs, 2), 64
        hp["whitening_images"] = 128
    cifar_common.setup(args)

    train_split, _, test_split = cifar_common.cifar10_splits(args, val_size=0)
    train_images = train_split[0]
    steps_per_epoch = len(train_images) // args.batch_size  # the last partial batch is dropped
    if steps_per_epoch == 0:
        p.error(f"--batch-size {args.batch_size} exceeds the {len(train_images)} training images")
    total_steps = args.epochs * steps_per_epoch

    def make_recipe():
        if args.recipe == "airbench":
            return airbench_recipe(args, hp, train_images, total_steps)
        return resnet9_recipe(args, hp, total_steps)

    if minidl.current_device() == "gpu":
        throwaway = make_recipe()
        warm_up_loader, _, _ = cifar_common.make_loaders(
            args, train_split, None, None, throwaway.augment, drop_last=True)
        warm_up_device(throwaway, warm_up_loader, hp.get("lookahead_every", 1))
        del throwaway, warm_up_loader
        minidl.seed(args.seed)  # the real model starts from the same draws as on the CPU
    start = time.perf_counter()
    recipe = make_recipe()
    setup_seconds = time.perf_counter() - start
    model = recipe.model
    model.summary((3, 32, 32))
    train_loader, _, test_loader = cifar_common.make_loaders(
        args, train_split, None, test_split, recipe.augment, eval_batch_size=1000, drop_last=True)

    print(f"{args.recipe}: {model.num_parameters():,} parameters, {len(train_images)} training "
          f"images, batch {args.batch_size}, {args.epochs} epochs ({total_steps} steps), "
          f"{cifar_common.machine_description()}")
    history, seconds, time_to_target = train(
        args, model, recipe.loss_fn, recipe.optimizer, recipe.scheduler, train_loader, test_loader,
        total_steps, recipe.on_epoch_start, recipe.after_step, setup_seconds)
    if recipe.finish is not None:
        recipe.finish()
    final = evaluate(model, test_loader, recipe.loss_fn, tta=args.tta)
    if time_to_target is None and final["top1"] >= args.target:
        time_to_target = seconds
    reached = (f"{100 * args.target:.0f} % reached after {time_to_target:.1f} s of training"
               if time_to_target is not None else f"{100 * args.target:.0f} % not reached")
    print(f"final test accuracy with TTA level {args.tta}: {100 * final['top1']:.2f} % "
          f"(top-5 {100 * final['top5']:.2f} %); {reached}")
    save_weights(os.path.join(args.out, f"{args.recipe}_weights.npz"), model)
    return cifar_common.report(args, args.recipe, history, final, seconds, model, extra={
        "tta": args.tta, "target": args.target, "time_to_target_seconds": time_to_target,
        "batch_size": args.batch_size, "setup_seconds": round(setup_seconds, 2)})


if __name__ == "__main__":
    cifar_common.common.cli(main)
