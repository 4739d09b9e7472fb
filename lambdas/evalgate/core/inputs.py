"""One way in for every file the CLI reads or writes: each failure becomes an ``InputError`` naming the file
(and line, where there is one) or the flag, never a traceback.

- ``read_text``: path kind (missing, a folder, a parent that is a file, unreadable), encoding (UTF-8 only; a
  UTF-8 byte-order mark is dropped, a UTF-16/32 one is named), with the line and column of a bad byte.
- ``parse_json``: syntax errors with line and column, nesting too deep for the parser, values too large.
- ``output_dir`` / ``output_file``: checked before any work starts, so a run is not lost at the end.
- ``suggest``: the closest valid name for a misspelt key ("did you mean ...").
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}
MAX_INPUT_BYTES = 256 * 1024 * 1024  # any single input file; a golden set or results.json is far smaller
# Nesting deeper than this is refused before the parser sees it (Python's json recurses once per level).
MAX_JSON_DEPTH = 200
DEPTH_SCAN_BYTES = 1024 * 1024
_JSON_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def read_bytes(path: Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The file's bytes, or an InputError naming the file and what is wrong with the path."""
    path = Path(path)
    name = str(path)
    try:
        if path.is_dir():
            raise InputError.single(name, None, f"is a folder; expected a {what}")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError.single(name, None, f"{what} is {size} bytes; the limit is {max_bytes} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError.single(name, None, f"{what} not found") from None
    except NotADirectoryError:
        raise InputError.single(name, None, f"{what} not found: a folder in this path is a file") from None
    except PermissionError:
        raise InputError.single(name, None, f"permission denied reading the {what}") from None
    except OSError as exc:
        raise InputError.single(name, None, f"cannot read the {what}: {exc.strerror or exc}") from None


def decode(raw: bytes, name: str) -> str:
    """UTF-8 text (a UTF-8 byte-order mark is dropped); anything else names the line and column of the bad byte."""
    for bom, enc in OTHER_BOMS.items():
        if raw.startswith(bom):
            raise InputError.single(name, 1, f"file is {enc} (byte-order mark); save it as UTF-8")
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM) :]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = raw[exc.start : exc.start + 1].hex()
        raise InputError.single(
            name, line, f"not valid UTF-8 (byte 0x{byte} at column {col}); save it as UTF-8"
        ) from None


def read_text(path: Path, what: str = "file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    return decode(read_bytes(path, what, max_bytes), str(path))


def json_depth_exceeds(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when brackets nest deeper than ``limit`` (quoted strings are skipped, so their brackets don't count)."""
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if s.count("[") + s.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", s))
    return max(itertools.accumulate(1 if c in "[{" else -1 for c in brackets), default=0) > limit


class JsonProblem(ValueError):
    """Why a JSON text could not be parsed, with its line (1-based, None when unknown)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def loads(text: str | bytes) -> Any:
    """``json.loads`` whose every failure is a ``JsonProblem`` (syntax, nesting depth, huge numbers). Texts up to
    ``DEPTH_SCAN_BYTES`` (request bodies, JSONL lines) are refused above ``MAX_JSON_DEPTH`` levels before parsing;
    larger documents (a results.json) only when the parser itself runs out of recursion."""
    if len(text) <= DEPTH_SCAN_BYTES and json_depth_exceeds(text):
        raise JsonProblem(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JsonProblem(f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise JsonProblem("JSON nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise JsonProblem(f"not valid UTF-8: {exc.reason}") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise JsonProblem(f"not valid JSON: {exc}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, name: str, line: int | None = None) -> Any:
    """``loads`` with the error as an InputError at ``name:line``."""
    try:
        return loads(text)
    except JsonProblem as exc:
        at = line if line is not None else exc.line
        raise InputError.single(name, at, str(exc)) from None


def output_dir(path: Path, flag: str) -> Path:
    """Check, before any work, that the report folder can be created or written (nothing is created yet, so an
    input error leaves no half-written output): a file in its place or in its path is an error naming ``flag``."""
    path = Path(path)
    where = f"{flag} {path}"
    if path.exists() and not path.is_dir():
        raise InputError.single(where, None, "exists and is a file; expected a folder")
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError.single(where, None, f"'{probe}' in this path is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError.single(where, None, f"permission denied: cannot write in '{probe}'")
    return path


def output_file(path: Path, flag: str) -> Path:
    """A file the run will write: a folder in its place, or a file in its path, is an error naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise InputError.single(f"{flag} {path}", None, "is a folder; expected a file")
    output_dir(path.parent, flag)
    return path


def suggest(name: str, valid: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, or a list of the valid names when none is close."""
    options = sorted(set(valid))
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    if options and len(options) <= 12:
        return f" (valid: {', '.join(options)})"
    return ""


def write_lines_atomic(path: Path, lines: Iterable[str]) -> None:
    """Write all lines or nothing: a temporary file beside ``path``, then an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line.rstrip("\n") + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
