"""Checks for everything that reaches an iPXE script, a template or a query.

Values that end up in a boot script must not carry a newline, `${...}` or
shell metacharacters, so each field is held to a strict pattern here, once,
at the edge.
"""

from __future__ import annotations

import re
import uuid as uuidlib

from bootfleet.errors import ValidationError

_HEX = re.compile(r"^[0-9a-f]{12}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})$")
LABEL_VALUE_RE = re.compile(r"^[A-Za-z0-9._:/+=@ -]{0,253}$")
SERIAL_RE = re.compile(r"^[A-Za-z0-9._ -]{0,64}$")
# Kernel arguments, image keys and URLs: printable, no newline, no `${`, no quotes or backslashes.
SAFE_TEXT_RE = re.compile(r"^[\x21-\x7e ]*$")


def normalize_mac(value: str, field: str = "mac") -> str:
    """52:54:00:AB:CD:EF, 52-54-00-ab-cd-ef and 525400abcdef all become 52:54:00:ab:cd:ef."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    raw = value.strip(" ").lower()
    if re.fullmatch(r"([0-9a-f]{2}[:-]){5}[0-9a-f]{2}", raw) and len(set(raw[2::3])) == 1:
        hexdigits = raw.replace(":", "").replace("-", "")
    elif re.fullmatch(r"([0-9a-f]{4}\.){2}[0-9a-f]{4}", raw):
        hexdigits = raw.replace(".", "")
    else:
        hexdigits = raw
    if not _HEX.match(hexdigits):
        raise ValidationError(field, f"{value[:40]!r} is not a MAC address (expected e.g. 52:54:00:12:34:56)")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def normalize_uuid(value: str, field: str = "uuid") -> str:
    try:
        return str(uuidlib.UUID(value.strip()))
    except (ValueError, AttributeError):
        raise ValidationError(field, f"{str(value)[:40]!r} is not a UUID") from None


def is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
        return True
    except (ValueError, AttributeError, TypeError):
        return False


def check_hostname(value: str, field: str = "hostname") -> str:
    value = value.strip().lower().rstrip(".") if isinstance(value, str) else value
    if not isinstance(value, str) or not HOSTNAME_RE.match(value):
        raise ValidationError(field, "must be a DNS name: letters, digits, '-' and '.', at most 253 characters")
    return value


def check_name(value: str, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ValidationError(
            field, "must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit"
        )
    return value


def check_labels(labels: dict, field: str = "labels") -> dict:
    if not isinstance(labels, dict):
        raise ValidationError(field, "must be an object of string keys and string values")
    if len(labels) > 64:
        raise ValidationError(field, "at most 64 labels")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise ValidationError(f"{field}.{str(key)[:40]}", "label keys are letters, digits and . _ / -")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise ValidationError(
                f"{field}.{key}", "label values are at most 253 letters, digits, spaces and . _ : / + = @ -"
            )
    return labels


def check_serial(value: str, field: str = "serial") -> str:
    if not isinstance(value, str) or not SERIAL_RE.match(value):
        raise ValidationError(field, "serial numbers are at most 64 letters, digits, spaces and . _ -")
    return value


def check_safe_text(value: str, field: str, max_length: int = 4096) -> str:
    """Text that goes into an iPXE script line as it is (kernel args, URLs, image keys)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if len(value) > max_length:
        raise ValidationError(field, f"at most {max_length} characters")
    if not SAFE_TEXT_RE.match(value):
        raise ValidationError(field, "must be printable ASCII on one line")
    if "${" in value or any(c in value for c in "\"'\\`;|<>"):
        raise ValidationError(field, "must not contain ${...}, quotes, backslashes or ; | < > `")
    return value
