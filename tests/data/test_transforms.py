"""Augmentation: exact shifts, geometric transforms, determinism and config validation."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from sklearn.datasets import load_digits

from pipeline.config import compose_config
from pipeline.config.validation import validate_group
from pipeline.data import ConfigError
from pipeline.data import transforms as T

DIGITS = (load_digits().images[:60] / 16.0).astype(np.float32)
LABELS = load_digits().target[:60]


def augment_cfg(name: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_config([f"augment={name}"]).augment, resolve=True)


# --- shifts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["down", "up", "right", "left"])
def test_shifted_image_is_the_original_moved_by_one_pixel(direction):
    dy, dx = T.DIRECTIONS[direction]
    shifted = T.pixel_shifts(DIGITS, 1, (direction,))
    assert shifted.shape == DIGITS.shape and shifted.dtype == DIGITS.dtype
    for image, moved in zip(DIGITS, shifted, strict=True):
        expected = np.zeros_like(image)
        for i in range(8):
            for j in range(8):
                if 0 <= i - dy < 8 and 0 <= j - dx < 8:
                    expected[i, j] = image[i - dy, j - dx]
        np.testing.assert_array_equal(moved, expected)


def test_shifts_match_the_books_expand_mnist():
    """expand_mnist.py: np.roll by one pixel, then zero the row or column that wrapped."""
    images = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    book = []
    for d, axis, index in [(1, 0, 0), (-1, 0, 27), (1, 1, 0), (-1, 1, 27)]:
        rolled = np.roll(images, d, axis + 1)
        if axis == 0:
            rolled[:, index, :] = 0
        else:
            rolled[:, :, index] = 0
        book.append(rolled)
    np.testing.assert_array_equal(T.pixel_shifts(images), np.concatenate(book))


def test_shift_by_more_pixels_and_out_of_frame():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    np.testing.assert_array_equal(T.shift(image, 2, -1)[0, 2:, :3], image[0, :2, 1:])
    assert T.shift(image, 2, -1)[0, :2].sum() == 0 and T.shift(image, 2, -1)[0, :, 3].sum() == 0
    assert not T.shift(image, 4, 0).any()


# --- random geometric transforms ------------------------------------------------------------
RANDOM = {
    "rotations": lambda x, rng: T.rotate(x, rng, max_angle=15),
    "elastic": lambda x, rng: T.elastic(x, rng, alpha=8.0, sigma=3.0),
    "affine": lambda x, rng: T.random_affine(x, rng, 1.5, 0.1, 10),
}


@pytest.mark.parametrize("kind", RANDOM)
def test_random_transforms_are_deterministic_and_pure(kind):
    before = DIGITS.copy()
    a = RANDOM[kind](DIGITS, np.random.default_rng(5))
    b = RANDOM[kind](DIGITS, np.random.default_rng(5))
    c = RANDOM[kind](DIGITS, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == DIGITS.shape and a.dtype == np.float32
    np.testing.assert_array_equal(DIGITS, before)
    assert not np.array_equal(a, DIGITS)
    assert a.min() >= 0 and a.max() <= 1 + 1e-6


@pytest.mark.parametrize("kind", RANDOM)
def test_no_value_leaks_between_images(kind):
    """Images are sampled as one (n, h, w) stack: a blank image must stay blank."""
    stack = DIGITS[:5].copy()
    stack[[0, 2, 4]] = 0
    out = RANDOM[kind](stack, np.random.default_rng(1))
    assert not out[[0, 2, 4]].any() and out[[1, 3]].any()


def test_near_identity_maps_change_nothing():
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(T.rotate(DIGITS, rng, max_angle=1e-12), DIGITS, atol=1e-6)
    np.testing.assert_allclose(T.elastic(DIGITS, rng, alpha=1e-12, sigma=2), DIGITS, atol=1e-6)
    np.testing.assert_allclose(T.random_affine(DIGITS, rng, 0, 0, 1e-12), DIGITS, atol=1e-6)


def test_affine_with_a_whole_pixel_translation_is_a_shift():
    n = len(DIGITS)
    identity = np.tile(np.eye(2), (n, 1, 1))
    moved = T._affine_warp(DIGITS, identity, np.tile([1.0, -1.0], (n, 1)), 1, "t", False)
    np.testing.assert_array_equal(moved, T.shift(DIGITS, 1, -1))


def test_a_quarter_turn_rotates_exactly():
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    theta = np.pi / 2
    inverse = np.array([[[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]]])
    turned = T._affine_warp(image, inverse, np.zeros((1, 2)), 1, "t", False)
    np.testing.assert_allclose(turned[0], np.rot90(image[0], k=1), atol=1e-5)


def test_chunking_does_not_change_rotations(monkeypatch):
    full = T.rotate(DIGITS, np.random.default_rng(3), 20)
    monkeypatch.setattr(T, "CHUNK", 7)
    np.testing.assert_array_equal(T.rotate(DIGITS, np.random.default_rng(3), 20), full)


# --- flips ----------------------------------------------------------------------------------
def test_left_right_flip_mirrors_every_row_exactly():
    flipped = T.flips(DIGITS)
    assert flipped.shape == DIGITS.shape and flipped.dtype == DIGITS.dtype
    for image, mirror in zip(DIGITS, flipped, strict=True):
        for i in range(8):
            for j in range(8):
                assert mirror[i, j] == image[i, 7 - j]
    np.testing.assert_array_equal(T.flips(flipped), DIGITS)  # twice: the original


def test_flip_axes_make_one_block_each_in_order():
    image = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    both = T.flips(image, ("up_down", "left_right"))
    np.testing.assert_array_equal(both[0], [[3, 4, 5], [0, 1, 2]])
    np.testing.assert_array_equal(both[1], [[2, 1, 0], [5, 4, 3]])
    with pytest.raises(ValueError, match="unknown flip axes"):
        T.flips(image, ("diagonal",))


def test_order_must_be_0_or_1():
    with pytest.raises(ValueError, match="order must be 0 or 1"):
        T.rotate(DIGITS, np.random.default_rng(0), 10, order=3)


# --- augment --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "copies"),
    [
        ("shifts", T.pixel_shifts),  # the book's expand_mnist: four one-pixel shifts
        ("flips", lambda images: images[:, :, ::-1]),  # left-right mirror images
    ],
)
def test_config_adds_its_copies_after_the_originals_then_shuffles(name, copies):
    cfg = augment_cfg(name)
    X, y, counts = T.augment(DIGITS, LABELS, cfg, seed=0)
    expected = copies(DIGITS)
    assert counts == {"original": 60, name: len(expected)}
    assert X.shape == (60 + len(expected), 8, 8)
    plain, y_plain, _ = T.augment(DIGITS, LABELS, {**cfg, "shuffle": False}, seed=0)
    np.testing.assert_array_equal(plain[:60], DIGITS)
    np.testing.assert_array_equal(plain[60:], expected)
    np.testing.assert_array_equal(y_plain, np.tile(LABELS, len(X) // 60))
    # shuffled: the same (image, label) pairs in another order
    assert pairs(X, y) == pairs(plain, y_plain) and not np.array_equal(X, plain)


def pairs(X: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
    """The (label, image bytes) pairs of a set, in a canonical order."""
    return sorted(zip(y.tolist(), (x.tobytes() for x in X), strict=True))


def test_flips_with_shifts_leave_the_shifts_as_they_were():
    """Flips draw no random numbers: the shifts' block and the shuffle are unchanged."""
    both, _, counts = T.augment(DIGITS, LABELS, augment_cfg("flips_shifts"), seed=3)
    assert counts == {"original": 60, "shifts": 240, "flips": 60} and len(both) == 360
    plain, _, _ = T.augment(DIGITS, LABELS, {**augment_cfg("flips_shifts"), "shuffle": False}, 3)
    np.testing.assert_array_equal(plain[60:300], T.pixel_shifts(DIGITS))
    np.testing.assert_array_equal(plain[300:], T.flips(DIGITS))


def test_repeated_flip_axes_are_refused():
    cfg = _with("flips", "transforms.flips.axes", ["left_right", "left_right"])
    with pytest.raises(ConfigError, match=r"^augment.transforms.flips.axes: axes repeat"):
        T.augment(DIGITS, LABELS, cfg, seed=0)


def test_full_config_counts_and_labels():
    X, y, counts = T.augment(DIGITS, LABELS, {**augment_cfg("full"), "shuffle": False}, seed=1)
    assert counts == {"original": 60, "shifts": 240, "rotations": 60, "elastic": 60, "affine": 60}
    assert len(X) == len(y) == 480
    np.testing.assert_array_equal(y, np.tile(LABELS, 8))
    assert X.dtype == np.float32 and X.min() >= 0 and X.max() <= 1


def test_none_passes_through():
    X, y, counts = T.augment(DIGITS, LABELS, augment_cfg("none"), seed=0)
    np.testing.assert_array_equal(X, DIGITS)
    np.testing.assert_array_equal(y, LABELS)
    assert counts == {"original": 60}


def test_each_kind_has_its_own_random_stream():
    rotations = {**augment_cfg("rotations"), "shuffle": False}
    full = {**augment_cfg("full"), "shuffle": False}
    alone, _, _ = T.augment(DIGITS, LABELS, rotations, seed=4)
    together, _, _ = T.augment(DIGITS, LABELS, full, seed=4)
    np.testing.assert_array_equal(alone[60:120], together[300:360])


def test_copies_and_seed():
    cfg = augment_cfg("elastic")
    cfg["transforms"]["elastic"]["copies"] = 3
    X1, _, counts = T.augment(DIGITS, LABELS, cfg, seed=9)
    X2, _, _ = T.augment(DIGITS, LABELS, cfg, seed=9)
    X3, _, _ = T.augment(DIGITS, LABELS, cfg, seed=10)
    assert counts["elastic"] == 180 and len(X1) == 240
    np.testing.assert_array_equal(X1, X2)
    assert not np.array_equal(X1, X3)


@pytest.mark.parametrize(
    "name", ["none", "shifts", "rotations", "elastic", "affine", "full", "flips", "flips_shifts"]
)
def test_shipped_configs_are_valid(name):
    checked = validate_group("augment", augment_cfg(name))
    assert {kind for kind, params in checked["transforms"].items() if params} <= set(T.KINDS)


def _with(name: str, path: str, value) -> dict:
    cfg = copy.deepcopy(augment_cfg(name))
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("rotations", "transforms.rotations.max_angle", -10.0),
        ("rotations", "transforms.rotations.max_angle", 0),
        ("rotations", "transforms.rotations.copies", 0),
        ("rotations", "transforms.rotations.copies", 1.5),
        ("rotations", "transforms.rotations.copies", True),
        ("rotations", "transforms.rotations.order", 3),
        ("rotations", "transforms.rotations.angle", 5),
        ("rotations", "transforms.rotations.max_angle", float("nan")),
        ("rotations", "transforms.rotations.max_angle", float("inf")),
        ("elastic", "transforms.elastic.sigma", 0.0),
        ("elastic", "transforms.elastic.alpha", "big"),
        ("affine", "transforms.affine.max_shift", -1),
        ("affine", "transforms.affine.max_scale", 1.0),
        ("shifts", "transforms.shifts.pixels", 0),
        ("shifts", "transforms.shifts.directions", []),
        ("shifts", "transforms.shifts.directions", ["down", "sideways"]),
        ("shifts", "transforms.shifts.directions", ["down", "down"]),
        ("flips", "transforms.flips.axes", ["diagonal"]),
        ("flips", "transforms.flips.axes", []),
        ("flips", "transforms.flips.axes", "left_right"),
        ("flips", "transforms.flips.copies", 2),
        ("shifts", "transforms.blur", {"sigma": 1}),
        ("shifts", "transforms.shifts", 4),
        ("shifts", "shuffle", "maybe"),
        ("shifts", "colour", 1),
        ("shifts", "transforms", 3),
    ],
)
def test_bad_configs_name_the_key(name, path, value):
    cfg = _with(name, path, value)
    key = "augment." + path
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}[:.\\[]"):
        validate_group("augment", cfg)


def test_affine_that_changes_nothing_is_refused():
    cfg = augment_cfg("affine")
    cfg["transforms"]["affine"].update(max_shift=0, max_scale=0, max_shear=0)
    with pytest.raises(ConfigError, match="^augment.transforms.affine: .* all 0"):
        validate_group("augment", cfg)


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [("shifts", "shifts.pixels", 8), ("affine", "affine.max_shift", 1e6)],
)
def test_shift_larger_than_the_image_is_refused(kind, key, value):
    cfg = _with(kind, f"transforms.{key}", value)
    with pytest.raises(ConfigError, match=rf"^augment.transforms.{key}: {value} .* 8x8"):
        T.augment(DIGITS, LABELS, cfg, seed=0)
