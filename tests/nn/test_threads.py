"""Splitting a training mini-batch across two threads: when it happens, and what it leaves."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from pipeline.nn import (
    SGD,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPool2D,
    Network,
    get_activation,
    get_cost,
    network,
    threads,
)


def cnn(dropout=False, workers=None):
    rng = np.random.default_rng(0)
    f64 = np.float64
    layers = [
        Conv2D(1, 3, 3, get_activation("relu"), rng, "scaled", f64),
        MaxPool2D(2),
        Flatten(),
        *([Dropout(0.2, rng)] if dropout else []),
        Dense(27, 4, get_activation("softmax"), rng, "scaled", f64),
    ]
    return Network(layers, get_cost("log_likelihood"), workers=workers)


def mlp():
    rng = np.random.default_rng(0)
    layers = [Dense(64, 4, get_activation("softmax"), rng, "scaled", np.float64)]
    return Network(layers, get_cost("log_likelihood"))


def step(net, m=16, optimizer=None):
    rng = np.random.default_rng(m)
    x, y = rng.random((m, 8, 8, 1)), np.eye(4)[rng.integers(0, 4, m)]
    x = x.reshape(m, -1) if len(net.layers) == 1 else x
    return net.train_batch(x, y, 100, optimizer or SGD(0.1))


@pytest.mark.parametrize(
    ("make", "limit", "split"),
    [
        (cnn, 2, True),
        (cnn, 1, False),
        (lambda: cnn(dropout=True), 2, True),
        (mlp, 2, False),  # dense-only networks are too small per sample to gain
        (lambda: cnn(workers=1), 2, False),
        (lambda: cnn(workers=2), 1, True),
    ],
    ids=["cnn-2", "cnn-1", "dropout", "mlp", "workers=1", "workers=2"],
)
def test_a_batch_is_split_when_two_blas_threads_are_allowed(make, limit, split):
    net = make()
    before = threading.active_count()
    with threadpool_limits(limits=limit):
        step(net)
        assert threads.blas_threads() == limit  # restored after the split step
    assert (net._twin is not None) == split
    assert threading.active_count() == before + split
    net.release_buffers()
    assert net._twin is None and threading.active_count() == before


def test_small_batches_are_not_split():
    net = cnn(workers=2)
    with threadpool_limits(limits=2):
        step(net, m=network.MIN_SPLIT_BATCH - 1)
        assert threads.blas_threads() == 2
    assert all(layer._buffers == {} for layer in net._twin)  # the second thread never ran


@pytest.mark.parametrize(
    ("momentum", "dropout", "fused"),
    [
        (0.0, False, False),
        (0.8, False, False),
        (0.8, True, False),
        (0.0, True, True),
        (0.8, True, True),
    ],  # fmt: skip
)
def test_split_steps_equal_one_thread_steps(momentum, dropout, fused, monkeypatch):
    """Also with every parameter cut in two parts for the end of the step, and a small
    batch (not split) in between: the momentum stays with its parameters; with dropout,
    the halves drop the neurons one thread drops; with the dense layer's fused step, each
    thread steps its rows of W from both halves."""
    monkeypatch.setattr(network, "SPLIT_PARAMETER", 1)
    monkeypatch.setattr(network, "FUSED_STEP_PARAMETER", 1 if fused else 10**9)
    one, two = cnn(dropout, workers=1), cnn(dropout, workers=2)
    opt_one, opt_two = SGD(0.1, momentum), SGD(0.1, momentum)
    with threadpool_limits(limits=1):  # one thread fuses its steps too
        for m in (16, 16, 5, 16):
            np.testing.assert_allclose(step(two, m, opt_two), step(one, m, opt_one), rtol=1e-12)
    assert all(net._may_fuse and bool(net._fusable) == fused for net in (one, two))
    for (name, a, _), (_, b, _) in zip(one.parameters(), two.parameters(), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-15, err_msg=name)


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be at least 1"):
        cnn(workers=0)


def test_the_cnn_learns_the_same_with_its_batches_split():
    """The estimator under a BLAS limit of 2 (as ``train.threads=2`` sets it) trains on
    split batches; in float64 its curves equal the one-thread run's, and it learns."""
    from sklearn.datasets import load_digits

    from pipeline import CNNClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    fitted = {}
    for limit in (1, 2):
        with threadpool_limits(limits=limit):
            fitted[limit] = CNNClassifier(
                ((6, 3, 2),),
                hidden_layer_sizes=(30,),
                batch_size=16,
                epochs=8,
                learning_rate=0.3,
                random_state=0,
                dtype="float64",
            ).fit(X[:1200], y[:1200])
    np.testing.assert_allclose(fitted[2].loss_curve_, fitted[1].loss_curve_, rtol=1e-9)
    assert fitted[2].score(X[1200:], y[1200:]) >= 0.9
