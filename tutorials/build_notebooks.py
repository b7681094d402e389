"""Write the tutorial notebooks ``tutorials/NN_topic.ipynb`` from the cells below.

The notebooks are generated so that their source stays reviewable as plain Python (one
diff per change) and so that shared cells (set-up, data loading) are written once.
They are stored WITHOUT outputs; run them in Jupyter, or all at once with
``MINIDL_TUTORIAL_FAST=1 python -m pytest tests/test_tutorials.py``.

    python tutorials/build_notebooks.py          # rewrite every notebook
    python tutorials/build_notebooks.py 04       # only those whose name starts with 04
"""
import pathlib
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).resolve().parent


def md(text):
    return new_markdown_cell(text.strip("\n"))


def code(text):
    return new_code_cell(text.strip("\n"))


# --------------------------------------------------------------------------- shared cells
SETUP = code(r'''
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import minidl
from minidl import layers as L
from minidl import losses, optim
from minidl.gradcheck import check_layer, numerical_gradient, rel_error

# MINIDL_TUTORIAL_FAST=1: small subsets and few epochs (what the test suite runs).
FAST = os.environ.get("MINIDL_TUTORIAL_FAST") == "1"
minidl.seed(0)                       # minidl's generator: initial weights, dropout masks
rng = np.random.default_rng(0)       # this notebook's own draws
print(f"minidl {minidl.__version__} from {os.path.dirname(minidl.__file__)};",
      "FAST mode (small settings)" if FAST else "full settings")
''')

DATA = code(r'''
from minidl.data import DatasetError, data_root, load_cifar10, load_mnist


def synthetic_images(n, shape, seed):
    """A learnable stand-in for a data set: 10 class templates (sparse blocky strokes on a
    dark background, like MNIST digits), randomly shifted, with pixel noise; uint8 images
    and int64 labels."""
    channels, height, width = shape
    blocks = np.random.default_rng(123).random((10, channels, height // 4, width // 4)) < 0.3
    templates = blocks.repeat(4, axis=2).repeat(4, axis=3).astype(np.float32)
    draw = np.random.default_rng(seed)
    labels = draw.integers(0, 10, n)
    images = templates[labels] * draw.uniform(0.5, 1.0, (n, channels, height, width))
    shifts = draw.integers(-4, 5, (n, 2))
    for index, (dy, dx) in enumerate(shifts):
        images[index] = np.roll(images[index], (dy, dx), axis=(1, 2))
    images += 0.8 * draw.random(images.shape) * (draw.random(images.shape) < 0.25)
    return (255 * np.clip(images, 0, 1)).astype(np.uint8), labels.astype(np.int64)


def load_data(name, n_train=None, n_test=None):
    """(x_train, y_train), (x_test, y_test): uint8 images (N, C, H, W), int64 labels,
    the first n_train / n_test of each split (None: all).

    The files are looked for in MINIDL_DATA (else ~/.cache/minidl). With full settings a
    missing data set is downloaded; in FAST mode it never is: synthetic images replace it.
    """
    loader, shape = {"mnist": (load_mnist, (1, 28, 28)),
                     "cifar10": (load_cifar10, (3, 32, 32))}[name]
    try:
        (x_train, y_train), (x_test, y_test) = loader(download=not FAST)
        print(f"{name}: the real data set, from {data_root()}")
    except (FileNotFoundError, DatasetError):
        if not FAST:
            raise
        print(f"{name}: files not found in {data_root()}, so this run uses SYNTHETIC images "
              f"(FAST mode never downloads); the numbers below are not {name} results.\n"
              f"Set MINIDL_DATA to a folder holding the {name} files to use the real data.")
        x_train, y_train = synthetic_images(n_train or 2000, shape, seed=1)
        x_test, y_test = synthetic_images(n_test or 500, shape, seed=2)
    return (x_train[:n_train], y_train[:n_train]), (x_test[:n_test], y_test[:n_test])
''')


def exercises_intro(items):
    lines = "\n".join(f"{i}. {text}" for i, text in enumerate(items, 1))
    return md(f"""
## Exercises

{lines}

Each exercise has a stub below and a checker from `minidl.exercises`. The checker runs
your function on several drawn configurations, compares it with finite differences and
with minidl's own layer, and prints `PASS` or the worst entries and a hint. Until you
fill a stub in, its checker says "not written yet".
""")


def exercise(signature, body_hint, checker):
    name = signature.split("(")[0]
    return code(f'''
from minidl.exercises import {checker}


def {signature}:
    # {body_hint}
    raise NotImplementedError


{checker}({name})
''')


# --------------------------------------------------------------------------- 01
NB01 = [
    md(r'''
# 01 · Backpropagation by hand: a Linear layer and the squared error

Every layer in minidl has a hand-written `backward`. This notebook derives the first one,
checks it numerically, and trains a regression with it. Everything else in the library is
this same recipe repeated: **forward, derive the local gradients, chain them, check with
finite differences**.

The model is a single linear layer $y = xW + b$ with

* $x \in \mathbb{R}^{N \times D}$: a batch of $N$ inputs with $D$ features,
* $W \in \mathbb{R}^{D \times M}$, $b \in \mathbb{R}^{M}$ (minidl stores `Linear.weight` as
  `(in_features, out_features)`: the transpose of PyTorch's),
* $y \in \mathbb{R}^{N \times M}$,

and the loss is the mean squared error against targets $t$:

$$ L = \frac{1}{NM} \sum_{n,m} (y_{nm} - t_{nm})^2 . $$
'''),
    SETUP,
    md(r'''
## Deriving the gradients

Start from the loss. $L$ depends on $y_{nm}$ only through one term of the sum:

$$ \frac{\partial L}{\partial y_{nm}} = \frac{2}{NM}\,(y_{nm} - t_{nm}) . $$

Call this array $\delta = \partial L / \partial y$ (`dy` in code; the *upstream gradient*).
Now the layer: $y_{nm} = \sum_d x_{nd} W_{dm} + b_m$. The chain rule sums over every
$y_{nm}$ that a parameter touches:

$$ \frac{\partial L}{\partial W_{dm}} = \sum_n \delta_{nm}\, x_{nd}
   \quad\Longrightarrow\quad \frac{\partial L}{\partial W} = x^\top \delta \quad (D \times M) $$

$$ \frac{\partial L}{\partial b_m} = \sum_n \delta_{nm}
   \quad\Longrightarrow\quad
   \frac{\partial L}{\partial b} = \textstyle\sum_n \delta_{n,:} \quad (M) $$

$$ \frac{\partial L}{\partial x_{nd}} = \sum_m \delta_{nm}\, W_{dm}
   \quad\Longrightarrow\quad \frac{\partial L}{\partial x} = \delta\, W^\top \quad (N \times D) $$

A useful sanity rule: **every gradient has the shape of the thing it is the gradient of**,
and there is usually only one way to multiply the available arrays to get that shape.

Below, the backward is written first as loops that read exactly like the index formulas.
(The vectorised version is exercise 1.)
'''),
    code(r'''
def linear_forward(x, w, b):
    return x @ w + b


def mse_forward(y, t):
    return np.mean((y - t) ** 2)


def mse_backward(y, t):
    """dL/dy of the mean over all N*M entries."""
    return 2 * (y - t) / y.size


def linear_backward_loops(dy, x, w):
    """dx, dw, db written as the index formulas above."""
    n_samples, n_in = x.shape
    n_out = w.shape[1]
    dx, dw, db = np.zeros_like(x), np.zeros_like(w), np.zeros(n_out)
    for n in range(n_samples):
        for m in range(n_out):
            db[m] += dy[n, m]
            for d in range(n_in):
                dw[d, m] += dy[n, m] * x[n, d]
                dx[n, d] += dy[n, m] * w[d, m]
    return dx, dw, db
'''),
    md(r'''
## Checking the derivation numerically

A derivative is a limit of difference quotients. The **centered difference**

$$ \frac{\partial L}{\partial \theta_i} \approx
   \frac{L(\theta + \varepsilon e_i) - L(\theta - \varepsilon e_i)}{2\varepsilon} $$

has an error of order $\varepsilon^2$, so with $\varepsilon = 10^{-6}$ in float64 the two
sides agree to about $10^{-9}$. We compare with the relative error
$|a - b| / (|a| + |b|)$; anything above $10^{-5}$ means a bug. (`numerical_gradient`
perturbs one entry at a time, in place, and restores it.)
'''),
    code(r'''
N, D, M = 4, 3, 2
x = rng.standard_normal((N, D))
w = rng.standard_normal((D, M))
b = rng.standard_normal(M)
t = rng.standard_normal((N, M))

y = linear_forward(x, w, b)
dx, dw, db = linear_backward_loops(mse_backward(y, t), x, w)

numeric_dw = numerical_gradient(lambda w_: mse_forward(linear_forward(x, w_, b), t), w.copy())
numeric_db = numerical_gradient(lambda b_: mse_forward(linear_forward(x, w, b_), t), b.copy())
numeric_dx = numerical_gradient(lambda x_: mse_forward(linear_forward(x_, w, b), t), x.copy())
for name, analytic, numeric in [("dw", dw, numeric_dw), ("db", db, numeric_db),
                                ("dx", dx, numeric_dx)]:
    print(f"{name}: relative error {rel_error(analytic, numeric):.1e}")
'''),
    md(r'''
minidl's `Linear` implements the same three formulas (vectorised). Its `backward` takes
`dy` and returns `dx`, and **adds** the parameter gradients into `weight.grad` and
`bias.grad`. `check_layer` runs the same finite-difference test on a layer, for the input
and every parameter, with a random upstream gradient.
'''),
    code(r'''
layer = L.Linear(D, M).to(np.float64)
layer.weight.data[...] = w
layer.bias.data[...] = b
loss_fn = losses.MSELoss()
loss = loss_fn(layer(x), t)
dx_minidl = layer.backward(loss_fn.backward())
print(f"loss: ours {mse_forward(y, t):.6f}, minidl {float(loss):.6f}")
print(f"dx {rel_error(dx, dx_minidl):.1e}, dw {rel_error(dw, layer.weight.grad):.1e}, "
      f"db {rel_error(db, layer.bias.grad):.1e}  (ours vs minidl)")
print(check_layer(L.Linear(D, M), x))
'''),
    md(r'''
## Training a regression

With gradients in hand, training is a loop: forward, loss, backward, and a step against
the gradient, $\theta \leftarrow \theta - \eta\,\partial L/\partial\theta$. The data are a
noisy linear map, so the fitted weights should approach the true ones.
'''),
    code(r'''
n_samples = 200
w_true = rng.standard_normal((D, M))
b_true = rng.standard_normal(M)
x_data = rng.standard_normal((n_samples, D))
t_data = x_data @ w_true + b_true + 0.1 * rng.standard_normal((n_samples, M))

minidl.seed(0)
model = L.Linear(D, M).to(np.float64)
opt = optim.SGD(model.parameters(), lr=0.1)
loss_fn = losses.MSELoss()
steps = 100
curve = []
for step in range(steps):
    loss = loss_fn(model(x_data), t_data)
    opt.zero_grad()                       # backward ADDS into .grad: reset it first
    model.backward(loss_fn.backward())
    opt.step()                            # w <- w - lr * dw, b <- b - lr * db
    curve.append(float(loss))

print(f"loss {curve[0]:.3f} -> {curve[-1]:.4f} (noise floor 0.01)")
print("largest error in W:", np.abs(model.weight.data - w_true).max().round(3),
      " in b:", np.abs(model.bias.data - b_true).max().round(3))

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].semilogy(curve)
axes[0].set(xlabel="step", ylabel="MSE", title="training loss")
prediction = model(x_data)
axes[1].scatter(t_data[:, 0], prediction[:, 0], s=8)
axes[1].plot([-4, 4], [-4, 4], "k--", lw=1)
axes[1].set(xlabel="target (output 0)", ylabel="prediction", title="fit after training")
plt.tight_layout()
plt.show()
'''),
    exercises_intro([
        "Write `linear_backward(dout, x, w, b)` **without loops**: return `(dx, dw, db)` for "
        "`y = x @ w + b`. Use the shape rule.",
        "Write `mse_loss(pred, target)` returning `(loss, dpred)` for the mean of the squared "
        "error over *all* entries.",
    ]),
    exercise("linear_backward(dout, x, w, b)", "return dx, dw, db (shapes of x, w, b)",
             "check_linear_backward"),
    exercise("mse_loss(pred, target)", "return loss (a number), dpred (shape of pred)",
             "check_mse_loss"),
]

# --------------------------------------------------------------------------- 02
NB02 = [
    md(r'''
# 02 · A multi-layer perceptron on MNIST, from the pieces and with `Trainer`

A network is a chain of layers; its backward is the chain rule applied layer by layer in
reverse. Here we build a two-layer perceptron

$$ x \xrightarrow{\text{Linear}} h \xrightarrow{\text{ReLU}} a \xrightarrow{\text{Linear}} z
   \xrightarrow{\text{softmax CE}} L $$

from minidl's layers, write the training loop ourselves, and then hand the same model to
`minidl.train.Trainer`.

**Softmax cross-entropy.** For logits $z_n \in \mathbb{R}^K$ and label $y_n$,
$p_n = \mathrm{softmax}(z_n)$, $p_{nk} = e^{z_{nk}} / \sum_j e^{z_{nj}}$ and

$$ L = -\frac{1}{N}\sum_n \log p_{n, y_n}, \qquad
   \frac{\partial L}{\partial z_{nk}} = \frac{1}{N}\left(p_{nk} - [k = y_n]\right). $$

**ReLU.** $a = \max(h, 0)$ passes the gradient where $h > 0$ and blocks it elsewhere:
$\partial L / \partial h = \partial L / \partial a \odot [h > 0]$.
'''),
    SETUP,
    DATA,
    code(r'''
n_train, n_test = (2000, 500) if FAST else (None, None)
(x_train, y_train), (x_test, y_test) = load_data("mnist", n_train, n_test)
print("train", x_train.shape, x_train.dtype, " test", x_test.shape)

fig, axes = plt.subplots(2, 8, figsize=(10, 2.8))
for ax, image, label in zip(axes.flat, x_train, y_train):
    ax.imshow(image[0], cmap="gray")
    ax.set_title(str(label))
    ax.axis("off")
plt.show()
'''),
    md(r'''
## The network from the pieces

Inputs are scaled to $[0, 1]$, standardised with MNIST's mean and standard deviation,
and flattened to 784 features. The forward pass runs the layers in order; the backward
pass runs them in reverse, each `backward(d)` returning the gradient for the layer below.
'''),
    code(r'''
from minidl.data import MNIST_MEAN, MNIST_STD


def as_features(images):
    x = (images.astype(np.float32) / 255 - MNIST_MEAN[0]) / MNIST_STD[0]
    return x.reshape(len(x), -1)


minidl.seed(0)
net = [L.Linear(784, 128, init="he_normal"), L.ReLU(), L.Linear(128, 10)]
params = [p for layer in net for p in layer.parameters()]
loss_fn = losses.CrossEntropyLoss()


def forward(x):
    for layer in net:
        x = layer(x)
    return x


def backward(grad):
    for layer in reversed(net):
        grad = layer.backward(grad)
    return grad


print([tuple(p.shape) for p in params], sum(p.data.size for p in params), "parameters")
'''),
    md(r'''
Before training, check the whole chain end to end on a tiny copy of the architecture:
`check_model_with_loss` compares `model.backward(loss.backward())` with finite
differences of the scalar loss, for the input and every parameter.
'''),
    code(r'''
from minidl.gradcheck import check_model_with_loss

tiny = L.Sequential(L.Linear(6, 5), L.ReLU(), L.Linear(5, 3))
print(check_model_with_loss(tiny, losses.CrossEntropyLoss(), rng.standard_normal((4, 6)),
                            np.array([0, 2, 1, 2])))
'''),
    code(r'''
epochs, batch_size, lr = (2, 64, 0.1) if FAST else (10, 64, 0.1)
features_train, features_test = as_features(x_train), as_features(x_test)


def accuracy(x, y):
    return float((forward(x).argmax(axis=1) == y).mean())


step_losses, test_accuracy = [], []
start = time.perf_counter()
for epoch in range(epochs):
    order = rng.permutation(len(features_train))
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        loss = loss_fn(forward(features_train[batch]), y_train[batch])
        for p in params:
            p.zero_grad()
        backward(loss_fn.backward())
        for p in params:                  # plain SGD, by hand
            p.data -= lr * p.grad
        step_losses.append(float(loss))
    test_accuracy.append(accuracy(features_test, y_test))
    print(f"epoch {epoch + 1}: last loss {step_losses[-1]:.3f}, "
          f"test accuracy {test_accuracy[-1]:.3f}")
print(f"{time.perf_counter() - start:.1f} s")

plt.figure(figsize=(6, 3))
plt.plot(step_losses)
plt.xlabel("step")
plt.ylabel("cross-entropy")
plt.title("training loss, hand-written loop")
plt.show()
'''),
    md(r'''
## The same model with `Trainer`

`Trainer` runs exactly this loop (forward, loss, `zero_grad`, backward, `step`), plus
batching through a `DataLoader` with transforms, validation, a `History` of the metrics,
checkpoints and callbacks. The first layer becomes `Flatten`, since the loader yields
images `(N, 1, 28, 28)`.
'''),
    code(r'''
from minidl.data import Compose, DataLoader, Normalize, ToFloat
from minidl.train import Trainer

prepare = Compose([ToFloat(), Normalize(MNIST_MEAN, MNIST_STD)])
train_loader = DataLoader(x_train, y_train, batch_size=batch_size, transform=prepare, seed=0)
test_loader = DataLoader(x_test, y_test, batch_size=500, shuffle=False, transform=prepare)

minidl.seed(0)
model = L.Sequential(L.Flatten(), L.Linear(784, 128, init="he_normal"), L.ReLU(),
                     L.Linear(128, 10))
trainer = Trainer(model, losses.CrossEntropyLoss(),
                  optim.SGD(model.parameters(), lr=0.02, momentum=0.9), quiet=True)
history = trainer.fit(train_loader, test_loader, epochs=epochs)
for row in history.rows:
    print(f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}  "
          f"train acc {row['train_top1']:.3f}  test acc {row['val_top1']:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(history["epoch"], history["train_loss"], "o-", label="train")
axes[0].plot(history["epoch"], history["val_loss"], "o-", label="test")
axes[0].set(xlabel="epoch", ylabel="loss")
axes[0].legend()
axes[1].plot(history["epoch"], history["val_top1"], "o-")
axes[1].set(xlabel="epoch", ylabel="test accuracy")
plt.tight_layout()
plt.show()
'''),
    exercises_intro([
        "Write `softmax_ce(logits, labels)` returning `(loss, dlogits)`. Subtract each row's "
        "maximum before `exp` (one configuration has logits of size 1000).",
        "Write `relu_backward(dout, x)` returning `dx`.",
    ]),
    exercise("softmax_ce(logits, labels)", "return loss (a number), dlogits (N, K)",
             "check_softmax_ce"),
    exercise("relu_backward(dout, x)", "return dx, shaped like x", "check_relu_backward"),
]

# --------------------------------------------------------------------------- 03
NB03 = [
    md(r'''
# 03 · Initialisation and activations

Why do deep networks train at all? Follow the variance of the signal through a stack of
layers $h^{(l)} = f(W^{(l)} h^{(l-1)})$. For one pre-activation
$s = \sum_{i=1}^{n_\text{in}} w_i h_i$ with independent, zero-mean weights:

$$ \operatorname{Var}(s) = n_\text{in}\, \operatorname{Var}(w)\, \mathbb{E}[h^2]. $$

* With $\operatorname{Var}(w) = 1/n_\text{in}$ (LeCun) the variance is kept for linear or
  tanh-like units near 0. **Glorot/Xavier** averages the forward and backward conditions:
  $\operatorname{Var}(w) = 2 / (n_\text{in} + n_\text{out})$.
* ReLU zeroes half of its inputs, so $\mathbb{E}[h^2] = \operatorname{Var}(s)/2$: **He**
  doubles the variance, $\operatorname{Var}(w) = 2 / n_\text{in}$.
* Too small (e.g. $\mathcal{N}(0, 0.01^2)$): the signal shrinks by a constant factor per
  layer, and so do the gradients (the backward pass multiplies by the same $W^\top$).
  Too large: it grows, and tanh saturates, where its derivative is 0.
* **Zero** initialisation: every hidden unit computes the same thing and receives the same
  gradient, forever. Nothing breaks the symmetry.

We measure this on a deep MLP with minidl's initialisers (`minidl.init`), looking at the
activations and the gradients of every layer.
'''),
    SETUP,
    DATA,
    code(r'''
n_batch, width = (128, 128) if FAST else (1000, 256)
(x_train, y_train), (x_test, y_test) = load_data("mnist", 2000 if FAST else None,
                                                 500 if FAST else None)
x_batch = ((x_train[:n_batch].astype(np.float32) / 255 - 0.1307) / 0.3081).reshape(n_batch, -1)
y_batch = y_train[:n_batch]


def normal_std_1(shape, dtype=None):
    return minidl.init.normal(shape, dtype, std=1.0)


INITS = {"zeros": "zeros", "N(0, 0.01²)": "normal", "N(0, 1)": normal_std_1,
         "Glorot": "glorot_normal", "He": "he_normal"}


def deep_mlp(init, activation, depth=8):
    layers, fan_in = [], 784
    for _ in range(depth):
        layers += [L.Linear(fan_in, width, init=init), activation()]
        fan_in = width
    return L.Sequential(*layers, L.Linear(width, 10, init=init))


def layer_statistics(model, x, y):
    """Activations after every nonlinearity, and dL/d(activation) for each."""
    loss_fn = losses.CrossEntropyLoss()
    activations, h = [], x
    for layer in model:
        h = layer(h)
        if not isinstance(layer, L.Linear):
            activations.append(h)
    loss_fn(h, y)
    grads, d = [], loss_fn.backward()
    for layer in reversed(list(model)):
        if not isinstance(layer, L.Linear):
            grads.append(d)               # gradient arriving at this activation's output
        d = layer.backward(d)
    return activations, grads[::-1]
'''),
    md(r'''
Before measuring, a gradient check of such a network, end to end through the loss. Its
784 x 128 first weight has too many entries for one finite difference each, so
`directional=True` checks one random direction $d$ per tensor instead, comparing
$\langle \nabla L, d\rangle$ with
$(L(\theta + \varepsilon d) - L(\theta - \varepsilon d)) / 2\varepsilon$.
'''),
    code(r'''
from minidl.gradcheck import check_model_with_loss

print(check_model_with_loss(deep_mlp("glorot_normal", L.Tanh, depth=3),
                            losses.CrossEntropyLoss(), x_batch[:4], y_batch[:4],
                            directional=True))
'''),
    md(r'''
## Activations and gradients per layer

For each initialisation: histograms (log counts) of the activations (top) and of their
gradients (bottom) in layers 1 to 8 of a tanh network and of a ReLU network, then the
standard deviation per layer. (Zero initialisation is left out of the plots: every
activation and gradient is exactly 0.)
'''),
    code(r'''
def plot_histograms(activation, title):
    fig, axes = plt.subplots(2, len(INITS) - 1, figsize=(15, 5))
    stats = {}
    for name, init in INITS.items():
        minidl.seed(0)
        acts, grads = layer_statistics(deep_mlp(init, activation), x_batch, y_batch)
        stats[name] = ([a.std() for a in acts], [g.std() for g in grads])
        if name == "zeros":
            continue  # every activation and gradient is exactly 0: nothing to draw
        column = list(INITS).index(name) - 1
        for depth, (a, g) in enumerate(zip(acts, grads), 1):
            for ax, values in ((axes[0, column], a), (axes[1, column], g)):
                counts, edges = np.histogram(values, bins=50)
                ax.stairs(counts, edges, label=f"layer {depth}")
        axes[0, column].set_title(f"{name}: activations")
        axes[1, column].set_title(f"{name}: gradients")
        for ax in axes[:, column]:
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.subplots_adjust(hspace=0.35, wspace=0.3)
    plt.show()
    return stats


tanh_stats = plot_histograms(L.Tanh, f"tanh network, 8 hidden layers of {width}")
relu_stats = plot_histograms(L.ReLU, f"ReLU network, 8 hidden layers of {width}")
'''),
    code(r'''
fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
for row, (stats, net_name) in enumerate([(tanh_stats, "tanh"), (relu_stats, "ReLU")]):
    for name, (act_std, grad_std) in stats.items():
        if name == "zeros":
            continue                      # all zero: nothing to draw on a log scale
        axes[2 * row].semilogy(range(1, 9), act_std, "o-", label=name)
        axes[2 * row + 1].semilogy(range(1, 9), grad_std, "o-", label=name)
    axes[2 * row].set(title=f"{net_name}: std of activations", xlabel="layer")
    axes[2 * row + 1].set(title=f"{net_name}: std of gradients", xlabel="layer")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

print(f"{'init':<14}{'tanh act. std, layer 1 -> 8':>30}{'ReLU act. std, layer 1 -> 8':>32}")
for name in INITS:
    t, r = tanh_stats[name][0], relu_stats[name][0]
    print(f"{name:<14}{t[0]:>14.3g} -> {t[-1]:<12.3g}{r[0]:>16.3g} -> {r[-1]:<12.3g}")
'''),
    md(r'''
What to read from the plots: with $\mathcal{N}(0, 0.01^2)$ the activations collapse
towards 0 layer after layer (and the gradients with them); with $\mathcal{N}(0, 1)$ tanh
saturates at $\pm 1$ (its gradient vanishes) and ReLU activations explode. With Glorot
or He, tanh activations shrink only slowly (tanh compresses a little at every layer);
for ReLU, He keeps the scale steady while Glorot, half of He's variance for square
layers, loses a factor of about $\sqrt 2$ per layer.

## The seed experiment: zero initialisation stays at chance

With all weights zero, every hidden unit has the same output and the same gradient, and
with ReLU that gradient is exactly zero: $\partial L/\partial W_1 = x^\top (\delta W_2^\top
\odot [h > 0])$ with $W_2 = 0$. Only the last bias learns, so the network gives every
image the same class, whatever the seed: its accuracy is that class's share of the test
set, about chance. He initialisation, trained the same way, learns.
'''),
    code(r'''
from minidl.data import Compose, DataLoader, Normalize, ToFloat
from minidl.train import Trainer

prepare = Compose([ToFloat(), Normalize((0.1307,), (0.3081,))])
seeds, epochs = ([0, 1, 2], 1) if FAST else ([0, 1, 2, 3, 4], 3)
results = {}
for init in ["zeros", "he_normal"]:
    for seed in seeds:
        minidl.seed(seed)
        model = L.Sequential(L.Flatten(), L.Linear(784, 64, init=init), L.ReLU(),
                             L.Linear(64, 10, init=init))
        trainer = Trainer(model, losses.CrossEntropyLoss(),
                          optim.SGD(model.parameters(), lr=0.02, momentum=0.9), quiet=True)
        history = trainer.fit(DataLoader(x_train, y_train, 64, transform=prepare, seed=seed),
                              DataLoader(x_test, y_test, 500, shuffle=False, transform=prepare),
                              epochs=epochs)
        predicted = model(prepare(x_test)).argmax(axis=1)
        results.setdefault(init, []).append((history["val_top1"][-1], len(np.unique(predicted))))
for init, runs in results.items():
    print(f"{init:>10}: test accuracy per seed {[round(acc, 3) for acc, _ in runs]}, "
          f"distinct classes predicted {[classes for _, classes in runs]}")
'''),
    exercises_intro([
        "Write `sigmoid_backward(dout, x)`: the gradient of $\\sigma(x) = 1 / (1 + e^{-x})$. "
        "Where is it largest, and what does that say about deep sigmoid networks?",
        "Write `leaky_relu_backward(dout, x, negative_slope)` for "
        "$f(x) = x$ if $x > 0$ else $\\alpha x$.",
    ]),
    exercise("sigmoid_backward(dout, x)", "return dx, shaped like x", "check_sigmoid_backward"),
    exercise("leaky_relu_backward(dout, x, negative_slope)", "return dx, shaped like x",
             "check_leaky_relu_backward"),
]

# --------------------------------------------------------------------------- 04
NB04 = [
    md(r'''
# 04 · Convolution: from loops to im2col and one matrix product

A 2-D convolution layer (a cross-correlation, as in every framework) with input
$x \in \mathbb{R}^{N \times C \times H \times W}$, filters $w \in \mathbb{R}^{F \times C
\times k_h \times k_w}$, bias $b \in \mathbb{R}^F$, stride $s$ and zero padding $p$:

$$ y_{n,f,i,j} = b_f + \sum_{c=0}^{C-1}\sum_{u=0}^{k_h-1}\sum_{v=0}^{k_w-1}
   w_{f,c,u,v}\; x^{\text{pad}}_{n,\,c,\,is+u,\,js+v}, \qquad
   H_\text{out} = \left\lfloor \frac{H + 2p - k_h}{s} \right\rfloor + 1 . $$

Written as loops this is slow in Python. **im2col** copies every input window into a row
of a matrix, after which the whole convolution is a single matrix product (GEMM), which
NumPy hands to an optimised BLAS. Its backward needs the adjoint, **col2im**.
'''),
    SETUP,
    code(r'''
def conv2d_loops(x, w, b, stride=1, padding=0):
    """The definition, one output number at a time."""
    n_samples, _, height, width = x.shape
    n_filters, _, kh, kw = w.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    y = np.zeros((n_samples, n_filters, out_h, out_w))
    for n in range(n_samples):
        for f in range(n_filters):
            for i in range(out_h):
                for j in range(out_w):
                    window = x_pad[n, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return y


x = rng.standard_normal((2, 3, 7, 6))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
y_loops = conv2d_loops(x, w, b, stride=2, padding=1)
# minidl.naive keeps a loop reference (forward AND backward) of every core layer; its
# convolution loops over output pixels only (batch and channels vectorised)
from minidl import naive

y_naive, conv_cache = naive.conv2d_forward(x, w, b, stride=2, padding=1)
print(f"output shape {y_loops.shape}; loops vs minidl.naive.conv2d_forward: relative error "
      f"{rel_error(y_loops, y_naive):.1e}")
'''),
    md(r'''
## im2col: windows as rows

`minidl.layers.im2col(x, kernel_size, stride, padding)` returns a matrix with one row per
output pixel $(n, i, j)$ and one column per window entry. minidl orders the columns
$(u, v, c)$: kernel row, kernel column, then channel (channels last makes the copy
faster, see the docstring of `minidl.layers.conv`). The picture shows it for one
$4 \times 4$ image with two channels, a $3 \times 3$ kernel and padding 1: each entry is
the index of the pixel it was copied from (channel 1 adds 100); blank entries come from
the zero padding.
'''),
    code(r'''
ids = np.concatenate([np.arange(16.0), 100 + np.arange(16.0)]).reshape(1, 2, 4, 4)
# shift by 1 so the zero padding can be told apart from pixel 0, then shift back
cols = L.im2col(ids + 1, kernel_size=3, stride=1, padding=1) - 1   # -1: padding
print("x", ids.shape, "-> cols", cols.shape, "= (N*H_out*W_out, kh*kw*C)")

fig, ax = plt.subplots(figsize=(11, 7))
ax.imshow(np.where(cols < 0, np.nan, cols % 100), cmap="viridis")
for (row, column), value in np.ndenumerate(cols):
    ax.text(column, row, f"{int(value)}", ha="center", va="center", fontsize=6,
            color="white" if value < 0 or value % 100 < 8 else "black")
ax.set_xticks(range(cols.shape[1]))
ax.set_xticklabels([f"u{u}v{v}c{c}" for u in range(3) for v in range(3) for c in range(2)],
                   rotation=90, fontsize=7)
ax.set_ylabel("output pixel (i, j), row-major")
ax.set_title("the im2col matrix: one row per window (blank: padding)")
plt.show()
'''),
    md(r'''
With the filters rearranged to a matrix $W_\text{mat}$ of shape $(k_h k_w C) \times F$ in
the same $(u, v, c)$ order, the convolution is `cols @ W_mat + b`, reshaped back to
$(N, F, H_\text{out}, W_\text{out})$. This is what `minidl.layers.Conv2d` does.
'''),
    code(r'''
def conv2d_im2col(x, w, b, stride=1, padding=0):
    n_samples, _, height, width = x.shape
    n_filters, channels, kh, kw = w.shape
    out_h = (height + 2 * padding - kh) // stride + 1
    out_w = (width + 2 * padding - kw) // stride + 1
    cols = L.im2col(x, (kh, kw), stride, padding)                  # (N*out_h*out_w, kh*kw*C)
    w_mat = w.transpose(2, 3, 1, 0).reshape(kh * kw * channels, n_filters)  # rows (u, v, c)
    y_rows = cols @ w_mat + b                                     # ONE matrix product
    return y_rows.reshape(n_samples, out_h, out_w, n_filters).transpose(0, 3, 1, 2)


layer = L.Conv2d(3, 4, 3, stride=2, padding=1).to(np.float64)
layer.weight.data[...], layer.bias.data[...] = w, b
y_gemm = conv2d_im2col(x, w, b, 2, 1)
print(f"im2col + GEMM vs loops: relative error {rel_error(y_gemm, y_loops):.1e}")
print(f"minidl Conv2d vs loops: relative error {rel_error(layer(x), y_loops):.1e}")
'''),
    md(r'''
## col2im, the adjoint, and the backward pass

Let $\delta = \partial L / \partial y$, rearranged as rows $\delta_\text{rows}$ of shape
$(N H_\text{out} W_\text{out}) \times F$. Since $Y = \text{cols}\, W_\text{mat}$ is a
Linear layer applied to the rows of cols (01!):

$$ \frac{\partial L}{\partial W_\text{mat}} = \text{cols}^\top \delta_\text{rows}, \qquad
   \frac{\partial L}{\partial b} = \textstyle\sum_\text{rows} \delta_\text{rows}, \qquad
   \frac{\partial L}{\partial\, \text{cols}} = \delta_\text{rows} W_\text{mat}^\top . $$

And cols is a linear function of $x$: im2col is a matrix $A$ made of 0s and 1s
(a copy), so $\partial L/\partial x = A^\top\, \partial L / \partial\,\text{cols}$. That
transpose is **col2im**: it *adds* every column entry back into the pixel it came from
(pixels shared by overlapping windows receive several contributions). The defining
property of the adjoint is

$$ \langle \operatorname{im2col}(x), c \rangle = \langle x, \operatorname{col2im}(c) \rangle
   \quad \text{for all } x, c . $$
'''),
    code(r'''
for stride, padding in [(1, 0), (1, 1), (2, 1), (3, 2)]:
    x_test = rng.standard_normal((2, 3, 7, 6))
    c = rng.standard_normal(L.im2col(x_test, 3, stride, padding).shape)
    lhs = np.sum(L.im2col(x_test, 3, stride, padding) * c)
    rhs = np.sum(x_test * L.col2im(c, x_test.shape, 3, stride, padding))
    print(f"stride {stride} padding {padding}: <im2col(x), c> = {lhs:+.10f}   "
          f"<x, col2im(c)> = {rhs:+.10f}   rel. error {rel_error(lhs, rhs):.1e}")

# col2im of a matrix of ones counts how many windows cover each pixel
coverage = L.col2im(np.ones(L.im2col(np.zeros((1, 1, 7, 7)), 3, 1, 1).shape), (1, 1, 7, 7),
                    3, 1, 1)
plt.figure(figsize=(3.5, 3))
plt.imshow(coverage[0, 0], cmap="magma")
plt.colorbar()
plt.title("windows covering each pixel\n(3x3, stride 1, padding 1)")
plt.show()
'''),
    code(r'''
def conv2d_backward_im2col(dy, x, w, stride=1, padding=0):
    n_filters, channels, kh, kw = w.shape
    cols = L.im2col(x, (kh, kw), stride, padding)
    w_mat = w.transpose(2, 3, 1, 0).reshape(kh * kw * channels, n_filters)
    dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, n_filters)     # rows ordered (n, i, j)
    dw = (cols.T @ dy_rows).reshape(kh, kw, channels, n_filters).transpose(3, 2, 0, 1)
    db = dy_rows.sum(axis=0)
    dx = L.col2im(dy_rows @ w_mat.T, x.shape, (kh, kw), stride, padding)
    return dx, dw, db


dy = rng.standard_normal(y_loops.shape)
dx, dw, db = conv2d_backward_im2col(dy, x, w, stride=2, padding=1)
loss = lambda: np.sum(conv2d_loops(x, w, b, 2, 1) * dy)       # L = <y, dy>: dL/dy = dy
for name, analytic, tensor in [("dx", dx, x), ("dw", dw, w), ("db", db, b)]:
    numeric = numerical_gradient(lambda _: loss(), tensor)
    print(f"{name}: relative error vs finite differences {rel_error(analytic, numeric):.1e}")
print(check_layer(L.Conv2d(3, 4, 3, stride=2, padding=1), x))
'''),
    md(r'''
## Speed: loops, pixel loops, im2col + GEMM

The same convolution timed four ways (best of a few runs). The GEMM version is orders of
magnitude faster than the loops. `Conv2d` runs the same GEMM; its channels-last im2col,
reused buffers and threads pay off on larger inputs than these (on tiny ones its extra
bookkeeping can make it a little slower than the bare function above).
'''),
    code(r'''
shape = (4, 3, 16, 16) if FAST else (32, 3, 32, 32)
x_big = rng.standard_normal(shape).astype(np.float32)
w_big = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
b_big = np.zeros(16, np.float32)
conv = L.Conv2d(3, 16, 3, padding=1)
conv.weight.data[...] = w_big


def best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


timings = {
    "4 loops": best_time(lambda: conv2d_loops(x_big, w_big, b_big, 1, 1), 1),
    "pixel loop\n(naive.conv2d_forward)": best_time(
        lambda: naive.conv2d_forward(x_big, w_big, b_big, 1, 1), 3),
    "im2col + GEMM\n(above)": best_time(lambda: conv2d_im2col(x_big, w_big, b_big, 1, 1), 5),
    "minidl Conv2d": best_time(lambda: conv(x_big), 5),
}
for name, seconds in timings.items():
    print(f"{name.splitlines()[0]:<16}{seconds * 1e3:10.2f} ms   "
          f"{timings['4 loops'] / seconds:8.0f}x the loops")
plt.figure(figsize=(7, 3))
plt.bar(list(timings), [s * 1e3 for s in timings.values()])
plt.yscale("log")
plt.ylabel("ms (log scale)")
plt.title(f"forward of a 3->16 3x3 convolution on x {shape}")
plt.show()
'''),
    exercises_intro([
        "Write `conv2d_backward(dout, x, w, b, stride, padding)` returning `(dx, dw, db)` "
        "**with loops**, straight from the definition (no im2col): each output number "
        "`y[n, f, i, j]` sends `dout[n, f, i, j] * window` to `dw[f]` and "
        "`dout[n, f, i, j] * w[f]` to the window of the padded `dx`.",
        "Write `col2im(cols, x_shape, kernel_size, stride, padding)`: the adjoint of "
        "minidl's `im2col` (columns ordered (u, v, c)). Hint: loop over the $k^2$ kernel "
        "offsets, not over pixels.",
    ]),
    exercise("conv2d_backward(dout, x, w, b, stride, padding)", "return dx, dw, db",
             "check_conv2d_backward"),
    exercise("col2im(cols, x_shape, kernel_size, stride, padding)",
             "return an array of shape x_shape", "check_col2im"),
]

# --------------------------------------------------------------------------- 05
NB05 = [
    md(r'''
# 05 · Pooling and batch normalisation

**Max-pooling** keeps the largest value of each window. Its local gradient is 1 at the
position of the maximum and 0 elsewhere, so backward *routes* each upstream gradient to
the winner of its window (adding up where windows overlap). **Average pooling** spreads
it evenly, $1/k^2$ to every entry of the window.

**Batch normalisation** (training mode) normalises every feature with the statistics of
the current batch, then rescales:

$$ \mu = \frac{1}{m}\sum_i x_i, \quad \sigma^2 = \frac{1}{m}\sum_i (x_i - \mu)^2, \quad
   \hat x_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad y_i = \gamma \hat x_i + \beta . $$

Its backward is the interesting one: $\mu$ and $\sigma^2$ depend on every $x_i$ in the
batch, so each input's gradient depends on the whole batch.
'''),
    SETUP,
    md(r'''
## Pooling: routing the gradient

A $2\times2$ max-pool with stride 2 on a $4 \times 4$ image, and its backward for an
upstream gradient of ones: the gradient lands on the four maxima.
'''),
    code(r'''
image = rng.permutation(16).reshape(1, 1, 4, 4).astype(np.float64)
pool = L.MaxPool2d(2)
out = pool(image)
routed = pool.backward(np.ones_like(out))
avg = L.AvgPool2d(2)
avg(image)
spread = avg.backward(np.ones_like(out))

fig, axes = plt.subplots(1, 3, figsize=(10, 3))
for ax, array, title in [(axes[0], image, "x"), (axes[1], routed, "max-pool: dx"),
                         (axes[2], spread, "avg-pool: dx")]:
    ax.imshow(array[0, 0], cmap="Blues")
    for (i, j), value in np.ndenumerate(array[0, 0]):
        ax.text(j, i, f"{value:g}", ha="center", va="center")
    ax.set_title(title)
    ax.axis("off")
plt.show()
print("pooled:", out[0, 0].tolist())
'''),
    md(r'''
**Ties break finite differences.** If two entries of a window are equal, nudging one of
them by $+\varepsilon$ makes it the winner and by $-\varepsilon$ the loser: the centered
difference sees half a gradient at each, while any backward sends all of it to one. The
max is not differentiable there. Gradient checks of max-pooling therefore use inputs
with distinct values.
'''),
    code(r'''
distinct = (rng.permutation(2 * 3 * 6 * 5).reshape(2, 3, 6, 5) - 90) / 50.0
print(check_layer(L.MaxPool2d(3, stride=2), distinct))
tied = np.ones((1, 1, 2, 2))
print(check_layer(L.MaxPool2d(2), tied).table().splitlines()[2], " <- a tie: expected to fail")
'''),
    md(r'''
## BatchNorm backward, step by step through the graph

Write the forward as a chain of elementary steps, keep every intermediate, and walk
back through the chain: each step's local derivative times the gradient arriving from
above. Where a value fans out to several steps (here `xc` feeds both `var` and `xhat`),
the gradients from the branches **add up**.
'''),
    code(r'''
def batchnorm_forward_staged(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)                  # (D,)
    xc = x - mu                          # (N, D)
    var = (xc ** 2).mean(axis=0)         # (D,)
    std = np.sqrt(var + eps)
    inv = 1.0 / std
    xhat = xc * inv
    y = gamma * xhat + beta
    return y, (xc, var, std, inv, xhat, gamma)


def batchnorm_backward_staged(dy, cache):
    xc, var, std, inv, xhat, gamma = cache
    m = dy.shape[0]
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dxhat = dy * gamma
    dinv = (dxhat * xc).sum(axis=0)      # xhat = xc * inv
    dxc = dxhat * inv                    # ... first branch into xc
    dstd = -dinv / std ** 2              # inv = 1 / std
    dvar = dstd / (2 * std)              # std = sqrt(var + eps)
    dxc += 2 * xc * dvar / m             # var = mean(xc^2): second branch into xc
    dmu = -dxc.sum(axis=0)               # xc = x - mu
    dx = dxc + dmu / m                   # mu = mean(x), and x feeds xc directly
    return dx, dgamma, dbeta


x = rng.standard_normal((8, 3)) * [3.0, 0.5, 1.0] + [2.0, -1.0, 0.5]
gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
y, cache = batchnorm_forward_staged(x, gamma, beta)
dy = rng.standard_normal(y.shape)
dx, dgamma, dbeta = batchnorm_backward_staged(dy, cache)

bn = L.BatchNorm1d(3).to(np.float64)
bn.weight.data[...], bn.bias.data[...] = gamma, beta
print(f"forward, staged vs minidl: {rel_error(y, bn(x)):.1e}")
dx_minidl = bn.backward(dy)
print(f"backward, staged vs minidl: dx {rel_error(dx, dx_minidl):.1e}, "
      f"dgamma {rel_error(dgamma, bn.weight.grad):.1e}, dbeta {rel_error(dbeta, bn.bias.grad):.1e}")
numeric = numerical_gradient(lambda x_: np.sum(batchnorm_forward_staged(x_, gamma, beta)[0] * dy),
                             x.copy())
print(f"dx staged vs finite differences: {rel_error(dx, numeric):.1e}")
# the same walk through the graph, for (N, D) and (N, C, H, W): minidl.naive
from minidl import naive

_, naive_cache = naive.batch_norm_forward(x, gamma, beta)
print(f"dx staged vs minidl.naive.batch_norm_backward: "
      f"{rel_error(dx, naive.batch_norm_backward(dy, naive_cache)[0]):.1e}")
'''),
    md(r'''
## The closed form

Collapsing the chain (sums over the batch, per feature) gives

$$ \frac{\partial L}{\partial x_i} = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}
   \left( \frac{\partial L}{\partial y_i} - \frac{1}{m}\sum_j \frac{\partial L}{\partial y_j}
   - \hat x_i \,\frac{1}{m} \sum_j \frac{\partial L}{\partial y_j}\, \hat x_j \right). $$

The two subtracted terms are the gradient's projection onto the directions that
normalisation removes (a shift of all $x_i$ and a scaling around the mean): BatchNorm's
output does not change along them, so neither may the loss. This is the formula in
`minidl.layers.BatchNorm1d.backward` (exercise 2 asks you to write it). It touches each
array a few times instead of a dozen, which is why frameworks use it: compare the two on
a larger batch.
'''),
    code(r'''
big_x = rng.standard_normal((256, 512))
big_dy = rng.standard_normal(big_x.shape)
ones, zeros = np.ones(512), np.zeros(512)
_, big_cache = batchnorm_forward_staged(big_x, ones, zeros)
bn_big = L.BatchNorm1d(512).to(np.float64)


def closed_form_backward():
    bn_big(big_x)
    return bn_big.backward(big_dy)


def seconds(function, repeats=20):
    start = time.perf_counter()
    for _ in range(repeats):
        result = function()
    return (time.perf_counter() - start) / repeats, result


staged_s, staged_dx = seconds(lambda: batchnorm_backward_staged(big_dy, big_cache)[0])
closed_s, closed_dx = seconds(closed_form_backward)  # includes minidl's forward
print(f"staged backward {staged_s * 1e3:.2f} ms, closed form (forward + backward) "
      f"{closed_s * 1e3:.2f} ms; same dx: relative error {rel_error(staged_dx, closed_dx):.1e}")
'''),
    md(r'''
## Train and eval: running statistics

In training, BatchNorm uses the batch statistics and updates *running* estimates,
$r \leftarrow (1 - \text{momentum})\, r + \text{momentum}\cdot \text{batch statistic}$
(the variance in its unbiased form $\frac{m}{m-1}\sigma^2$). In evaluation (`eval()`)
it uses the running estimates, so a sample's output no longer depends on its batch.
'''),
    code(r'''
true_mean, true_std = np.array([2.0, -1.0, 0.5]), np.array([3.0, 0.5, 1.0])
bn = L.BatchNorm1d(3, momentum=0.1).to(np.float64)
steps = 60
means, variances = [], []
for _ in range(steps):
    bn(rng.standard_normal((32, 3)) * true_std + true_mean)
    means.append(bn.running_mean.copy())
    variances.append(bn.running_var.copy())

fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(means)
axes[0].hlines(true_mean, 0, steps, colors="gray", linestyles="dashed")
axes[0].set(title="running_mean (dashed: true mean)", xlabel="training step")
axes[1].plot(variances)
axes[1].hlines(true_std ** 2, 0, steps, colors="gray", linestyles="dashed")
axes[1].set(title="running_var (dashed: true variance)", xlabel="training step")
plt.show()

sample = (rng.standard_normal((1, 3)) * true_std + true_mean)
batch_a = np.concatenate([sample, rng.standard_normal((7, 3)) * true_std + true_mean])
batch_b = np.concatenate([sample, rng.standard_normal((7, 3)) + 5.0])
bn.train()
print("train mode, same sample in two batches:", bn(batch_a)[0].round(3), bn(batch_b)[0].round(3))
bn.eval()
print("eval mode,  same sample in two batches:", bn(batch_a)[0].round(3), bn(batch_b)[0].round(3))
eval_bn = L.BatchNorm1d(3).to(np.float64)
eval_bn.running_mean[...], eval_bn.running_var[...] = true_mean, true_std ** 2
print(check_layer(eval_bn.eval(), x))
'''),
    exercises_intro([
        "Write `maxpool_backward(dout, x, kernel_size, stride)` (no padding; windows may "
        "overlap when stride < kernel_size).",
        "Write `batch_norm_backward(dout, x, gamma, beta, eps)` returning `(dx, dgamma, dbeta)` "
        "with the closed form (recompute what you need from `x`).",
        "Write `avgpool_backward(dout, x, kernel_size, stride)`.",
    ]),
    exercise("maxpool_backward(dout, x, kernel_size, stride)", "return dx, shaped like x",
             "check_maxpool_backward"),
    exercise("batch_norm_backward(dout, x, gamma, beta, eps)", "return dx, dgamma, dbeta",
             "check_batch_norm_backward"),
    exercise("avgpool_backward(dout, x, kernel_size, stride)", "return dx, shaped like x",
             "check_avgpool_backward"),
]

# --------------------------------------------------------------------------- 06
NB06 = [
    md(r'''
# 06 · Optimizers and learning-rate schedules

An optimizer turns gradients into steps. minidl's optimizers (`minidl.optim`) follow
PyTorch's update rules exactly; each updates the `Param` objects it was given from their
`.grad`. For gradient $g_t$ at step $t$ and learning rate $\eta$:

* **SGD**: $\theta \leftarrow \theta - \eta g_t$.
* **Momentum** ($\mu$): $v \leftarrow \mu v + g_t$, $\theta \leftarrow \theta - \eta v$:
  a running sum of past gradients that damps oscillations across a valley and
  accelerates along it.
* **Nesterov**: the same velocity, but the step uses the look-ahead $g_t + \mu v$.
* **Adam**: per-coordinate scaling by running moments,
  $m \leftarrow \beta_1 m + (1-\beta_1) g$, $v \leftarrow \beta_2 v + (1-\beta_2) g^2$,
  $\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)$ with the bias
  corrections $\hat m = m / (1 - \beta_1^t)$, $\hat v = v / (1 - \beta_2^t)$.

The test surface is Rosenbrock's banana, $f(x, y) = (1 - x)^2 + 100\,(y - x^2)^2$, with
its minimum at $(1, 1)$ at the bottom of a long, curved, narrow valley.
'''),
    SETUP,
    code(r'''
def rosenbrock(p):
    x, y = p
    return (1 - x) ** 2 + 100 * (y - x ** 2) ** 2


def rosenbrock_grad(p):
    x, y = p
    return np.array([-2 * (1 - x) - 400 * x * (y - x ** 2), 200 * (y - x ** 2)])


point = np.array([-0.7, 1.3])
print("gradient check, relative error: %.1e" % rel_error(rosenbrock_grad(point),
                                   numerical_gradient(rosenbrock, point.copy())))
'''),
    md(r'''
Each optimizer gets one `Param` holding the point $(x, y)$; every step we write the
gradient into `param.grad` and call `opt.step()`: exactly what a network's backward and
the training loop do.
'''),
    code(r'''
steps = 2000 if FAST else 5000
start = (-1.5, 2.0)
OPTIMIZERS = {
    "SGD lr=1e-3": lambda ps: optim.SGD(ps, lr=1e-3),
    "momentum 0.9, lr=2e-4": lambda ps: optim.SGD(ps, lr=2e-4, momentum=0.9),
    "Nesterov 0.9, lr=2e-4": lambda ps: optim.SGD(ps, lr=2e-4, momentum=0.9, nesterov=True),
    "Adam lr=0.02": lambda ps: optim.Adam(ps, lr=0.02),
}
paths = {}
for name, make in OPTIMIZERS.items():
    param = minidl.Param(np.array(start))
    opt = make([param])
    path = [param.data.copy()]
    for _ in range(steps):
        param.grad[...] = rosenbrock_grad(param.data)
        opt.step()
        path.append(param.data.copy())
    paths[name] = np.array(path)
    print(f"{name:<24} after {steps} steps: ({param.data[0]:+.4f}, {param.data[1]:+.4f}), "
          f"f = {rosenbrock(param.data):.2e}")

gx, gy = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
plt.figure(figsize=(8, 6))
plt.contour(gx, gy, rosenbrock((gx, gy)), levels=np.logspace(-1, 3.5, 12), colors="0.7",
            linewidths=0.8)
for style, (name, path) in zip(["-", "--", ":", "-."], paths.items()):
    plt.plot(path[:, 0], path[:, 1], style, lw=2, marker="o", ms=3,
             markevery=steps // 20, label=f"{name} (dot every {steps // 20} steps)")
plt.plot(1, 1, "r*", ms=15, label="minimum (1, 1)")
plt.plot(*start, "ko")
plt.legend(loc="lower left", fontsize=8)
plt.title(f"{steps} steps on the Rosenbrock function from {start}")
plt.show()

plt.figure(figsize=(7, 3))
for name, path in paths.items():
    plt.semilogy([rosenbrock(p) for p in path], label=name)
plt.xlabel("step")
plt.ylabel("f")
plt.legend(fontsize=8)
plt.show()
'''),
    md(r'''
Plain SGD needs a learning rate small enough for the steep walls of the valley
($\eta < 2/\lambda_\max$ of the Hessian), and then crawls along its floor. Momentum
builds up speed along the floor. Adam's per-coordinate scaling makes its step size
nearly independent of the gradient's scale.

## Learning-rate schedules

A schedule changes `group["lr"]` between steps (`sched.step()` after `opt.step()`).
Here are minidl's schedules over 100 steps, starting from lr = 0.1.
'''),
    code(r'''
from minidl.optim import lr_scheduler as S

total = 100
SCHEDULES = {
    "StepLR(30, 0.1)": lambda o: S.StepLR(o, step_size=30, gamma=0.1),
    "MultiStepLR([50, 80])": lambda o: S.MultiStepLR(o, milestones=[50, 80], gamma=0.1),
    "ExponentialLR(0.97)": lambda o: S.ExponentialLR(o, gamma=0.97),
    "CosineAnnealingLR(100)": lambda o: S.CosineAnnealingLR(o, T_max=total),
    "LinearWarmupDecayLR(10, 100)": lambda o: S.LinearWarmupDecayLR(o, warmup_steps=10,
                                                                    total_steps=total),
    "OneCycleLR(max 0.1, 100)": lambda o: S.OneCycleLR(o, max_lr=0.1, total_steps=total),
}
plt.figure(figsize=(9, 4))
for name, make in SCHEDULES.items():
    opt = optim.SGD([minidl.Param(np.zeros(1))], lr=0.1)
    sched = make(opt)
    lrs = []
    for step in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if step < total - 1:
            sched.step()
    plt.plot(lrs, label=name)
plt.xlabel("step")
plt.ylabel("learning rate")
plt.legend(fontsize=8)
plt.title("learning-rate schedules")
plt.show()
'''),
    exercises_intro([
        "Write `sgd_momentum_step(param, grad, velocity, lr, momentum, nesterov)` returning "
        "`(param, velocity)`.",
        "Write `adam_step(param, grad, m, v, t, lr, beta1, beta2, eps)` returning "
        "`(param, m, v)`. Then use it instead of `optim.Adam` on the Rosenbrock function.",
    ]),
    exercise("sgd_momentum_step(param, grad, velocity, lr, momentum, nesterov)",
             "return param, velocity", "check_sgd_momentum_step"),
    exercise("adam_step(param, grad, m, v, t, lr, beta1, beta2, eps)", "return param, m, v",
             "check_adam_step"),
]

# --------------------------------------------------------------------------- 07
NB07 = [
    md(r'''
# 07 · Regularisation: dropout, weight decay, augmentation

With few training samples and many parameters a network memorises the training set:
training accuracy goes to 100 % while test accuracy stalls. Three standard remedies:

* **Dropout** (inverted): in training, keep each activation with probability $1 - p$ and
  scale the survivors by $1/(1-p)$, so that $\mathbb{E}[y] = x$ and evaluation needs no
  change: $y = x \odot \text{keep} / (1 - p)$, $\;\partial L/\partial x = \partial L/\partial
  y \odot \text{keep} / (1 - p)$ with the *same* mask.
* **Weight decay** (L2): add $\frac{\lambda}{2}\lVert w \rVert^2$ to the loss, whose gradient
  $\lambda w$ pulls every weight towards 0 (`optim.SGD(..., weight_decay=λ)` adds it).
* **Data augmentation**: train on randomly shifted copies of the images, so the net must
  learn what is invariant to small shifts.

We train the same MLP on a small subset of MNIST with each remedy and watch the gap
between training and test accuracy.
'''),
    SETUP,
    DATA,
    code(r'''
n_train, n_test = (200, 300) if FAST else (1000, 2000)
hidden = 128 if FAST else 512
(x_train, y_train), (x_test, y_test) = load_data("mnist", n_train, n_test)
print(f"{len(x_train)} training images, {len(x_test)} test images")
'''),
    md(r'''
## The pieces, checked

Dropout's backward reuses the forward's mask: `check_layer` resets minidl's generator
before every forward pass so the finite differences see the same mask. Weight decay in
`SGD` equals adding $\lambda w$ to the gradient by hand.
'''),
    code(r'''
print(check_layer(L.Dropout(0.5), rng.standard_normal((4, 6))))

w0 = rng.standard_normal((3, 4))
grad = rng.standard_normal((3, 4))
a, b = minidl.Param(w0.copy()), minidl.Param(w0.copy())
a.grad[...], b.grad[...] = grad, grad + 0.01 * w0
optim.SGD([a], lr=0.1, weight_decay=0.01).step()
optim.SGD([b], lr=0.1).step()
print(f"SGD(weight_decay) vs gradient + λw by hand: {rel_error(a.data, b.data):.1e}")
'''),
    code(r'''
from minidl.data import Compose, DataLoader, Normalize, RandomTranslate, ToFloat

augment = RandomTranslate(max_shift=3, padding_mode="constant")
preview = augment(np.repeat(x_train[:1], 8, axis=0), np.random.default_rng(0))
fig, axes = plt.subplots(1, 8, figsize=(10, 1.6))
for ax, image in zip(axes, preview):
    ax.imshow(image[0], cmap="gray")
    ax.axis("off")
fig.suptitle("one training image, randomly shifted by up to 3 pixels")
plt.show()
'''),
    code(r'''
normalise = [ToFloat(), Normalize((0.1307,), (0.3081,))]
evaluate_prepare = Compose(normalise)


def make_mlp(dropout):
    layers = [L.Flatten()]
    for fan_in in (784, hidden):
        layers += [L.Linear(fan_in, hidden, init="he_normal"), L.ReLU()]
        if dropout:
            layers.append(L.Dropout(dropout))
    return L.Sequential(*layers, L.Linear(hidden, 10))


def accuracy(model, x, y):
    model.eval()
    correct = sum(int((model(evaluate_prepare(x[i:i + 500])).argmax(1) == y[i:i + 500]).sum())
                  for i in range(0, len(x), 500))
    model.train()
    return correct / len(x)


def train(dropout=0.0, weight_decay=0.0, augmentation=False, epochs=40, seed=0):
    minidl.seed(seed)
    model = make_mlp(dropout)
    transform = Compose(([augment] if augmentation else []) + normalise)
    loader = DataLoader(x_train, y_train, batch_size=25 if FAST else 50, transform=transform,
                        seed=seed)
    opt = optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=weight_decay)
    loss_fn = losses.CrossEntropyLoss()
    curves = {"train": [], "test": []}
    for epoch in range(epochs):
        for xb, yb in loader:
            loss_fn(model(xb), yb)
            opt.zero_grad()
            model.backward(loss_fn.backward())
            opt.step()
        curves["train"].append(accuracy(model, x_train, y_train))
        curves["test"].append(accuracy(model, x_test, y_test))
    return curves


epochs = 15 if FAST else 50
RUNS = {"baseline": {}, "dropout 0.5": {"dropout": 0.5},
        "weight decay 5e-3": {"weight_decay": 5e-3},
        "augmentation": {"augmentation": True},
        "all three": {"dropout": 0.5, "weight_decay": 5e-3, "augmentation": True}}
start = time.perf_counter()
results = {name: train(epochs=epochs, **settings) for name, settings in RUNS.items()}
print(f"{len(RUNS)} runs of {epochs} epochs in {time.perf_counter() - start:.1f} s\n")
print(f"{'run':<20}{'train acc':>10}{'test acc':>10}{'gap':>8}")
for name, curves in results.items():
    train_acc, test_acc = curves["train"][-1], curves["test"][-1]
    print(f"{name:<20}{train_acc:>10.3f}{test_acc:>10.3f}{train_acc - test_acc:>8.3f}")
'''),
    code(r'''
fig, axes = plt.subplots(1, len(RUNS), figsize=(16, 3.2), sharey=True)
for ax, (name, curves) in zip(axes, results.items()):
    ax.plot(curves["train"], label="train")
    ax.plot(curves["test"], label="test")
    ax.set(title=name, xlabel="epoch")
axes[0].set_ylabel("accuracy")
axes[0].legend()
plt.tight_layout()
plt.show()
'''),
    md(r'''
Things to notice and try: the baseline fits the training set perfectly within a few
epochs while its test accuracy stops rising, which is over-fitting. Shifted copies
give the network data it cannot memorise, so the gap shrinks most; dropout and weight
decay act on the weights instead. Weight decay shrinks each weight by a factor
$(1 - \eta\lambda)$ per step, so its effect depends on $\eta\lambda$ times the number of
steps: try $\lambda = 5 \cdot 10^{-2}$. Dropout's cost is slower training: compare the
curves' first epochs.
'''),
    exercises_intro([
        "Write `dropout_backward(dout, keep, p)` for inverted dropout; `keep` is the boolean "
        "mask of the forward pass.",
        "Write `weight_decay(w, weight_decay)` returning the L2 penalty "
        "$\\frac{\\lambda}{2}\\lVert w\\rVert^2$ and its gradient.",
    ]),
    exercise("dropout_backward(dout, keep, p)", "return dx, shaped like dout",
             "check_dropout_backward"),
    exercise("weight_decay(w, weight_decay)", "return penalty (a number), dw",
             "check_weight_decay"),
]

# --------------------------------------------------------------------------- 08
NB08 = [
    md(r'''
# 08 · Residual networks

A plain deep network multiplies the gradient by one Jacobian per layer on its way down;
products of many factors shrink or grow geometrically. A **residual block** computes

$$ y = x + F(x), \qquad \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
   + \frac{\partial L}{\partial y}\, \frac{\partial F}{\partial x}, $$

so the identity path carries the upstream gradient down unchanged, whatever $F$ does:
the sum rule of `minidl.layers.Residual` (`dx = body'(dy) + dy`). **Batch normalisation**
helps from the other side, keeping each layer's activations at a steady scale.

We build a small ResNet from minidl's pieces with the skips and the BatchNorms
switchable, measure the gradient norm at every depth, and train the four variants. All
convolutions start from PyTorch's default initialisation,
$\mathcal{U}(\pm 1/\sqrt{\text{fan}_\text{in}})$, whose variance is a sixth of He's (03):
each plain conv + ReLU layer shrinks the signal, which is the situation skips and
BatchNorm were invented for.
'''),
    SETUP,
    DATA,
    code(r'''
def conv3x3(channels, bn):
    return L.Conv2d(channels, channels, 3, padding=1, bias=not bn)  # PyTorch's default init


def block(channels, skip, bn):
    norm = (lambda: L.BatchNorm2d(channels)) if bn else L.Identity
    body = L.Sequential(conv3x3(channels, bn), norm(), L.ReLU(), conv3x3(channels, bn), norm())
    return L.Sequential(L.Residual(body) if skip else body, L.ReLU())


def small_resnet(depth, width, skip=True, bn=True):
    """Stem conv, `depth` blocks of two 3x3 convs at `width` channels, global pool, Linear."""
    stem = [L.Conv2d(3, width, 3, padding=1, bias=not bn)]
    stem += [L.BatchNorm2d(width)] if bn else []
    return L.Sequential(*stem, L.ReLU(), *[block(width, skip, bn) for _ in range(depth)],
                        L.GlobalAvgPool2d(), L.Linear(width, 10))


VARIANTS = {"plain": dict(skip=False, bn=False), "plain + BN": dict(skip=False, bn=True),
            "residual": dict(skip=True, bn=False), "residual + BN": dict(skip=True, bn=True)}
'''),
    md(r'''
The blocks are gradient-checked like any layer (here minidl's own `BasicBlock` from
`minidl.models` and one of ours, in float64 on a tiny input):
'''),
    code(r'''
from minidl.models import BasicBlock

tiny = rng.standard_normal((2, 3, 4, 4))
print(check_layer(BasicBlock(3, 3), tiny).table())
print(check_layer(block(3, skip=True, bn=True), tiny).table())
'''),
    code(r'''
n_train, n_test, size = (768, 256, 8) if FAST else (2500, 1000, 32)
(x_train, y_train), (x_test, y_test) = load_data("cifar10", n_train, n_test)


def shrink(images, size):
    """Average f x f blocks: 32x32 -> size x size (FAST: 16x less work per convolution)."""
    f = 32 // size
    return images.reshape(len(images), 3, size, f, size, f).mean(axis=(3, 5)).astype(np.uint8)


if size != 32:
    x_train, x_test = shrink(x_train, size), shrink(x_test, size)
print("train", x_train.shape, " test", x_test.shape)
'''),
    md(r'''
## Gradient norms per depth, at initialisation

One forward and backward pass of a batch through 16 blocks (33 convolutions) per variant;
the norm of each convolution's weight gradient against its depth.
'''),
    code(r'''
from minidl.data import CIFAR10_MEAN, CIFAR10_STD, Compose, DataLoader, Normalize, ToFloat

prepare = Compose([ToFloat(), Normalize(CIFAR10_MEAN, CIFAR10_STD)])
x_batch, y_batch = prepare(x_train[:32]), y_train[:32]
deep, width = 16, (8 if FAST else 16)
loss_fn = losses.CrossEntropyLoss()
plt.figure(figsize=(8, 4))
for name, settings in VARIANTS.items():
    minidl.seed(0)
    model = small_resnet(deep, width, **settings)
    loss_fn(model(x_batch), y_batch)
    model.backward(loss_fn.backward())
    norms = [float(np.linalg.norm(m.weight.grad)) for _, m in model.named_modules()
             if isinstance(m, L.Conv2d)]
    plt.semilogy(range(1, len(norms) + 1), norms, "o-", ms=3, label=name)
    print(f"{name:<14} |dW| first conv {norms[0]:.2e}, last conv {norms[-1]:.2e}, "
          f"first / last {norms[0] / norms[-1]:.2g}")
plt.xlabel("convolution (1 = next to the input)")
plt.ylabel("gradient norm of the weight")
plt.legend()
plt.title(f"{deep} blocks, at initialisation")
plt.show()
'''),
    md(r'''
How to read it: without skips or BatchNorm the signal shrinks in every conv + ReLU, so
after 33 of them the output no longer depends on the input and *every* gradient is
tiny (the network cannot start to learn). BatchNorm rescales each layer's activations
and revives the gradients, though in a deep plain stack they still grow towards the
input. The identity path of the residual blocks keeps the gradient of the first and of
the last convolution within a small factor of each other; with BatchNorm as well, the
profile is nearly flat.
'''),
    md(r'''
## Training the four variants

A shorter network of 4 blocks (FAST: 8 channels on 8x8 images, 768 of them; full
settings: 16 channels on 32x32 CIFAR-10 images, 2500 of them, about ten minutes on a
laptop CPU), the same optimizer, data order and seed for each.
'''),
    code(r'''
from minidl.train import Trainer

depth, width, epochs, batch_size = (4, 8, 3, 32) if FAST else (4, 16, 3, 64)
histories = {}
start = time.perf_counter()
for name, settings in VARIANTS.items():
    minidl.seed(0)
    model = small_resnet(depth, width, **settings)
    trainer = Trainer(model, losses.CrossEntropyLoss(),
                      optim.SGD(model.parameters(), lr=0.05, momentum=0.9), quiet=True)
    histories[name] = trainer.fit(
        DataLoader(x_train, y_train, batch_size=batch_size, transform=prepare, seed=0),
        DataLoader(x_test, y_test, batch_size=256, shuffle=False, transform=prepare),
        epochs=epochs)
    last = histories[name].rows[-1]
    print(f"{name:<14} train loss {last['train_loss']:.3f}  test accuracy {last['val_top1']:.3f}")
print(f"{time.perf_counter() - start:.1f} s")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for name, history in histories.items():
    axes[0].plot(history["epoch"], history["train_loss"], "o-", label=name)
    axes[1].plot(history["epoch"], history["val_top1"], "o-", label=name)
axes[0].set(xlabel="epoch", ylabel="training loss")
axes[1].set(xlabel="epoch", ylabel="test accuracy")
axes[0].legend()
plt.tight_layout()
plt.show()
'''),
    exercises_intro([
        "Write `residual_backward(dout, x, w1, w2)` for `y = x + relu(x @ w1) @ w2`, "
        "returning `(dx, dw1, dw2)`.",
        "Write `global_avg_pool_backward(dout, x)` for `y[n, c] = mean over h, w of x[n, c]`.",
    ]),
    exercise("residual_backward(dout, x, w1, w2)", "return dx, dw1, dw2",
             "check_residual_backward"),
    exercise("global_avg_pool_backward(dout, x)", "return dx, shaped like x",
             "check_global_avg_pool_backward"),
]


# --------------------------------------------------------------------------- 09
NB09 = [
    md(r'''
# 09 · Sequences: RNN → LSTM → attention → a GPT block

Everything so far mapped one input to one output. A sequence model reads $T$ steps
$x_1, \dots, x_T$ and must carry information from early steps to late ones. This
notebook builds the three answers in the order history found them, each from minidl's
pieces, each with its backward derived and **gradient-checked in float64**:

1. a **recurrent network** (`minidl.layers.RNN`) and backpropagation through time, and
   why its gradients vanish;
2. the **LSTM** (`minidl.layers.LSTM`), whose additive cell state lets them through;
3. **scaled dot-product attention** (`minidl.functional.scaled_dot_product_attention`
   and its backward, `minidl.layers.MultiheadAttention`) with the causal mask;
4. a **GPT block** (`minidl.models.gpt`'s `Block`), then a tiny character-level GPT trained
   on Tiny Shakespeare, and a look at what its attention heads attend to.
'''),
    SETUP,
    md(r'''
## 1 · A recurrent network and backpropagation through time

A tanh RNN keeps a hidden state $h_t \in \mathbb{R}^{H}$ and updates it with the same
weights at every step (minidl stores weights as PyTorch does, `(out, in)`):

$$a_t = W_{ih}\, x_t + b_{ih} + W_{hh}\, h_{t-1} + b_{hh}, \qquad h_t = \tanh(a_t),
\qquad t = 1, \dots, T.$$

Unrolled in time this is a deep network of $T$ layers that **share** their weights. Its
backward is the usual chain rule run from $t = T$ down to $1$ (*backpropagation through
time*, BPTT). $h_t$ reaches the loss twice: directly (through the output at step $t$,
gradient $\bar g_t$) and through $h_{t+1}$. With $\delta_t = \partial L / \partial a_t$:

$$\frac{\partial L}{\partial h_t} = \bar g_t + W_{hh}^\top \delta_{t+1}, \qquad
\delta_t = \frac{\partial L}{\partial h_t} \odot \left(1 - h_t^2\right)
\quad(\delta_{T+1} = 0),$$

and since the weights are shared, their gradients **sum over the steps**:

$$\frac{\partial L}{\partial W_{ih}} = \sum_t \delta_t\, x_t^\top, \qquad
\frac{\partial L}{\partial W_{hh}} = \sum_t \delta_t\, h_{t-1}^\top, \qquad
\frac{\partial L}{\partial b} = \sum_t \delta_t, \qquad
\frac{\partial L}{\partial x_t} = W_{ih}^\top \delta_t .$$

In code, a batch is rows ($x_t$: `(N, D)`), so $W^\top \delta$ becomes `delta @ W`:
'''),
    code(r'''
def rnn_forward(x, h0, w_ih, w_hh, b):
    """x: (T, N, D), h0: (N, H) -> every step's hidden state hs: (T, N, H)."""
    hs, h = [], h0
    for x_t in x:
        h = np.tanh(x_t @ w_ih.T + h @ w_hh.T + b)
        hs.append(h)
    return np.stack(hs)


def rnn_backward(dhs, x, h0, hs, w_ih, w_hh):
    """BPTT. dhs: (T, N, H), the gradient reaching each h_t from the outputs.
    Returns dx, dw_ih, dw_hh, db, dh0."""
    dx, dw_ih, dw_hh = np.zeros_like(x), np.zeros_like(w_ih), np.zeros_like(w_hh)
    db, dh_next = np.zeros(len(w_hh)), np.zeros_like(h0)
    for t in reversed(range(len(x))):
        h_prev = hs[t - 1] if t > 0 else h0
        delta = (dhs[t] + dh_next) * (1 - hs[t] ** 2)   # dL/da_t
        dx[t] = delta @ w_ih
        dw_ih += delta.T @ x[t]
        dw_hh += delta.T @ h_prev
        db += delta.sum(axis=0)
        dh_next = delta @ w_hh                           # to step t - 1
    return dx, dw_ih, dw_hh, db, dh_next


T, N, D, H = 6, 3, 4, 5
rnn = L.RNN(D, H).to(np.float64)                       # minidl's layer, PyTorch's init
x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H))
w_ih, w_hh = rnn.weight_ih_l0.data, rnn.weight_hh_l0.data
b = rnn.bias_ih_l0.data + rnn.bias_hh_l0.data

hs = rnn_forward(x, h0, w_ih, w_hh, b)
out, h_n = rnn(x, h0[None])                            # output (T, N, H), h_n (1, N, H)
dhs = rng.standard_normal(hs.shape)
dx, dw_ih, dw_hh, db, dh0 = rnn_backward(dhs, x, h0, hs, w_ih, w_hh)
rnn.zero_grad()
dx_minidl = rnn.backward(dhs)
for name, mine, theirs in [("output", hs, out), ("dx", dx, dx_minidl),
                           ("dW_ih", dw_ih, rnn.weight_ih_l0.grad),
                           ("dW_hh", dw_hh, rnn.weight_hh_l0.grad),
                           ("db", db, rnn.bias_hh_l0.grad),
                           ("dh0", dh0, rnn.grad_initial_state[0])]:
    print(f"{name:<7} ours vs minidl.layers.RNN: max relative error {rel_error(mine, theirs):.1e}")
'''),
    md(r'''
`RNN`, `LSTM` and `MultiheadAttention` return a pair (output, final state or attention
weights), while `check_layer` differentiates $\sum (\text{output} \odot dy)$ of a layer with
one output. A three-line wrapper keeps the first output; then the whole layer (here two
stacked layers, `batch_first`) is checked against centered finite differences, for the
input and every parameter:
'''),
    code(r'''
from minidl.module import Module


class FirstOutput(Module):
    """The first output of a layer that returns (output, extra); keyword arguments of
    the forward are fixed here (e.g. is_causal=True)."""

    def __init__(self, layer, **forward_kwargs):
        super().__init__()
        self.layer, self.forward_kwargs = layer, forward_kwargs

    def forward(self, x):
        return self.layer(x, **self.forward_kwargs)[0]

    def backward(self, dy):
        self.saved_for_backward(dy)
        return self.layer.backward(dy)


result = check_layer(FirstOutput(L.RNN(3, 4, num_layers=2, batch_first=True)),
                     rng.standard_normal((2, 5, 3)))
print(result.table())
assert result.passed
'''),
    md(r'''
## 2 · Vanishing gradients through time

How much does the last hidden state depend on the input $t$ steps back? The chain rule
gives a product of $T - t$ Jacobians,

$$\frac{\partial h_T}{\partial h_t} = \prod_{k=t+1}^{T} \operatorname{diag}\!\left(1 - h_k^2\right) W_{hh},$$

and unless $W_{hh}$'s singular values sit just right, such a product shrinks (or grows)
**geometrically** in $T - t$. Below: a loss on the last step only,
$L = \langle h_T, g\rangle$, and the norm of $\partial L / \partial x_t$ for every $t$, at
PyTorch's default initialisation.
'''),
    code(r'''
def input_gradient_norms(layer, steps, batch=8, features=16, seed=0):
    """||dL/dx_t|| per step t for L = <h_T, g>: a loss on the last output only."""
    draw = np.random.default_rng(seed)
    x = draw.standard_normal((steps, batch, features))
    out, _ = layer(x)
    d_out = np.zeros_like(out)
    d_out[-1] = draw.standard_normal(out.shape[1:])
    layer.zero_grad()
    dx = layer.backward(d_out)
    return np.linalg.norm(dx.reshape(steps, -1), axis=1)


steps, hidden = (40, 32) if FAST else (100, 64)
minidl.seed(0)
lstm_forget_1 = L.LSTM(16, hidden).to(np.float64)
for bias in (lstm_forget_1.bias_ih_l0, lstm_forget_1.bias_hh_l0):
    bias.data[hidden:2 * hidden] = 0.5          # gate order i, f, g, o: forget-gate bias 1 in all
curves = {"RNN (tanh)": L.RNN(16, hidden).to(np.float64),
          "LSTM": L.LSTM(16, hidden).to(np.float64),
          "LSTM, forget-gate bias 1": lstm_forget_1}
plt.figure(figsize=(8, 4))
for name, layer in curves.items():
    norms = input_gradient_norms(layer, steps)
    plt.semilogy(np.arange(1, steps + 1), norms, "o-", ms=3, label=name)
    print(f"{name:<26} |dL/dx_T| {norms[-1]:.2e}   |dL/dx_1| {norms[0]:.2e}   "
          f"ratio {norms[0] / norms[-1]:.1e}")
plt.xlabel("input step t (the loss reads step T only)")
plt.ylabel("||dL/dx_t||")
plt.legend()
plt.title(f"Gradient reaching each input step, T = {steps}, hidden {hidden}")
plt.show()
'''),
    md(r'''
How to read it: the RNN's gradient falls by orders of magnitude within a few dozen steps,
so it cannot learn that an early character matters for a late one. The LSTM's falls
much more slowly, and a forget gate that starts open ($f \approx \sigma(1) = 0.73$, the
usual trick) slows the decay further still. The next section shows why.

## 3 · The LSTM

The LSTM adds a **cell state** $c_t$, written through gates. From one affine map of
$x_t$ and $h_{t-1}$ (four blocks of $H$ rows, PyTorch's gate order):

$$\begin{pmatrix} i_t \\ f_t \\ g_t \\ o_t \end{pmatrix} =
\begin{pmatrix} \sigma \\ \sigma \\ \tanh \\ \sigma \end{pmatrix}
\left(W_{ih}\, x_t + b_{ih} + W_{hh}\, h_{t-1} + b_{hh}\right), \qquad
c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t).$$

Backward through one step, given $\partial L/\partial h_t$ (from the output and from step
$t+1$) and the carried $\partial L/\partial c_t$ from step $t+1$:

$$\frac{\partial L}{\partial o_t} = \frac{\partial L}{\partial h_t} \odot \tanh(c_t), \qquad
\widehat{dc}_t = \frac{\partial L}{\partial c_t} + \frac{\partial L}{\partial h_t}
\odot o_t \odot \left(1 - \tanh^2 c_t\right),$$

$$\frac{\partial L}{\partial i_t} = \widehat{dc}_t \odot g_t, \quad
\frac{\partial L}{\partial g_t} = \widehat{dc}_t \odot i_t, \quad
\frac{\partial L}{\partial f_t} = \widehat{dc}_t \odot c_{t-1}, \quad
\frac{\partial L}{\partial c_{t-1}} = \widehat{dc}_t \odot f_t ,$$

then through the gate nonlinearities ($\sigma' = \sigma(1 - \sigma)$,
$\tanh' = 1 - \tanh^2$) and the affine map exactly as in the RNN. The key line is the last
one: from $c_t$ back to $c_{t-1}$ the gradient is multiplied by $f_t$ **only**, with no
weight matrix and no squashing derivative. While the forget gate stays open, the error
flows back unchanged (Hochreiter and Schmidhuber's "constant error carousel").

minidl's `LSTM` implements these lines in its `_cell_backward`; the check covers all
of them (two layers, batch of 1 and of 3):
'''),
    code(r'''
for shape in [(4, 1, 3), (3, 3, 2)]:
    result = check_layer(FirstOutput(L.LSTM(shape[-1], 4, num_layers=2)),
                         rng.standard_normal(shape))
    print(result.table())
    assert result.passed
'''),
    md(r'''
## 4 · Scaled dot-product attention

Recurrence passes information one step at a time. Attention lets every position read
every other one directly, in one step. For queries $Q \in \mathbb{R}^{L \times d}$,
keys $K \in \mathbb{R}^{S \times d}$ and values $V \in \mathbb{R}^{S \times d_v}$:

$$S = \frac{Q K^\top}{\sqrt{d}} + M, \qquad P = \operatorname{softmax}_\text{row}(S),
\qquad O = P\, V .$$

Row $i$ of $P$ says how much query $i$ takes from each value. The $1/\sqrt{d}$ keeps the
scores of unit-variance queries and keys at unit variance, so the softmax does not
saturate as $d$ grows. The **causal mask** $M_{ij} = -\infty$ for $j > i$ (else $0$) gives
those weights exactly $0$: position $i$ sees only positions $\le i$, which is what a
language model predicting the next token must not break.

**Backward.** $O = PV$ is a matrix product, so $dV = P^\top dO$ and $dP = dO\, V^\top$.
Each row of $P$ is a softmax of the row of $S$, with Jacobian
$\operatorname{diag}(p) - p p^\top$, hence row by row

$$dS_{ij} = P_{ij} \Big( dP_{ij} - \sum_{k} dP_{ik} P_{ik} \Big), \qquad
dQ = \frac{dS\, K}{\sqrt{d}}, \qquad dK = \frac{dS^\top Q}{\sqrt{d}} .$$

Masked entries have $P_{ij} = 0$, so they pass no gradient and need no special case.
'''),
    code(r'''
from minidl.functional import scaled_dot_product_attention, scaled_dot_product_attention_backward


def attention(q, k, v, causal):
    """q (N, L, d), k (N, S, d), v (N, S, dv) -> output (N, L, dv), weights P (N, L, S)."""
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
    if causal:
        scores = np.where(np.triu(np.ones(scores.shape[1:], bool), k=1), -np.inf, scores)
    p = np.exp(scores - scores.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return p @ v, p


def attention_backward(d_out, q, k, v, p):
    dv = p.transpose(0, 2, 1) @ d_out
    dp = d_out @ v.transpose(0, 2, 1)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))   # the softmax Jacobian, per row
    return ds @ k / np.sqrt(q.shape[-1]), ds.transpose(0, 2, 1) @ q / np.sqrt(q.shape[-1]), dv


q, k, v = (rng.standard_normal(shape) for shape in [(2, 5, 4), (2, 5, 4), (2, 5, 3)])
d_out = rng.standard_normal((2, 5, 3))
out, p = attention(q, k, v, causal=True)
ours = attention_backward(d_out, q, k, v, p)
out_minidl, p_minidl, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
theirs = scaled_dot_product_attention_backward(d_out, q, k, v, p_minidl)
print("output vs minidl.functional:", f"{rel_error(out, out_minidl):.1e}")
for name, tensor, mine, reference in zip(("dq", "dk", "dv"), (q, k, v), ours, theirs):
    numeric = numerical_gradient(lambda _: float(np.sum(attention(q, k, v, True)[0] * d_out)),
                                 tensor)   # perturbs `tensor` in place, entry by entry
    print(f"{name}: vs finite differences {rel_error(mine, numeric):.1e}, "
          f"vs minidl {rel_error(mine, reference):.1e}")
print("weights above the diagonal:", p[0][np.triu_indices(5, k=1)].max())
'''),
    md(r'''
`MultiheadAttention` projects the input to $h$ heads of queries, keys and values (one
GEMM), runs this attention on all heads at once as batched matmuls, and mixes the heads
with an output projection. Its check covers the projections, both masks and the
batched backward:
'''),
    code(r'''
x = rng.standard_normal((2, 5, 8))                     # (N, L, E), batch_first
for causal in (False, True):
    mha = L.MultiheadAttention(8, num_heads=2, batch_first=True)
    result = check_layer(FirstOutput(mha, is_causal=causal), x)
    print(f"is_causal={causal}:", result.table())
    assert result.passed
'''),
    md(r'''
## 5 · A GPT block

A GPT is a stack of identical **pre-LN Transformer blocks** (nanoGPT's architecture,
`minidl.models.gpt`):

$$x \leftarrow x + \operatorname{Attn}\big(\operatorname{LN}_1(x)\big), \qquad
x \leftarrow x + \operatorname{MLP}\big(\operatorname{LN}_2(x)\big), \qquad
\operatorname{MLP}(z) = \operatorname{GELU}(z W_1 + b_1)\, W_2 + b_2,$$

where Attn is causal multi-head self-attention. Attention mixes information **across
positions**; the MLP transforms each position on its own. The backward reuses the rule
of 08: a residual sum sends $dy$ unchanged down the skip and adds the branch's backward,

$$dx_\text{mid} = dy + \operatorname{LN}_2^\top\!\big(\operatorname{MLP}^\top(dy)\big), \qquad
dx = dx_\text{mid} + \operatorname{LN}_1^\top\!\big(\operatorname{Attn}^\top(dx_\text{mid})\big),$$

($^\top$: the layer's backward), which is `Block.backward` line for line. The whole block,
input and all 12 parameter tensors, in float64:
'''),
    code(r'''
from functools import partial

from minidl import init, models
from minidl.gradcheck import check_model_with_loss
from minidl.models.gpt import Block

block = Block(8, n_head=2, dropout=0.0, bias=True, proj_init=partial(init.normal, std=0.02))
x = rng.standard_normal((2, 5, 8))                     # (B, T, C)
result = check_layer(block, x)
print(result.table())
assert result.passed
# And end to end through a loss (the tiny weights of the init would hide a wrong
# branch, so this time the projections get unit-scale weights):
for name, param in block.named_parameters():
    if "c_proj" in name and name.endswith("weight"):
        param.data[...] = rng.standard_normal(param.shape) * 0.5
result = check_model_with_loss(block, losses.MSELoss(), x, rng.standard_normal(x.shape))
print("max relative error through MSELoss:", f"{max(result.errors.values()):.1e}")
assert result.passed
'''),
    md(r'''
**Why the mask matters**: with it, the output at position $t$ does not depend on any
input after $t$. The gradient shows it: for a loss on position 2 only, the input
gradient at positions 3 and 4 is exactly zero.
'''),
    code(r'''
block.to(np.float64)
y = block(x)
d_y = np.zeros_like(y)
d_y[:, 2] = 1.0
dx = block.backward(d_y)
print("||dL/dx_t|| for t = 0..4:", np.round(np.linalg.norm(dx, axis=(0, 2)), 4))
'''),
    md(r'''
## 6 · Training a tiny character-level GPT

The data: Tiny Shakespeare (1.1 M characters, char-rnn's corpus), read by
`minidl.data.load_tiny_shakespeare` from `MINIDL_DATA` (else `~/.cache/minidl`) and
downloaded when missing, except in FAST mode, which never downloads and falls back on a
synthetic text (saying so). We keep its first few hundred KB (FAST: 50 KB), build the
character vocabulary, split 90/10, and draw random windows as nanoGPT does
(`BlockSampler`): the target at each position is the next character.
'''),
    code(r'''
from minidl.data import (BlockSampler, CharVocab, DatasetError, data_root,
                         load_tiny_shakespeare, split_text)


def synthetic_text(n_chars, seed=0):
    """A stand-in for Tiny Shakespeare: speaker names and lines of words from a small
    list, in the corpus' layout (learnable, but not Shakespeare)."""
    words = ("the king queen lord lady my good sir what shall we do now come here go love "
             "night day thou art not so and I will speak him her to be fair").split()
    draw = np.random.default_rng(seed)
    parts, size = [], 0
    while size < n_chars:
        speaker = draw.choice(["KING HENRY", "QUEEN", "ROMEO", "JULIET"])
        line = " ".join(draw.choice(words, draw.integers(4, 10))).capitalize()
        parts.append(f"{speaker}:\n{line}.\n\n")
        size += len(parts[-1])
    return "".join(parts)[:n_chars]


n_chars = 50_000 if FAST else 500_000
try:
    text = load_tiny_shakespeare(download=not FAST)
    print(f"Tiny Shakespeare: the real corpus, from {data_root()}")
except (FileNotFoundError, DatasetError):
    if not FAST:
        raise
    print(f"Tiny Shakespeare: not found in {data_root()}, so this run uses a SYNTHETIC text "
          "(FAST mode never downloads); the losses and samples below are not Shakespeare "
          "results.\nSet MINIDL_DATA to a folder holding tinyshakespeare/input.txt to use it.")
    text = synthetic_text(n_chars)
text = text[:n_chars]
vocab = CharVocab(text)
train_ids, val_ids = split_text(vocab.encode(text))
counts = np.bincount(train_ids, minlength=len(vocab)) / len(train_ids)
unigram = -float(np.sum(counts[counts > 0] * np.log(counts[counts > 0])))
print(f"{len(text):,} characters, vocabulary of {len(vocab)}; train {len(train_ids):,}, "
      f"val {len(val_ids):,}")
print(f"reference losses (nats/char): uniform guess ln {len(vocab)} = {np.log(len(vocab)):.2f}, "
      f"character frequencies alone {unigram:.2f}")
print(repr(text[:120]))
'''),
    md(r'''
The model is nanoGPT's, shrunk: token and position embeddings, a few blocks, a final
LayerNorm, and the output layer tied to the token embedding. The loop is the one of
`examples/char_gpt.py`: cross-entropy over every position, AdamW, gradient clipping at
norm 1, and the validation loss estimated now and then on random windows in eval mode.
FAST mode trains a 28k-parameter model for 250 steps (seconds); the full settings are
nanoGPT's CPU configuration (4 blocks, 4 heads, width 128, context 64, batch 12, 2000
steps: about 0.2 s a step, some 7 minutes, on a 2-core CPU).
'''),
    code(r'''
block_size, n_layer, n_head, n_embd = (32, 2, 2, 32) if FAST else (64, 4, 4, 128)
batch_size, iters, eval_every, lr = (16, 250, 50, 3e-3) if FAST else (12, 2000, 250, 1e-3)
minidl.seed(0)
model = models.gpt(len(vocab), block_size, n_layer, n_head, n_embd)
params = list(model.parameters())
print(f"GPT: {n_layer} blocks, {n_head} heads, width {n_embd}, context {block_size}: "
      f"{sum(p.data.size for p in params):,} parameters")
optimizer = optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1)
loss_fn = losses.CrossEntropyLoss()
train_batches = BlockSampler(train_ids, block_size, batch_size, seed=1)


def estimate_val_loss(batches=10):
    sampler, total = BlockSampler(val_ids, block_size, batch_size, seed=2), 0.0
    model.eval()
    for _ in range(batches):
        x, y = sampler.sample()
        total += float(loss_fn(model(x).reshape(-1, len(vocab)), y.reshape(-1)))
        model.drop_saved()
    model.train()
    return total / batches


train_losses, val_points = [], []
start = time.perf_counter()
for it in range(iters + 1):
    if it % eval_every == 0:
        val_points.append((it, estimate_val_loss()))
        seconds = time.perf_counter() - start
        print(f"iter {it:5d}: val loss {val_points[-1][1]:.3f}  ({seconds:.0f} s)")
    if it == iters:
        break
    x, y = train_batches.sample()
    logits = model(x)
    train_losses.append(float(loss_fn(logits.reshape(-1, len(vocab)), y.reshape(-1))))
    model.zero_grad()
    model.backward(loss_fn.backward().reshape(logits.shape))
    optim.clip_grad_norm_(params, 1.0)
    optimizer.step()

plt.figure(figsize=(8, 3.5))
window = 10
smooth = np.convolve(train_losses, np.ones(window) / window, mode="valid")
plt.plot(np.arange(window, len(train_losses) + 1), smooth, label="train (running mean)")
plt.plot(*zip(*val_points), "o--", label="validation")
plt.axhline(unigram, color="gray", ls=":", label="character frequencies alone")
plt.xlabel("iteration")
plt.ylabel("loss (nats per character)")
plt.legend()
plt.show()
'''),
    md(r'''
A sample (nanoGPT's `generate`: the context cropped to `block_size`, one character drawn at a
time from the softmax), started from a newline:
'''),
    code(r'''
start_ids = vocab.encode("\n")[None]
print(vocab.decode(model.generate(start_ids, 300, seed=0)[0]))
'''),
    md(r'''
### What the heads attend to

The weights $P$ of each head of the last block, for one validation window (row: the
position predicting the next character; column: the position it reads). Everything
above the diagonal is exactly 0: the causal mask.
'''),
    code(r'''
window_ids = val_ids[:block_size][None]
model.eval()
model(window_ids)
model.drop_saved()
weights = model.h[-1].attn.attn_weights[0]             # (heads, T, T)
labels = [repr(ch)[1:-1] or " " for ch in vocab.decode(window_ids[0])]
fig, axes = plt.subplots(1, n_head, figsize=(4.2 * n_head, 4.2))
for head, axis in enumerate(np.atleast_1d(axes)):
    axis.imshow(weights[head], cmap="viridis")
    axis.set_xticks(range(block_size), labels, fontsize=6)
    axis.set_yticks(range(block_size), labels, fontsize=6)
    axis.set(title=f"last block, head {head}", xlabel="position read (key)",
             ylabel="position predicting the next character (query)")
plt.tight_layout()
plt.show()
print("largest weight above the diagonal:", float(np.triu(weights, k=1).max()))
'''),
    md(r'''
How to read it: typical heads put most weight on the last few characters (a local
n-gram model), or on the previous space or newline (where the current word or line
began). A trained model has learnt these patterns from the next-character loss alone.
'''),
    exercises_intro([
        "Write `rnn_step_backward(dh, x, h_prev, w_ih, w_hh, b)` for one RNN step "
        "`h = tanh(x @ w_ih.T + h_prev @ w_hh.T + b)`, returning "
        "`(dx, dh_prev, dw_ih, dw_hh, db)`.",
        "Write `attention_backward(dout, q, k, v, causal)` for "
        "`out = softmax(q @ k^T / sqrt(E) + M) @ v` (batched over the first axis; M the "
        "causal mask when `causal`), returning `(dq, dk, dv)`.",
    ]),
    exercise("rnn_step_backward(dh, x, h_prev, w_ih, w_hh, b)",
             "return dx, dh_prev, dw_ih, dw_hh, db", "check_rnn_step_backward"),
    exercise("attention_backward(dout, q, k, v, causal)", "return dq, dk, dv",
             "check_attention_backward"),
]

NOTEBOOKS = {
    "01_backprop_by_hand": NB01,
    "02_mlp_mnist": NB02,
    "03_init_activations": NB03,
    "04_convolution": NB04,
    "05_pooling_batchnorm": NB05,
    "06_optimizers": NB06,
    "07_regularisation": NB07,
    "08_residual": NB08,
    "09_attention": NB09,
}


def build(name, cells, folder=HERE):
    """Write ``folder/name.ipynb`` (no outputs, stable cell ids) and return its path."""
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{name[:2]}-{index:02d}"  # stable ids: rebuilding gives no diff
    nbformat.validate(notebook)
    path = pathlib.Path(folder) / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


if __name__ == "__main__":
    prefixes = sys.argv[1:]
    for notebook_name, notebook_cells in NOTEBOOKS.items():
        if not prefixes or any(notebook_name.startswith(p) for p in prefixes):
            print("wrote", build(notebook_name, notebook_cells))
