"""Ids from outside: query strings, form fields, multipart fields and JSON bodies.

Every primary key is a signed 64-bit integer (BigAutoField). A larger number handed to the
database driver raises OverflowError (SQLite) or a range error (PostgreSQL) — a 500 — so ids are
checked here, at the edge, and a bad one answers 400 naming its field. Views, API serializers
and forms all parse ids through this module; nothing else calls `int()` on an id.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from rest_framework import serializers

from project.errors import LoupeError

MAX_ID = 2**63 - 1
# No id has more digits than MAX_ID: a longer string is refused before int() parses it
# (int() of a 100,000-digit string costs real CPU time).
_MAX_DIGITS = len(str(MAX_ID))
ID_RULE = f"whole numbers from 1 to {MAX_ID}"


class InvalidId(LoupeError):
    code = "invalid_id"
    http_status = 400


def whole_number(text: str) -> int | None:
    """The whole number 0..MAX_ID that `text` spells in ASCII digits, or None (signs, spaces,
    other digits such as '²', more digits than an id has): what the database takes, parsed
    without int()'s cost on long input. For ids and for positions inside cursors."""
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    number = int(text)
    return number if number <= MAX_ID else None


def _as_id(value: object) -> int | None:
    """The id `value` spells, or None if it is not one (bools, floats, signs, huge numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number: int | None = value
    elif isinstance(value, str):
        number = whole_number(value.strip())
    else:
        return None
    return number if number is not None and 1 <= number <= MAX_ID else None


def parse_id(value: object, *, field: str) -> int:
    """`value` as an id; InvalidId (400) naming `field` if it is not one."""
    number = _as_id(value)
    if number is None:
        raise InvalidId(f"“{field}” must be an id: {ID_RULE}.", field=field)
    return number


def parse_optional_id(value: object) -> int | None:
    """An id, or None for a missing or bad one: for query strings where a stale bookmark
    should show the default page rather than an error."""
    return _as_id(value) if value not in (None, "") else None


def parse_ids(values: object, *, field: str, max_count: int | None = None) -> list[int]:
    """A list of ids from a list, or one value, or a comma-separated string; order kept."""
    if values is None or values == "":
        return []
    items: Iterable[object]
    if isinstance(values, str):
        items = [part for part in values.split(",") if part.strip()]
    elif isinstance(values, list | tuple):
        items = values
    else:
        items = [values]
    ids = [parse_id(item, field=field) for item in items]
    if max_count is not None and len(ids) > max_count:
        raise InvalidId(f"“{field}” names more than {max_count} ids.", field=field)
    return ids


# --- DRF and Django form fields built on the same rule ---------------------------------------


class IdField(serializers.IntegerField):
    """A DRF id field: 1..MAX_ID, with a message that says so."""

    default_error_messages = {
        "invalid": f"Ids are {ID_RULE}.",
        "min_value": f"Ids are {ID_RULE}.",
        "max_value": f"Ids are {ID_RULE}.",
        "max_string_length": f"Ids are {ID_RULE}.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        # DRF's IntegerField takes 1.0 and "1.0"; an id never has a decimal point.
        if _as_id(data) is None:
            self.fail("invalid")
        return super().to_internal_value(data)  # type: ignore[no-any-return]


def id_list_field(**kwargs: Any) -> serializers.ListField:
    """A DRF list of ids."""
    return serializers.ListField(child=IdField(), **kwargs)


class FormIdField(forms.IntegerField):
    """A Django form id field: 1..MAX_ID."""

    default_error_messages = {"invalid": f"Ids are {ID_RULE}."}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> int | None:
        if value in self.empty_values:
            return None
        number = _as_id(value)
        if number is None:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return number


class FormIdListField(forms.Field):
    """Repeated `name=<id>` parameters (checkboxes of selected items) as a list of ids."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {"invalid": f"Ids are {ID_RULE}."}

    def to_python(self, value: object) -> list[int]:
        if not value:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        try:
            return [parse_id(v, field="ids") for v in values]
        except InvalidId:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
