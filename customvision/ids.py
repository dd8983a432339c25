"""The one mapping between Loupe's integer ids and the UUID strings Custom Vision clients use.

The SDK formats every id as a UUID string (lowercase, hyphenated) and sends it back as it got
it; it never checks one. Loupe's ids are integers (BigAutoField), so each object gets a
deterministic UUID that embeds its integer, and the integer is read back out of it: no table,
no lookup, the same UUID forever.

Layout of the 128 bits (an RFC 9562 version-8, "custom", UUID):

    6c6f7570-KKKK-8HHH-8LLL-LLLLLLLLLLLL
    "loup"    kind  ^high ^ the id's low 62 bits (variant bits 10 in front of them)

`KKKK` names the kind of object, so a tag's id sent where a project's is expected reads as no
project at all (404) rather than as project 7. `HHH` holds the id's bits above 62 (ids are at
most 2**63 - 1, so it is 000 or 001). Project 42 is `6c6f7570-0001-8000-8000-00000000002a`.

Plain integers ("42") are accepted too, for scripts that pass Loupe's own ids.
"""

from __future__ import annotations

import uuid
from enum import IntEnum

from project.errors import LoupeError
from project.ids import parse_optional_id

_MARKER = 0x6C6F7570  # "loup"
_VERSION = 8
_VARIANT = 0b10
_LOW_BITS = 62
_LOW_MASK = (1 << _LOW_BITS) - 1


class Kind(IntEnum):
    """What an id names. New kinds take the next number; a number is never reused."""

    PROJECT = 1
    ITERATION = 2
    TAG = 3
    IMAGE = 4
    PREDICTION = 5  # a stored prediction (predictions.Prediction), not its image
    REGION = 6
    DOMAIN = 7
    IMPORT_JOB = 8
    EXPORT = 9


class InvalidCvId(LoupeError):
    """A list of ids (query or body) holds something that is not an id of the wanted kind."""

    code = "BadRequestInvalidIds"
    http_status = 400


def to_uuid(kind: Kind, pk: int) -> str:
    """The UUID string of object `pk` of `kind`."""
    if not 0 <= pk < (1 << 63):
        raise ValueError(f"{pk} is not an id")
    value = (
        (_MARKER << 96)
        | (int(kind) << 80)
        | (_VERSION << 76)
        | ((pk >> _LOW_BITS) << 64)
        | (_VARIANT << 62)
        | (pk & _LOW_MASK)
    )
    return str(uuid.UUID(int=value))


def optional_uuid(kind: Kind, pk: int | None) -> str | None:
    """`to_uuid`, or None for no object (a deleted tag, an unstored prediction)."""
    return None if pk is None else to_uuid(kind, pk)


def from_uuid(value: object, kind: Kind) -> int | None:
    """The integer id `value` names if it is an id of `kind` (our UUID or a plain integer),
    else None. Accepts any spelling uuid.UUID reads (upper case, no hyphens, braces)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return parse_optional_id(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        return parse_optional_id(text)
    if len(text) > 45:  # the longest form uuid.UUID reads ("urn:uuid:" + 36): no parsing work
        return None
    try:
        number = uuid.UUID(text).int
    except ValueError:
        return None
    if (
        number >> 96 != _MARKER
        or (number >> 80) & 0xFFFF != int(kind)
        or (number >> 76) & 0xF != _VERSION
        or (number >> 62) & 0b11 != _VARIANT
    ):
        return None
    high = (number >> 64) & 0xFFF
    if high > 1:
        return None
    return parse_optional_id((high << _LOW_BITS) | (number & _LOW_MASK))


def parse_uuid_list(values: object, kind: Kind, *, field: str, max_count: int) -> list[int]:
    """Ids from a CSV query value ("a,b,c") or a JSON list; InvalidCvId (400) naming `field`
    for any item that is not an id of `kind`, or past `max_count` items. Order kept."""
    if values is None or values == "":
        return []
    if isinstance(values, str):
        items: list[object] = [part for part in values.split(",") if part.strip()]
    elif isinstance(values, list | tuple):
        items = list(values)
    else:
        items = [values]
    if len(items) > max_count:
        raise InvalidCvId(f"“{field}” names more than {max_count} ids.", field=field)
    ids = []
    for item in items:
        pk = from_uuid(item, kind)
        if pk is None:
            raise InvalidCvId(
                f"“{field}” holds “{str(item)[:60]}”, which is not an id.", field=field
            )
        ids.append(pk)
    return ids
