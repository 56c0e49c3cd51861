"""The mathematics of *Neural Networks and Deep Learning* in plain NumPy.

Imports nothing else from ``pipeline``: activations, costs, initialisers, regularisers,
layers, the optimiser and the network that ties them together.

The fast path is explicit structure: :func:`fuse` turns a convolution and the max-pool after
it into one :class:`ConvPool2D` (new layers; the given ones are left as they are), and
:mod:`pipeline.nn.reference` holds the book's formulas written out plainly, which the tests
compare the fast layers with at rtol 1e-10. :mod:`pipeline.nn.threads` reads the BLAS thread
limit: with 2, a CNN's training mini-batch is split into halves run in two threads.
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
