"""Experiment configs: load a config file, apply ``FIELD=VALUE`` overrides, compare two configs.

A config file is a Python file defining ``get_config()`` (or ``get_config(arg)``, called for
``FILE.py:ARG``) that returns a nested ``ml_collections.ConfigDict`` with the sections ``data``,
``model``, ``loss``, ``optim``, ``eval`` and ``run`` (``experiments/configs/default.py`` documents
every field). Overrides name a field by its dotted path (``model.encoder=resnet18``); the value
is read as a Python literal when it parses as one, else as a string, and must keep the field's
type. Errors are :class:`ConfigError`, one line naming the file or field and what was expected.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from recon_jax.errors import UserError

__all__ = ["ConfigError", "SECTIONS", "load_config_file", "apply_overrides", "config_diff"]

#: The sections of every config.
SECTIONS = ("data", "model", "loss", "optim", "eval", "run")


class ConfigError(UserError):
    """A config file or field that is not what was expected (the message says what)."""


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """The config of ``path`` (``FILE.py`` or ``FILE.py:ARG``), checked to have every section."""
    file, arg = (path.rsplit(":", 1) if ":" in os.path.basename(path) else (path, None))
    if not os.path.isfile(file):
        raise ConfigError(f"config file {file!r} not found (expected a .py file with get_config)")
    name = "recon_jax_config_" + os.path.splitext(os.path.basename(file))[0]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{file}: not a Python file (expected a .py file with get_config)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{file}: defines no get_config()")
    try:
        config = module.get_config() if arg is None else module.get_config(arg)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{file}: {e}") from None
    missing = [s for s in SECTIONS if s not in config]
    if missing:
        raise ConfigError(f"{file}: config lacks the section(s) {missing}, expected {SECTIONS}")
    return config


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Set each ``"dotted.field=value"`` of ``overrides`` in ``config`` (in place).

    Raises:
      ConfigError: the field does not exist, or the value does not fit its type.
    """
    for item in overrides:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise ConfigError(f"override {item!r}: expected FIELD=VALUE, "
                              "e.g. model.encoder=resnet18")
        *parents, leaf = field.split(".")
        node = config
        for i, part in enumerate(parents):
            if not isinstance(node, ml_collections.ConfigDict) or part not in node:
                raise ConfigError(f"config field {'.'.join(parents[:i + 1])!r} does not exist")
            node = node[part]
        if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
            raise ConfigError(f"config field {field!r} does not exist")
        value, old = _parse_value(text), node[leaf]
        if isinstance(old, str) and not isinstance(value, str):
            value = text  # "--config.data.data_dir=123" stays a string
        if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(old, ml_collections.ConfigDict) or (
                old is not None and not isinstance(value, type(old))):
            raise ConfigError(f"config field {field!r}: expected a {type(old).__name__}, "
                              f"got {text!r}")
        node[leaf] = value


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any],
                sections: Iterable[str] = SECTIONS) -> list[str]:
    """Dotted names of the fields of ``sections`` whose values differ between ``a`` and ``b``
    (tuples and lists compare equal, as a config read back from JSON has lists)."""
    a, b = (c.to_dict() if isinstance(c, ml_collections.ConfigDict) else c for c in (a, b))
    fa, fb = (_flatten({s: dict(c.get(s, {})) for s in sections}) for c in (a, b))
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))
