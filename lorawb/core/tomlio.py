"""TOML in and out: comment-preserving (tomlkit), errors with file and line.

Validation is done by pydantic models elsewhere; this module turns both TOML
syntax errors and pydantic errors into ConfigError messages that name the
file, the line and the dotted key, and say what is expected.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import BaseModel, ValidationError
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.toml_document import TOMLDocument

from lorawb.core.fsutil import atomic_write_text, read_text
from lorawb.errors import ConfigError

SYNTAX_HINT = "fix the syntax; strings need quotes, tables look like [section], lists like [1, 2]"


def parse_text(text: str, *, path: Path | None = None) -> TOMLDocument:
    """Parse TOML text; a syntax error is a ConfigError naming the file, the line and what is wrong.

    The message is lorawb's own where it can be (a key written twice names the key and both
    lines); otherwise it carries the parser's detail after "invalid TOML:".
    """
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        repeated = _repeated_key(text)
        if repeated is not None:
            key, table, first, second = repeated
            where = f"[{table}]" if table else "the top level"
            raise ConfigError(
                f'invalid TOML: key "{key}" appears twice in {where} (first on line {first})',
                path=path,
                line=second,
                hint="a key may appear only once per table; remove or rename one of them",
            ) from exc
        line = getattr(exc, "line", None)
        detail = str(exc).split(" at line")[0].strip()
        col = getattr(exc, "col", None)
        where = f" (column {col})" if line is not None and col is not None else ""
        raise ConfigError(f"invalid TOML: {detail}{where}", path=path, line=line, hint=SYNTAX_HINT) from exc


def load_document(path: Path) -> tuple[TOMLDocument, str]:
    """Parse a TOML file (any encoding); returns the tomlkit document and its text."""
    tf = read_text(path)
    return parse_text(tf.text, path=path), tf.text


def _repeated_key(text: str) -> tuple[str, str, int, int] | None:
    """The first key written twice in one table: (key, table, first line, second line)."""
    key_re = re.compile(r'^\s*("?)([A-Za-z0-9_\-]+)\1\s*=')
    seen: dict[tuple[str, str], int] = {}
    table = ""
    for i, raw in enumerate(text.splitlines(), 1):
        header = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?", raw)
        if header:
            table = header.group(1).strip()
            continue
        m = key_re.match(raw)
        if m:
            first = seen.setdefault((table, m.group(2)), i)
            if first != i:
                return m.group(2), table, first, i
    return None


def save_document(path: Path, doc: TOMLDocument) -> None:
    atomic_write_text(path, tomlkit.dumps(doc))


def find_key_line(text: str, dotted: str) -> int | None:
    """Best-effort line number of ``a.b.c`` in TOML text (table headers + key lines)."""
    parts = dotted.split(".")
    lines = text.splitlines()
    table: list[str] = []
    best: int | None = None
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        m = re.match(r"^\[\[?\s*([^\]]+?)\s*\]\]?", line)
        if m:
            table = [p.strip().strip('"') for p in m.group(1).split(".")]
            if table == parts[: len(table)] and best is None and len(table) == len(parts):
                best = i
            continue
        m = re.match(r'^("?)([A-Za-z0-9_\-. ]+?)\1\s*=', line)
        if m:
            key = table + [p.strip().strip('"') for p in m.group(2).split(".")]
            if key == parts:
                return i
            if key == parts[: len(key)] and best is None:
                best = i
    if best is None and len(parts) > 1:
        return find_key_line(text, ".".join(parts[:-1]))
    return best


# lorawb's own words for the common kinds of pydantic error, keyed by pydantic's stable error
# ``type`` (never by its message, which changes between releases); the rest fall back to its message.
_KIND_WORDS: dict[str, str] = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "must be a whole number of a usable size (this one is far too large)",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number (not inf or nan)",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string (in quotes)",
    "list_type": 'must be a list, e.g. ["a", "b"]',
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "must have at most {max_length} character(s)",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
}


def _describe_error(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    words = _KIND_WORDS.get(kind)
    if words is not None:
        try:
            return words.format(**(err.get("ctx") or {}))
        except (KeyError, IndexError):
            pass
    msg = str(err.get("msg", "invalid value"))
    # pydantic prefixes our own validators' messages; the key name already says where.
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def validate(model: type[BaseModel], data: Any, *, path: Path | None, text: str = "", prefix: str = "") -> Any:
    """Validate ``data`` against a pydantic model; ConfigError names the first bad key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        dotted = _dotted(model, first["loc"])
        if prefix:
            dotted = f"{prefix}.{dotted}" if dotted else prefix
        value = first.get("input")
        detail = _describe_error(first)
        shown = "" if first.get("type") in ("missing", "extra_forbidden") else f" (got {value!r})"
        if dotted and detail.startswith(dotted + ".") and ": " in detail:  # a table's check naming the key inside
            dotted, detail = detail.split(": ", 1)
            shown = ""
        line = find_key_line(text, dotted) if text else None
        others = [_dotted(model, e["loc"]) for e in errors[1:]]
        if prefix:
            others = [f"{prefix}.{o}" if o else prefix for o in others]
        others = [o for o in dict.fromkeys(others) if o != dotted]  # a union's other branches: the same key
        more = ""
        if others:
            shown_others = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            more = f"; also check {shown_others}"
        hint = None
        if first.get("type") == "extra_forbidden":
            fields = _fields_at(model, [p for p in first["loc"][:-1] if not isinstance(p, int)])
            if fields:
                hint = "known keys here: " + ", ".join(sorted(fields))
        raise ConfigError(f"{dotted}: {detail}{shown}{more}", path=path, line=line, hint=hint) from exc


def _dotted(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The dotted key of an error's location: list indices and the branch names pydantic adds
    for a union (``flux.shift.float`` -> ``flux.shift``) are not part of it; table keys are."""
    parts: list[str] = []
    cur: Any = model
    skip_branch = False
    for part in loc:
        cur = _unwrap(cur)
        if skip_branch:  # the union branch pydantic tried: not a key
            skip_branch, cur = False, None
            continue
        if isinstance(part, int):
            continue
        parts.append(str(part))
        fields = getattr(cur, "model_fields", None)
        if fields is not None:
            field = fields.get(part)
            cur = field.annotation if field is not None else None
        elif typing.get_origin(cur) is dict:
            cur = typing.get_args(cur)[1] if typing.get_args(cur) else None
        else:
            cur = None
        cur = _unwrap(cur)
        skip_branch = _is_union(cur)
    return ".".join(parts)


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> X; a list's item type for the index that follows."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list and typing.get_args(annotation):
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    cur: Any = model
    for part in loc:
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            return []
        cur = field.annotation
    return list(getattr(cur, "model_fields", {}).keys())


def to_plain(obj: Any) -> Any:
    """tomlkit containers -> plain dicts/lists (for validation and JSON)."""
    if hasattr(obj, "unwrap"):
        return obj.unwrap()
    return obj


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` in nested dicts, creating tables as needed."""
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def parse_override(spec: str) -> tuple[str, Any]:
    """``--set a.b=VALUE``: VALUE is parsed as a TOML value, else taken as a string."""
    if "=" not in spec:
        raise ConfigError(f"--set {spec!r}: expected KEY=VALUE, e.g. train.max_steps=500")
    key, raw = spec.split("=", 1)
    key = key.strip()
    try:
        value = tomlkit.parse(f"v = {raw}")["v"]
        value = to_plain(value)
    except ParseError:
        value = raw
    return key, value
