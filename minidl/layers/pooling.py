"""Placeholder: being written."""
AvgPool2d = None
GlobalAvgPool2d = None
MaxPool2d = None
avg_pool2d_naive = None
max_pool2d_naive = None
