"""Containers: Sequential and Residual."""
from ..module import Module
from .reshape import Identity


class Sequential(Module):
    """Apply layers in order; backward runs them in reverse.

    Children are named "0", "1", ... so state_dict keys read "0.weight", "3.running_mean".
    """

    def __init__(self, *layers):
        super().__init__()
        for index, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: argument {index} must be a Module, "
                                f"got {type(layer).__name__}")
            setattr(self, str(index), layer)

    def __getitem__(self, index):
        return self.children()[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self.children())

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x

    def set_needs_input_grad(self, needed):
        super().set_needs_input_grad(needed)
        for layer in self._modules.values():
            layer.set_needs_input_grad(needed)
            needed = needed or bool(layer.parameters())  # later layers feed a parameter
        return self

    def backward(self, dy):
        for layer in reversed(self._modules.values()):
            if dy is None:  # no dx wanted below a layer (see set_needs_input_grad)
                layer.drop_saved()
                continue
            dy = layer.backward(dy)
        return dy


class Residual(Module):
    """``y = body(x) + shortcut(x)``; the shortcut is the identity when None.

    Backward sends dy through both paths and sums: ``dx = body'(dy) + shortcut'(dy)``.
    """

    input_shape = "(N, ...)"

    def __init__(self, body, shortcut=None):
        super().__init__()
        for label, module in (("body", body), ("shortcut", shortcut)):
            if not isinstance(module, Module) and not (label == "shortcut" and module is None):
                raise TypeError(f"Residual: {label} must be a Module, got "
                                f"{type(module).__name__}")
        self.body = body
        self.shortcut = shortcut if shortcut is not None else Identity()

    def forward(self, x):
        y = self.body(x)
        skip = self.shortcut(x)
        if y.shape != skip.shape:
            raise ValueError(f"Residual: body output {tuple(y.shape)} and shortcut output "
                             f"{tuple(skip.shape)} differ; give a projection shortcut")
        return y + skip

    def set_needs_input_grad(self, needed):
        super().set_needs_input_grad(needed)
        self.body.set_needs_input_grad(needed)
        self.shortcut.set_needs_input_grad(needed)
        return self

    def backward(self, dy):
        self.saved_for_backward(dy)
        dx_body, dx_shortcut = self.body.backward(dy), self.shortcut.backward(dy)
        if dx_body is None or dx_shortcut is None:  # dx not wanted (set_needs_input_grad)
            return None
        return dx_body + dx_shortcut
