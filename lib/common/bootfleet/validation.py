"""Checks for everything that reaches an iPXE script, a template or a query.

Each field is held to a pattern here, once, at the edge, and every pattern is a full
match (`re.fullmatch`: `^...$` with `re.match` lets a trailing newline through).

Text that goes on an iPXE command line as it is (kernel arguments, image URLs) is held
to what iPXE itself interprets, read from its source (src/image/script.c,
src/core/exec.c, src/core/settings.c): a script line ends at `\n` (a trailing `\r` or
`\\` joins or trims lines); a line is split into words at any of ` \t\n\v\f\r`,
with no quoting; a word that is exactly `||`, `&&` or `;` ends the command and a word
starting with `#` starts a comment; `${name}` in a word is replaced by a setting.
Everything else (`;` inside a word as in `ds=nocloud-net;s=...`, quotes, backslashes,
`|`, `<`, `>`) reaches the kernel verbatim, so it is allowed.
"""

from __future__ import annotations

import ipaddress
import re
import uuid as uuidlib

from bootfleet.errors import ValidationError

# Patterns are used with fullmatch only (tests/unit/test_validation.py checks every use).
_HEX = re.compile(r"[0-9a-f]{12}")
HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LABEL_KEY_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,62})")
LABEL_VALUE_RE = re.compile(r"[A-Za-z0-9._:/+=@ -]{0,253}")
SERIAL_RE = re.compile(r"[A-Za-z0-9._ -]{0,64}")
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What iPXE splits words at (src/core/ctype.c isspace), and the words that end a command.
IPXE_SPACE = " \t\n\v\f\r"
IPXE_TERMINATORS = ("||", "&&", ";")


_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


def normalize_mac(value: str, field: str = "mac") -> str:
    """52:54:00:AB:CD:EF, 52-54-00-ab-cd-ef and 525400abcdef all become 52:54:00:ab:cd:ef."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if _CANONICAL_MAC.fullmatch(value):  # what iPXE's ${netX/mac} sends: already the form
        return value
    raw = value.strip(" ").lower()
    if re.fullmatch(r"([0-9a-f]{2}[:-]){5}[0-9a-f]{2}", raw) and len(set(raw[2::3])) == 1:
        hexdigits = raw.replace(":", "").replace("-", "")
    elif re.fullmatch(r"([0-9a-f]{4}\.){2}[0-9a-f]{4}", raw):
        hexdigits = raw.replace(".", "")
    else:
        hexdigits = raw
    if not _HEX.fullmatch(hexdigits):
        raise ValidationError(field, f"{value[:40]!r} is not a MAC address (expected e.g. 52:54:00:12:34:56)")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def normalize_uuid(value: str, field: str = "uuid") -> str:
    """The canonical form (lower case, hyphens) of a UUID given in it or in upper case;
    `urn:uuid:`, braces and bare hex digits are refused (PostgreSQL reads some of them
    differently, and a node id in a path has one spelling)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or not UUID_RE.fullmatch(text):
        raise ValidationError(field, f"{str(value)[:40]!r} is not a UUID"
                                     " (expected e.g. 4c4c4544-0042-3510-8052-b4c04f4e4b31)")
    return str(uuidlib.UUID(text))


def is_uuid(value: object) -> bool:
    """True for a UUID in its canonical spelling (any case)."""
    return isinstance(value, str) and UUID_RE.fullmatch(value.lower()) is not None


def check_hostname(value: str, field: str = "hostname") -> str:
    value = value.strip().lower().rstrip(".") if isinstance(value, str) else value
    if not isinstance(value, str) or not HOSTNAME_RE.fullmatch(value):
        raise ValidationError(field, "must be a DNS name: letters, digits, '-' and '.', at most 253 characters")
    return value


def check_name(value: str, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
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
        if not isinstance(key, str) or not LABEL_KEY_RE.fullmatch(key):
            raise ValidationError(f"{field}.{str(key)[:40]}", "label keys are letters, digits and . _ / -")
        if not isinstance(value, str) or not LABEL_VALUE_RE.fullmatch(value):
            raise ValidationError(
                f"{field}.{key}", "label values are at most 253 letters, digits, spaces and . _ : / + = @ -"
            )
    return labels


def check_serial(value: str, field: str = "serial") -> str:
    if not isinstance(value, str) or not SERIAL_RE.fullmatch(value):
        raise ValidationError(field, "serial numbers are at most 64 letters, digits, spaces and . _ -")
    return value


def ipxe_problem(value: str) -> str | None:
    """What iPXE would interpret in `value` if it were put on a command line as words, or None.

    A character outside printable text (control characters, line and paragraph separators,
    lone surrogates), `${` (settings expansion), or a word that ends the command (`||`,
    `&&`, `;`) or starts a comment (`#...`)."""
    if not value.replace(" ", "").isprintable():  # one C loop; the character, only when there is one
        char = next(c for c in value if c != " " and not c.isprintable())
        return f"must be printable text on one line (found {char!r})"
    if "${" in value:
        return "must not contain ${ (iPXE would expand it as a setting)"
    for word in value.split(" "):
        if word in IPXE_TERMINATORS:
            return f"must not contain the word {word!r} (iPXE would end the command there)"
        if word.startswith("#"):
            return f"no word may start with '#' (iPXE would drop the rest of the line as a comment): {word[:40]!r}"
    return None


def check_safe_text(value: str, field: str, max_length: int = 4096) -> str:
    """Text that goes into an iPXE command line as it is (kernel arguments): anything iPXE
    passes to the kernel verbatim, nothing it would interpret (see ipxe_problem)."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if len(value) > max_length:
        raise ValidationError(field, f"at most {max_length} characters")
    problem = ipxe_problem(value)
    if problem:
        raise ValidationError(field, problem)
    return value


def check_image_ref(value: str, field: str, max_length: int = 1024) -> str:
    """An image key or URL: one iPXE word (no spaces), not an option (`-...`)."""
    check_safe_text(value, field, max_length)
    if not value or " " in value:
        raise ValidationError(field, "must be one image key or URL, without spaces")
    if value.startswith("-"):
        raise ValidationError(field, "must not start with '-'")
    return value


def check_ip(value: str, field: str = "ip") -> str:
    """An IPv4 or IPv6 address in its canonical form; IPv6 scope ids (`fe80::1%eth0`) are refused."""
    if not isinstance(value, str) or "%" in value:
        raise ValidationError(field, f"{str(value)[:40]!r} is not an IP address (IPv6 scope ids are not allowed)")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValidationError(field, f"{value[:40]!r} is not an IP address") from None
