"""Placeholder: being written."""
Dropout = None
