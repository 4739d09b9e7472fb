"""Error types. Every bad input names its file and line (or field) so a user can fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the error types stay importable without pydantic
    from pydantic import ValidationError


@dataclass
class Problem:
    """One problem found in an input file."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


@dataclass
class InputError(Exception):
    """Raised when datasets, config or other inputs are invalid. The CLI maps it to exit code 2."""

    problems: list[Problem] = field(default_factory=list)

    @classmethod
    def single(cls, file: str, line: int | None, message: str) -> InputError:
        return cls([Problem(file, line, message)])

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class ProviderError(Exception):
    """A model, endpoint or function call failed (the case becomes unscored or errored).

    ``retry_after``: seconds the service asked us to wait (``Retry-After``), when it said so.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ThrottledError(ProviderError):
    """The provider refused for capacity: the retry policy backs off, retries and lowers concurrency."""


class TransientError(ProviderError):
    """A failure worth retrying that is not about capacity (5xx, model timeout, dropped connection)."""


class BudgetExceeded(Exception):
    """A cost cap would be exceeded by the next call; the run stops with ERROR."""


def format_validation_error(exc: ValidationError, root: str = "(record)", prefix: str = "") -> list[str]:
    """pydantic's errors as short ``field: message`` lines, the one way every input names its bad fields.

    ``prefix`` leads each field path (``variants.default.a.``); an error on the whole value is named ``root``
    (or, with ``root=""``, given as its message alone)."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or root)
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}" if where else msg)
    return out


def clip(text: object, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis marks a cut): for messages and notes."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
