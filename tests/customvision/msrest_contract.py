"""Checking a JSON answer against the SDK's own msrest model, so a renamed or retyped field
fails a test instead of a customer's script (msrest silently leaves an unknown key's field
None, and raises DeserializationError on a date without a `T` only when the field is read).

`assert_matches(payload, Model, required=...)`:
- every key of `payload` is a wire key of `Model` (a misspelled or PascalCase key fails);
- every name in `required` (the model's Python attribute names; "a.b" reaches into a nested
  model or into each item of a list) is present and not null;
- each value has the JSON type the model's msrest type says (str, float/int, bool, iso-8601
  dates msrest parses, lists and nested models recursively);
- msrest's Deserializer reads the payload into the model without error.
"""

from __future__ import annotations

import re
from typing import Any

from msrest.serialization import Deserializer, Model

_LIST = re.compile(r"^\[(.+)\]$")
_DICT = re.compile(r"^\{(.+)\}$")


def assert_matches(payload: Any, model: type[Model], *, required: tuple[str, ...] = ()) -> None:
    _check(payload, model, path=model.__name__)
    for name in required:
        _require(payload, model, name.split("."), path=model.__name__)
    models = {cls.__name__: cls for cls in _models_of(model)}
    deserialized = Deserializer(models)(model.__name__, payload)
    assert isinstance(deserialized, model)


def _models_of(model: type[Model]) -> set[type[Model]]:
    import importlib

    module = importlib.import_module(model.__module__.rsplit(".", 1)[0])
    return {
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Model)
    }


def _model_named(owner: type[Model], name: str) -> type[Model]:
    for candidate in _models_of(owner):
        if candidate.__name__ == name:
            return candidate
    raise AssertionError(f"no msrest model {name} next to {owner.__name__}")


def _check(value: Any, model: type[Model], *, path: str) -> None:
    assert isinstance(value, dict), f"{path}: expected a JSON object, got {type(value).__name__}"
    wire = {spec["key"]: spec["type"] for spec in model._attribute_map.values()}
    unknown = sorted(set(value) - set(wire))
    assert not unknown, (
        f"{path}: keys {unknown} are not in the SDK's {model.__name__} ({sorted(wire)})"
    )
    for key, item in value.items():
        _check_type(item, wire[key], model, path=f"{path}.{key}")


def _check_type(value: Any, kind: str, owner: type[Model], *, path: str) -> None:
    if value is None:
        return
    if match := _LIST.match(kind):
        assert isinstance(value, list), f"{path}: expected a list for {kind}"
        for index, item in enumerate(value):
            _check_type(item, match.group(1), owner, path=f"{path}[{index}]")
    elif match := _DICT.match(kind):
        assert isinstance(value, dict), f"{path}: expected an object for {kind}"
        for key, item in value.items():
            _check_type(item, match.group(1), owner, path=f"{path}.{key}")
    elif kind == "str":
        assert isinstance(value, str), f"{path}: expected a string, got {value!r}"
    elif kind in ("float", "long", "int"):
        assert isinstance(value, int | float) and not isinstance(value, bool), (
            f"{path}: expected a number, got {value!r}"
        )
    elif kind == "bool":
        assert isinstance(value, bool), f"{path}: expected true/false, got {value!r}"
    elif kind == "iso-8601":
        assert isinstance(value, str) and "T" in value, f"{path}: not an ISO-8601 date: {value!r}"
        Deserializer.deserialize_iso(value)  # raises on a form msrest cannot read
    elif kind == "object":
        pass
    else:
        _check(value, _model_named(owner, kind), path=path)


def _require(value: Any, model: type[Model], names: list[str], *, path: str) -> None:
    attribute = model._attribute_map.get(names[0])
    assert attribute is not None, f"{model.__name__} has no attribute {names[0]}"
    key = attribute["key"]
    assert isinstance(value, dict) and value.get(key) is not None, f"{path}.{key} is missing"
    if len(names) == 1:
        return
    inner = value[key]
    kind = attribute["type"]
    nested = _model_named(model, kind.strip("[]"))
    items = inner if _LIST.match(kind) else [inner]
    assert items, f"{path}.{key} is empty"
    for index, item in enumerate(items):
        _require(item, nested, names[1:], path=f"{path}.{key}[{index}]")
