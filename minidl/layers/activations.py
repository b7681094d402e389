"""Placeholder: being written."""
ELU = None
GELU = None
LeakyReLU = None
ReLU = None
Sigmoid = None
Softmax = None
Tanh = None
