"""Training-set augmentation: pure functions of (images, numpy Generator).

- :func:`shift` / :func:`pixel_shifts`: the book's ``expand_mnist.py``, every image moved one
  pixel down, up, right and left with zero fill, exactly (no interpolation).
- :func:`rotate`: small random rotations about the image centre.
- :func:`elastic`: elastic distortions (Simard, Steinkraus and Platt, 2003): a random
  displacement field, uniform in [-1, 1] per pixel, smoothed by a Gaussian of ``sigma`` pixels
  and scaled by ``alpha``.
- :func:`random_affine`: random translations, scalings and shears.
- :func:`flips`: mirror images, left-right (a shirt seen in a mirror is still a shirt: the
  augmentation for clothing) or upside down; exact, and the same every run.

Images are float arrays of shape (n, height, width) with a zero background. The geometric
transforms build, for a chunk of images at once, the source coordinates of every output pixel,
and sample them with a single ``scipy.ndimage.map_coordinates`` call over the (n, h, w) stack:
the image index is an exact integer coordinate, so with spline order 0 or 1 no value leaks
between images. Nothing loops over pixels, and the only loop is over chunks of images (to
bound memory), with a progress bar for long runs. The same seed gives the same output.

:func:`augment` expands a training set as an ``augment`` config describes (checked against
its schema, :class:`pipeline.config.schema.AugmentConfig`, when a stage starts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from pipeline.data import ConfigError

CHUNK = 2048  # images per map_coordinates call: bounds memory, never changes results
PROGRESS_MIN = 20_000  # show a progress bar from this many images on
DIRECTIONS = {"down": (1, 0), "up": (-1, 0), "right": (0, 1), "left": (0, -1)}
BOOK_DIRECTIONS = ("down", "up", "right", "left")  # expand_mnist.py's order

FLIP_AXES = {"left_right": 2, "up_down": 1}  # axis of an (n, h, w) stack
KINDS = ("shifts", "rotations", "elastic", "affine", "flips")  # index: each kind's seed stream
SHUFFLE_STREAM = 4  # the shuffle's seed stream: fixed, so a new kind never reorders the others


# --- the transforms -------------------------------------------------------------------------
def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images moved ``dy`` pixels down and ``dx`` right (negative: up, left), zero filled."""
    images = np.asarray(images)
    _, height, width = images.shape
    out = np.zeros_like(images)
    if abs(dy) >= height or abs(dx) >= width:
        return out
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = images[
        :, max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)
    ]
    return out


def pixel_shifts(
    images: np.ndarray, pixels: int = 1, directions: tuple[str, ...] = BOOK_DIRECTIONS
) -> np.ndarray:
    """Shifted copies of ``images``, one block of n per direction, in ``directions`` order."""
    unknown = set(directions) - set(DIRECTIONS)
    if unknown:
        raise ValueError(f"unknown directions {sorted(unknown)}; expected {sorted(DIRECTIONS)}")
    blocks = [
        shift(images, DIRECTIONS[d][0] * pixels, DIRECTIONS[d][1] * pixels) for d in directions
    ]
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate(blocks) if blocks else images[:0].copy()


def flips(images: np.ndarray, axes: tuple[str, ...] = ("left_right",)) -> np.ndarray:
    """Mirrored copies of ``images`` (n, h, w), one block of n per axis, in ``axes`` order:
    ``left_right`` reverses each row (x -> w - 1 - x), ``up_down`` each column."""
    unknown = set(axes) - set(FLIP_AXES)
    if unknown:
        raise ValueError(f"unknown flip axes {sorted(unknown)}; expected {sorted(FLIP_AXES)}")
    images = np.asarray(images)
    blocks = [np.flip(images, axis=FLIP_AXES[axis]) for axis in axes]
    return np.concatenate(blocks) if blocks else images[:0].copy()


def rotate(
    images: np.ndarray,
    rng: np.random.Generator,
    max_angle: float,
    order: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Each image rotated about its centre by an angle uniform in [-max_angle, max_angle] deg."""
    theta = np.deg2rad(rng.uniform(-max_angle, max_angle, size=len(images)))
    cos, sin = np.cos(theta), np.sin(theta)
    inverse = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    return _affine_warp(images, inverse, np.zeros((len(images), 2)), order, "rotations", progress)


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    max_shift: float,
    max_scale: float = 0.0,
    max_shear: float = 0.0,
    order: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Each image scaled by 1 +- max_scale, sheared by +- max_shear degrees (horizontally) and
    shifted by +- max_shift pixels on each axis, all uniform, about the image centre."""
    n = len(images)
    scale = rng.uniform(1 - max_scale, 1 + max_scale, size=n)
    shear = np.tan(np.deg2rad(rng.uniform(-max_shear, max_shear, size=n)))
    translation = rng.uniform(-max_shift, max_shift, size=(n, 2))
    # forward map, on (y, x) about the centre: p' = s * [[1, 0], [h, 1]] p + t; sample its inverse
    ones, zeros = np.ones(n), np.zeros(n)
    inverse = np.stack([np.stack([ones, zeros], -1), np.stack([-shear, ones], -1)], -2)
    inverse /= scale[:, None, None]
    return _affine_warp(images, inverse, translation, order, "affine", progress)


def elastic(
    images: np.ndarray,
    rng: np.random.Generator,
    alpha: float,
    sigma: float,
    order: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Elastic distortions of Simard et al. (2003): every pixel is sampled from its position
    plus ``alpha`` times a uniform [-1, 1] random field smoothed by a Gaussian of ``sigma``."""

    def displaced(chunk: slice, grid: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
        count = chunk.stop - chunk.start
        field = rng.uniform(-1.0, 1.0, size=(2, count, *grid[0].shape))
        field = ndimage.gaussian_filter(field, sigma=(0, 0, sigma, sigma), mode="constant")
        return [grid[0] + alpha * field[0], grid[1] + alpha * field[1]]

    return _warp(images, displaced, order, "elastic", progress)


# --- coordinate maps ------------------------------------------------------------------------
def _affine_warp(
    images: np.ndarray,
    inverse: np.ndarray,
    translation: np.ndarray,
    order: int,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """Images under per-image affine maps about the centre: each output pixel p is sampled
    at ``inverse[i] @ (p - centre - translation[i]) + centre``."""
    centre = (np.array(images.shape[1:]) - 1) / 2.0

    def source(chunk: slice, grid: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
        rel = np.stack(grid) - centre[:, None, None]  # (2, h, w)
        rel = rel[None] - translation[chunk, :, None, None]  # (c, 2, h, w)
        coords = np.einsum("cij,cjhw->ichw", inverse[chunk], rel)
        return [coords[0] + centre[0], coords[1] + centre[1]]

    return _warp(images, source, order, desc, progress)


def _warp(
    images: np.ndarray,
    source: Callable[[slice, tuple[np.ndarray, np.ndarray]], list[np.ndarray]],
    order: int,
    desc: str,
    progress: bool,
) -> np.ndarray:
    """Sample each image at the (y, x) coordinates that ``source(chunk, grid)`` returns."""
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order}")
    images = np.asarray(images)
    out = np.empty_like(images)
    grid = np.indices(images.shape[1:], dtype=np.float64)
    for chunk in _chunks(len(images), desc, progress):
        stack = images[chunk]
        y, x = source(chunk, (grid[0], grid[1]))
        z = np.broadcast_to(np.arange(len(stack), dtype=np.float64)[:, None, None], y.shape)
        out[chunk] = ndimage.map_coordinates(
            stack, [z, np.broadcast_to(y, z.shape), np.broadcast_to(x, z.shape)],
            order=order, mode="grid-constant", cval=0.0,
        )  # fmt: skip
    return out


def _chunks(n: int, desc: str, progress: bool) -> Iterator[slice]:
    show = progress and n >= PROGRESS_MIN
    with tqdm(total=n, desc=desc, unit="img", disable=None if show else True) as bar:
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            yield slice(start, stop)
            bar.update(stop - start)


def augment(
    images: np.ndarray,
    labels: np.ndarray,
    cfg: Mapping[str, Any],
    seed: int,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(X, y, counts): the originals plus every configured transform's copies of them.

    Each transform kind draws from its own stream of ``seed``, so enabling one does not
    change another's output. With ``shuffle`` the result is permuted (as the book does).
    ``counts`` maps ``original`` and each kind to its number of images.
    """
    transforms = {kind: params for kind, params in (cfg.get("transforms") or {}).items() if params}
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(
            f"expected (n, h, w) images and n labels, got {images.shape}, {labels.shape}"
        )
    _check_shift_size(transforms, images.shape[1:])
    _check_flip_axes(transforms)
    n = len(images)
    sizes = {"original": n} | {kind: n * _copies(kind, p) for kind, p in transforms.items()}
    total = sum(sizes.values())
    if cfg.get("shuffle", False):
        order = np.random.default_rng([seed, SHUFFLE_STREAM]).permutation(total)
    else:
        order = np.arange(total)
    low, high = min(float(images.min(initial=0.0)), 0.0), float(images.max(initial=0.0))
    X = np.empty((total, *images.shape[1:]), dtype=images.dtype)
    y = np.empty(total, dtype=labels.dtype)
    start = 0
    for block in _blocks(images, transforms, seed, progress):
        where = order[start : start + len(block)]
        X[where], y[where] = block, labels[np.arange(len(block)) % n]
        start += len(block)
    np.clip(X, low, high, out=X)  # interpolation stays in the input's range, up to rounding
    return X, y, sizes


def _blocks(
    images: np.ndarray, transforms: Mapping[str, dict[str, Any]], seed: int, progress: bool
) -> Iterator[np.ndarray]:
    """The originals, then each kind's copies, n images at a time (labels repeat with n)."""
    yield images
    for kind, params in transforms.items():
        if kind == "shifts":  # one direction at a time: a block of n, less memory
            for direction in params["directions"]:
                yield pixel_shifts(images, params["pixels"], (direction,))
            continue
        if kind == "flips":  # exact and deterministic: no random stream
            for axis in params["axes"]:
                yield flips(images, (axis,))
            continue
        rng = np.random.default_rng([seed, KINDS.index(kind)])
        func, kwargs = _random_transform(kind, params)
        for _ in range(params["copies"]):
            yield func(images, rng, **kwargs, progress=progress)


def _random_transform(kind: str, params: Mapping[str, Any]) -> tuple[Callable, dict[str, Any]]:
    funcs: dict[str, Callable] = {"rotations": rotate, "elastic": elastic, "affine": random_affine}
    return funcs[kind], {key: value for key, value in params.items() if key != "copies"}


def _copies(kind: str, params: Mapping[str, Any]) -> int:
    if kind == "shifts":
        return len(params["directions"])
    return len(params["axes"]) if kind == "flips" else params["copies"]


def _check_flip_axes(transforms: Mapping[str, dict[str, Any]]) -> None:
    axes = list(transforms.get("flips", {}).get("axes", []))
    if len(set(axes)) != len(axes):
        raise ConfigError(f"augment.transforms.flips.axes: axes repeat: {axes}")


def _check_shift_size(transforms: Mapping[str, dict[str, Any]], shape: tuple[int, ...]) -> None:
    sizes = {
        "shifts.pixels": transforms.get("shifts", {}).get("pixels", 0),
        "affine.max_shift": transforms.get("affine", {}).get("max_shift", 0),
    }
    for key, pixels in sizes.items():
        if pixels >= min(shape):
            raise ConfigError(
                f"augment.transforms.{key}: {pixels} would move {shape[0]}x{shape[1]} "
                "images out of the frame"
            )
