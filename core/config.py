"""Dataclass configs loaded from YAML and overridden from the command line (`key=value`, dotted for nesting)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _coerce(value: Any, annotation: Any) -> Any:
    """Turn YAML or command-line values into the field's declared type, so a typo fails loudly."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value or {})
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        return _coerce(value, args[0])
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1] or (Any,)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        return origin(_coerce(v, item) for v in value)
    if annotation is bool and isinstance(value, str):
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if annotation in (int, float, str) and value is not None:
        return annotation(value)
    return value


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """`cls` from a mapping of its fields; a nested config given in part keeps the rest of `cls`'s own default for
    it (so an override file holds only what changes)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    values = dict(values)
    for name, value in values.items():
        if isinstance(value, dict) and dataclasses.is_dataclass(default := _default(fields[name])):
            values[name] = merge(to_dict(default), value)
    return cls(**{k: _coerce(v, hints[k]) for k, v in values.items()})


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of config fields (empty: none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a mapping of config fields")
    return values


def apply_overrides(values: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """`lr=1e-5 generator.n_layer=2` -> nested dict updates. Values are parsed as YAML scalars."""
    values = dict(values)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return values


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of `cls`, then the YAML file at `path`, then `overrides`."""
    values = read_yaml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(values, overrides))


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
