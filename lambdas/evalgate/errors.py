"""Error types. Every bad input names its file and line (or field) so a user can fix it."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    """A model, endpoint or function call failed after retries (the case becomes unscored or errored)."""


class ThrottledError(ProviderError):
    """The provider refused for capacity; callers back off and retry."""


class BudgetExceeded(Exception):
    """A cost cap would be exceeded by the next call; the run stops with ERROR."""
