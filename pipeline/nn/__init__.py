"""The mathematics of *Neural Networks and Deep Learning* in plain NumPy.

Imports nothing else from ``pipeline``: activations, costs, initialisers, regularisers,
layers, the optimiser and the network that ties them together.
"""

from pipeline.nn.activations import ACTIVATIONS, Activation, get_activation
from pipeline.nn.costs import COSTS, Cost, get_cost
from pipeline.nn.layers import Conv2D, ConvPool2D, Dense, Dropout, Flatten, Layer, MaxPool2D, fuse
from pipeline.nn.network import Network
from pipeline.nn.optimizers import SGD, LearningRateSchedule
from pipeline.nn.regularizers import Regularizer

__all__ = [
    "ACTIVATIONS",
    "COSTS",
    "Activation",
    "Conv2D",
    "ConvPool2D",
    "Cost",
    "Dense",
    "Dropout",
    "Flatten",
    "Layer",
    "LearningRateSchedule",
    "MaxPool2D",
    "Network",
    "Regularizer",
    "SGD",
    "fuse",
    "get_activation",
    "get_cost",
]
