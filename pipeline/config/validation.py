"""One validation step for a composed config, run at stage start before anything is written.

1. Types, choices and unknown keys: the config is merged onto the schema
   (:class:`pipeline.config.schema.Config`); OmegaConf rejects what does not fit.
2. Ranges and finiteness: the ``metadata`` bounds of each schema field; every float finite.
3. Rules that tie fields together (:data:`RULES`).

Every problem is a :class:`ConfigError` of one format:
``<key>: <problem> (got <value>)``; stages print it as ``config error: ...`` and exit 2.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pipeline.config.schema import GROUPS, Config
from pipeline.errors import ConfigError

# Top-level keys that only some configs carry: absent when the composed config has none.
OPTIONAL_SECTIONS = ("conf_hash", "book")


def config_error(key: str, problem: str, value: Any) -> ConfigError:
    return ConfigError(f"{key}: {problem} (got {value!r})")


def validate(cfg: DictConfig | dict) -> DictConfig:
    """The config checked against the schema, with defaults filled in and choices as plain
    strings; raises :class:`ConfigError` naming the first key at fault."""
    values = _typed(Config, cfg, "")
    _check_bounds(Config, values, "")
    for group, rule in RULES.items():
        rule(values[group])
    for optional in OPTIONAL_SECTIONS:
        if values.get(optional) is None:
            del values[optional]
    return OmegaConf.create(values)


def validate_group(group: str, cfg: DictConfig | dict) -> dict[str, Any]:
    """One group's section (``data``, ``augment``, ...) checked as :func:`validate` checks it
    inside a whole config: for the library functions that take one section."""
    values = validate_schema(GROUPS[group], cfg, f"{group}.")
    if group in RULES:
        RULES[group](values)
    return values


def validate_schema(schema: type, cfg: DictConfig | dict, prefix: str) -> dict[str, Any]:
    """``cfg`` checked against any schema dataclass (types, keys, ranges); keys in errors
    start with ``prefix``."""
    values = _typed(schema, cfg, prefix)
    _check_bounds(schema, values, prefix)
    return values


def _typed(schema: type, cfg: DictConfig | dict, prefix: str) -> dict[str, Any]:
    try:
        given = OmegaConf.to_container(OmegaConf.create(cfg), resolve=True)
        _check_sections(schema, given, prefix)
        merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
        return OmegaConf.to_container(  # type: ignore[return-value]
            merged, resolve=True, enum_to_str=True, throw_on_missing=True
        )
    except OmegaConfBaseException as err:
        raise _from_omegaconf(err, prefix) from None


def _from_omegaconf(err: OmegaConfBaseException, prefix: str) -> ConfigError:
    """OmegaConf's multi-line message as one line in our format."""
    key = f"{prefix}{getattr(err, 'full_key', None) or ''}".rstrip(".") or "top level"
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    if re.match(r"Key '.*' not in", message):
        return ConfigError(f"{key}: unknown key")
    if message.startswith("Missing mandatory value"):
        return ConfigError(f"{key}: missing (no value given)")
    for pattern, problem in OMEGACONF_PROBLEMS:
        match = re.search(pattern, message)
        if match:
            message = match.expand(problem)
            break
    return config_error(key, message, getattr(err, "value", None))


# OmegaConf's wording -> ours (the value is shown after it in any case).
OMEGACONF_PROBLEMS = [
    (r"expected one of (\[.*\])", r"must be one of \1"),
    (r"is not a valid bool", "expected true or false"),
    (r"could not be converted to Integer", "expected an integer"),
    (r"could not be converted to Float", "expected a number"),
    (r"could not be converted to String", "expected a string"),
    (r"is not a ListConfig, list or tuple", "expected a list"),
    (r"is not Optional|Incompatible value .None.", "must not be null"),
    (r"is not a subclass of|Cannot assign .* to", "expected a mapping"),
]


def _check_sections(schema: type, values: Any, prefix: str) -> None:
    """Each section the schema nests is a mapping (OmegaConf's merge error names no key)."""
    if not isinstance(values, dict):
        raise config_error(prefix.rstrip(".") or "top level", "expected a mapping", values)
    for spec in dataclasses.fields(schema):
        node_type = _dataclass_of(spec.type, schema)
        if node_type is not None and values.get(spec.name) is not None:
            _check_sections(node_type, values[spec.name], f"{prefix}{spec.name}.")


# --- ranges -------------------------------------------------------------------------------
BOUNDS = {
    "ge": (lambda v, b: v >= b, ">="),
    "gt": (lambda v, b: v > b, ">"),
    "le": (lambda v, b: v <= b, "<="),
    "lt": (lambda v, b: v < b, "<"),
}


def _check_bounds(schema: type, values: dict[str, Any], prefix: str) -> None:
    for spec in dataclasses.fields(schema):
        key, value = f"{prefix}{spec.name}", values.get(spec.name)
        node_type = _dataclass_of(spec.type, schema)
        if node_type is not None and isinstance(value, dict):
            _check_bounds(node_type, value, f"{key}.")
            continue
        _check_value(key, value, spec.metadata)


def _dataclass_of(annotation: Any, owner: type) -> type | None:
    """The dataclass a field holds (``X`` or ``X | None``), else None."""
    names = [part.strip() for part in str(annotation).split("|")]
    module = __import__(owner.__module__, fromlist=["_"])
    for name in names:
        candidate = getattr(module, name, None)
        if dataclasses.is_dataclass(candidate):
            return candidate  # type: ignore[return-value]
    return None


def _check_value(key: str, value: Any, bounds: Any) -> None:
    if value is None:
        return
    if bounds.get("nonempty") and not (value.strip() if isinstance(value, str) else value):
        raise config_error(key, "must not be empty", value)
    for number in _numbers(value):
        if isinstance(number, float) and not math.isfinite(number):
            raise config_error(key, "must be a finite number", value)
        for name, (holds, symbol) in BOUNDS.items():
            if name in bounds and not holds(number, bounds[name]):
                raise config_error(key, f"must be {symbol} {bounds[name]}", value)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    return []


# --- rules across fields ------------------------------------------------------------------
def _data(data: dict) -> None:
    split = data["split"]
    if data["name"] in ("mnist_sample", "digits"):
        fractions = {part: split[part] for part in ("train", "val", "test")}
        for part, fraction in fractions.items():
            if fraction is None:
                raise config_error(f"data.split.{part}", "missing", None)
            if fraction >= 1:
                raise config_error(f"data.split.{part}", "must be a fraction < 1", fraction)
        if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
            raise config_error("data.split", "fractions must add up to 1", fractions)
        return
    if split["val"] is None:
        raise config_error("data.split.val", "missing: a count or a fraction", None)
    if split["val"] >= 1 and not float(split["val"]).is_integer():
        raise config_error("data.split.val", "a count must be a whole number", split["val"])
    if data["files"] is None:
        raise config_error("data.files", "missing: the four IDX files", None)
    if data["name"] == "idx" and not data["path"]:
        raise config_error("data.path", "data=idx needs the directory of the IDX files", None)
    shape = data["image_shape"]
    if shape is not None and len(shape) != 2:
        raise config_error("data.image_shape", "expected [height, width]", shape)


def _augment(augment: dict) -> None:
    transforms = augment["transforms"]
    shifts = transforms.get("shifts")
    if shifts and len(set(shifts["directions"])) != len(shifts["directions"]):
        raise config_error(
            "augment.transforms.shifts.directions", "directions repeat", shifts["directions"]
        )
    affine = transforms.get("affine")
    if affine and not any(affine[key] for key in ("max_shift", "max_scale", "max_shear")):
        raise config_error(
            "augment.transforms.affine",
            "max_shift, max_scale and max_shear are all 0: every copy would equal its original",
            affine,
        )


def _model(model: dict) -> None:
    conv = model["conv_layers"]
    if model["estimator"] == "CNNClassifier":
        if not conv:
            raise config_error("model.conv_layers", "CNNClassifier needs conv layers", conv)
        for i, layer in enumerate(conv):
            if len(layer) != 3:
                raise config_error(
                    f"model.conv_layers[{i}]", "expected [filters, kernel size, pool size]", layer
                )
    else:
        if conv is not None:
            raise config_error("model.conv_layers", "only CNNClassifier has conv layers", conv)
        if model["predict_flips"]:
            raise config_error(
                "model.predict_flips", "only CNNClassifier predicts on mirrored images", True
            )


# A study's name becomes part of lock file names: a plain name, no path.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _search(search: dict) -> None:
    from pipeline.search.space import check_space  # the search owns its space's rules

    check_space(search["space"])
    storage = search["storage"]
    for prefix in ("sqlite:///", "journal://"):
        if storage.startswith(prefix):
            file = storage.removeprefix(prefix)
            if not file.strip() or file.endswith("/") or "?" in file:
                raise config_error(
                    "search.storage", f"expected {prefix}FILE, a file path without a query", file
                )
    name = search["study_name"]
    if name is not None and not _PLAIN_NAME.fullmatch(name):
        raise config_error(
            "search.study_name", "letters, digits, '_', '.' and '-' only (no path)", name
        )


def _tracking(tracking: dict) -> None:
    if tracking["enabled"] and not (tracking["uri"] or "").strip():
        raise config_error("tracking.uri", "empty: set a store or use tracking=off", None)


RULES: dict[str, Callable[[dict], None]] = {
    "data": _data,
    "augment": _augment,
    "model": _model,
    "search": _search,
    "tracking": _tracking,
}
