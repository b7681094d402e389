"""Shared ground of the model zoo: activation layers by name.

Every builder takes ``activation="relu"`` (or another name of :data:`ACTIVATIONS`) and
calls :func:`make_activation` once per place an activation goes.
"""
from .. import checks
from .. import layers as L

#: Activation names accepted by every model builder, with their layer constructors.
ACTIVATIONS = {
    "relu": lambda: L.ReLU(),
    "leaky_relu": lambda: L.LeakyReLU(0.01),
    "elu": lambda: L.ELU(1.0),
    "gelu": lambda: L.GELU(),
    "tanh": lambda: L.Tanh(),
    "sigmoid": lambda: L.Sigmoid(),
}


def make_activation(name, owner="make_activation"):
    """A new activation layer from its name ("relu", "leaky_relu", "elu", "gelu", ...).

    Every call returns a fresh layer: a layer caches its own forward input for
    backward, so one instance must never be used twice in a network. ``owner`` names
    the builder in the error for an unknown name.
    """
    name = checks.choice(name, "activation", owner, sorted(ACTIVATIONS))
    return ACTIVATIONS[name]()


__all__ = ["ACTIVATIONS", "make_activation"]
