"""A stage's ``--help``: its docstring, the config groups of ``conf/`` and their defaults.

Hydra's own ``--help`` composes the config and lists every group's options through its config
loader, which copies its config repository once per group: about a second of start-up, more
than the rest of the stage's imports together. This help reads the same facts from the
files (the group directories and ``config.yaml``'s defaults list) and points to Hydra for
the composed config (``--cfg job``) and its own flags (``--hydra-help``).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import yaml

HELP_FLAGS = ("--help", "-h")


def stage_help(stage: ModuleType, conf: Path) -> str:
    """The help text of a stage's module (its docstring) for the config directory ``conf``."""
    # Run as `python -m pipeline.train`, the module is __main__; its spec has the real name.
    name = stage.__spec__.name if stage.__spec__ is not None else stage.__name__
    prog = name.removesuffix(".stage")  # pipeline.search runs pipeline/search/stage.py
    lines = [
        f"usage: python -m {prog} [KEY=VALUE | GROUP=OPTION ...]",
        f"       python -m {prog} --params params.yaml",
        "",
        (stage.__doc__ or "").strip(),
        "",
        f"Config groups ({conf}; choose with GROUP=OPTION, the default in brackets):",
        *(f"  {group}: {options}" for group, options in group_options(conf).items()),
        "",
        "Any value: KEY=VALUE (e.g. train.epochs=5, +new.key=1 to add one).",
        "The composed config, overrides applied: --cfg job. Hydra's own flags: --hydra-help.",
    ]
    return "\n".join(lines)


def group_options(conf: Path) -> dict[str, str]:
    """``{"model": "[cnn], cnn2, mlp, ..."}`` for each group directory of ``conf`` (nested
    groups as ``book/chapter``), the default of ``config.yaml`` in brackets."""
    defaults = default_choices(conf / "config.yaml")
    listing: dict[str, str] = {}
    for directory in sorted(path for path in conf.rglob("*") if path.is_dir()):
        options = sorted(path.stem for path in directory.glob("*.yaml"))
        if not options:
            continue
        group = directory.relative_to(conf).as_posix()
        chosen = defaults.get(group)
        shown = [f"[{option}]" if option == chosen else option for option in options]
        if chosen is not None and chosen not in options:
            shown.append(f"[{chosen}]")  # train: ${model}, the model's own training values
        listing[group] = ", ".join(shown)
    return listing


def default_choices(config_file: Path) -> dict[str, str]:
    """``{group: option}`` from the defaults list of ``config_file`` (``null`` choices and
    ``override hydra/...`` entries left out)."""
    try:
        data = yaml.safe_load(config_file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}  # the help still lists the groups; running the stage reports the error
    choices: dict[str, str] = {}
    for entry in data.get("defaults", []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and len(entry) == 1:
            ((group, option),) = entry.items()
            if not str(group).startswith("override ") and option is not None:
                choices[str(group)] = str(option)
    return choices
