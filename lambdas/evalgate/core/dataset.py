"""Golden dataset loading and validation: knowledge base (Markdown), cases and suites (JSONL).

Every problem is reported as ``file:line: message``; loading collects all problems before raising, so a
user fixes a file in one pass.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from evalgate.core.errors import InputError, Problem, format_validation_error
from evalgate.core.inputs import JsonProblem, loads, read_text, suggest
from evalgate.core.models import Case, KnowledgeEntry

KB_HEADING = re.compile(r"^##\s+([a-z0-9][a-z0-9._-]*):\s*(.+?)\s*$")
SUITE_FILES = {
    "regression": "cases.jsonl",
    "guardrail": "suites/guardrail.jsonl",
    "injection": "suites/injection.jsonl",
}


@dataclass
class Golden:
    root: Path
    knowledge: dict[str, KnowledgeEntry]
    cases: list[Case]
    locations: dict[str, tuple[str, int]] = field(default_factory=dict)

    def suite(self, name: str) -> list[Case]:
        return [c for c in self.cases if c.suite == name]

    def knowledge_for(self, case: Case) -> list[KnowledgeEntry]:
        return [self.knowledge[k] for k in case.context if k in self.knowledge]

    @property
    def suites(self) -> list[str]:
        return sorted({c.suite for c in self.cases})

    def fingerprint(self, cases: Iterable[Case] | None = None) -> str:
        """SHA-256 of the cases (all, or those given) and the knowledge entries they cite, canonical JSON."""
        chosen = sorted(self.cases if cases is None else cases, key=lambda c: c.id)
        doc = {
            "cases": [c.model_dump(mode="json") for c in chosen],
            "knowledge": {k.id: k.text for c in chosen for k in self.knowledge_for(c)},
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


M = TypeVar("M", bound=BaseModel)


def parse_json_model(body: str, model: type[M], what: str, error: type[Exception] = ValueError) -> M:
    """A JSON object validated as ``model``; ``error`` names ``what`` and the first invalid fields."""
    try:
        data = loads(body)
    except JsonProblem as exc:
        raise error(f"{what}: {exc}") from None
    except TypeError as exc:
        raise error(f"{what} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{what} is invalid: " + "; ".join(format_validation_error(exc)[:5])) from None


def load_knowledge(folder: Path, display_root: Path | None = None) -> tuple[dict[str, KnowledgeEntry], list[Problem]]:
    """Parse ``## id: Title`` sections from every Markdown file in ``folder``."""
    entries: dict[str, KnowledgeEntry] = {}
    problems: list[Problem] = []
    files = sorted(folder.glob("*.md")) if folder.is_dir() else []
    if folder.exists() and not folder.is_dir():
        problems.append(Problem(_show(folder, display_root), None, "is a file; expected the knowledge folder"))
    elif not files:
        problems.append(Problem(_show(folder, display_root), None, "no knowledge files (*.md) found"))
    for path in files:
        shown = _show(path, display_root)
        sections: list[tuple[str, str, int, list[str]]] = []
        try:
            text = read_text(path, "knowledge file")
        except InputError as exc:
            problems.extend(Problem(shown, p.line, p.message) for p in exc.problems)
            continue
        for n, raw in enumerate(text.splitlines(), start=1):
            if raw.startswith("## "):
                m = KB_HEADING.match(raw)
                if m:
                    sections.append((m.group(1), m.group(2), n, []))
                else:
                    problems.append(
                        Problem(shown, n, "knowledge heading must look like '## some-id: Title' (lower-case id)")
                    )
                    sections.append(("", "", n, []))  # swallow the malformed section's body
            elif sections:
                sections[-1][3].append(raw)
        for kid, title, line, body in sections:
            text = "\n".join(body).strip()
            if not kid:
                continue
            if not text:
                problems.append(Problem(shown, line, f"knowledge entry '{kid}' has no text"))
            elif kid in entries:
                first = entries[kid]
                problems.append(
                    Problem(shown, line, f"duplicate knowledge id '{kid}' (first at {first.file}:{first.line})")
                )
            else:
                entries[kid] = KnowledgeEntry(id=kid, title=title, text=text, file=shown, line=line)
    return entries, problems


def iter_jsonl(path: Path, shown: str) -> Iterable[tuple[int, dict[str, object] | None, Problem | None]]:
    """Yield (line, record, problem) for each non-blank line (an unreadable file is one problem)."""
    try:
        text = read_text(path, "JSONL file")
    except InputError as exc:
        for p in exc.problems:
            yield p.line or 0, None, Problem(shown, p.line, p.message)
        return
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = loads(raw)
        except JsonProblem as exc:
            yield n, None, Problem(shown, n, str(exc))
            continue
        if not isinstance(rec, dict):
            yield n, None, Problem(shown, n, "each line must be a JSON object")
            continue
        yield n, rec, None


def iter_models(
    path: Path,
    shown: str,
    model: type[M],
    problems: list[Problem],
    label: Callable[[dict[str, object]], str] = lambda rec: "",
    defaults: Mapping[str, object] | None = None,
) -> Iterator[tuple[int, M]]:
    """Yield (line, record) for each JSONL record of ``path`` that validates as ``model`` (after ``defaults``);
    each unreadable or invalid one adds its problems, ``file:line: <label>field: message``, to ``problems``."""
    for n, rec, problem in iter_jsonl(path, shown):
        if problem is not None or rec is None:
            problems.append(problem or Problem(shown, n, "unreadable record"))
            continue
        for key, value in (defaults or {}).items():
            rec.setdefault(key, value)
        try:
            yield n, model.model_validate(rec)
        except ValidationError as exc:
            problems.extend(Problem(shown, n, f"{label(rec)}{m}") for m in format_validation_error(exc))


def load_cases(
    path: Path, suite: str, display_root: Path | None = None
) -> tuple[list[Case], dict[str, int], list[Problem]]:
    shown = _show(path, display_root)
    cases: list[Case] = []
    lines: dict[str, int] = {}
    problems: list[Problem] = []
    if path.is_dir():
        return cases, lines, [Problem(shown, None, "is a folder; expected a JSONL file of cases")]
    if not path.is_file():
        return cases, lines, [Problem(shown, None, "file not found")]
    for n, case in iter_models(path, shown, Case, problems, lambda r: f"case '{r.get('id', '?')}': ", {"suite": suite}):
        cases.append(case)
        lines[case.id] = n
    if not cases and not problems:
        problems.append(Problem(shown, None, "no cases in file"))
    return cases, lines, problems


def load_golden(root: Path, suites: Iterable[str] | None = None) -> Golden:
    """Load and cross-check the knowledge base and the requested suites (all by default)."""
    root = Path(root)
    display_root = None
    if not root.is_dir():
        what = "is a file; expected the golden dataset folder" if root.exists() else "golden dataset folder not found"
        raise InputError.single(str(root), None, what)
    knowledge, problems = load_knowledge(root / "knowledge", display_root)
    # By default the regression suite is required and the other suites are loaded when present.
    wanted = (
        list(suites)
        if suites is not None
        else [s for s in SUITE_FILES if s == "regression" or (root / SUITE_FILES[s]).exists()]
    )
    all_cases: list[Case] = []
    locations: dict[str, tuple[str, int]] = {}
    for suite in wanted:
        if suite not in SUITE_FILES:
            problems.append(Problem(str(root), None, f"unknown suite '{suite}'" + suggest(suite, SUITE_FILES)))
            continue
        path = root / SUITE_FILES[suite]
        shown = _show(path, display_root)
        cases, lines, probs = load_cases(path, suite, display_root)
        problems.extend(probs)
        for case in cases:
            line = lines[case.id]
            if case.id in locations:
                f, ln = locations[case.id]
                problems.append(Problem(shown, line, f"duplicate case id '{case.id}' (first at {f}:{ln})"))
                continue
            locations[case.id] = (shown, line)
            for ref in case.context:
                if ref not in knowledge:
                    problems.append(Problem(shown, line, f"case '{case.id}': unknown knowledge id '{ref}' in context"))
            if (
                case.expected.value == "answer"
                and not case.context
                and "out_of_scope" not in case.tags
                and suite == "regression"
            ):
                problems.append(
                    Problem(shown, line, f"case '{case.id}': an 'answer' case must cite its knowledge in context")
                )
            all_cases.append(case)
    if problems:
        raise InputError(problems)
    return Golden(root=root, knowledge=knowledge, cases=all_cases, locations=locations)


def _show(path: Path, root: Path | None = None) -> str:
    """A path as the user would type it: relative to ``root`` (or the working directory) when inside it."""
    base = (root or Path.cwd()).resolve()
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)
