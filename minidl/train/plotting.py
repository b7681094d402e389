"""Training curves: :func:`plot_history` writes loss and accuracy against epoch as a PNG.

Matplotlib is imported only when a plot is made, and only its object-oriented API is
used (a ``Figure`` drawn by the Agg canvas): no pyplot, no global backend switch, so it
works on servers without a display and does not disturb a notebook's own backend.
"""
import os


def new_figure(width, height, dpi=110):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot, no backend switch).

    Add axes with ``figure.subplots(...)``; write it with ``figure.savefig(path)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def plot_history(history, path, title=None):
    """Save two panels to ``path`` (PNG): loss, and accuracy in percent.

    Train curves are solid, validation curves dashed; top-5 accuracy is drawn (dotted
    markers) when the history has it. ``history`` is a :class:`~minidl.train.History`
    or its ``to_dict()``. Returns ``path``.
    """
    from .history import History

    if isinstance(history, dict):
        history = History.from_dict(history)
    if len(history) == 0:
        raise ValueError("plot_history: the history is empty (no epoch finished)")
    epochs = history["epoch"]

    figure = new_figure(11, 4.2)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    def draw(axes, column, label, style, scale=1.0):
        points = [(e, scale * v) for e, v in zip(epochs, history[column]) if v is not None]
        if points:
            axes.plot(*zip(*points), style, label=label, markersize=4)

    draw(loss_axes, "train_loss", "train", "C0-o")
    draw(loss_axes, "val_loss", "validation", "C1--o")
    loss_axes.set(xlabel="epoch", ylabel="loss", title="loss")
    draw(accuracy_axes, "train_top1", "train top-1", "C0-o", 100.0)
    draw(accuracy_axes, "val_top1", "validation top-1", "C1--o", 100.0)
    draw(accuracy_axes, "train_top5", "train top-5", "C0:s", 100.0)
    draw(accuracy_axes, "val_top5", "validation top-5", "C1:s", 100.0)
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(path, format="png")
    return path


__all__ = ["plot_history"]
