"""Replay candidate: evaluate recorded responses (JSONL from a previous run, shadow logs, or results.json)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evalgate.core.dataset import iter_models
from evalgate.core.errors import InputError, Problem, format_validation_error
from evalgate.core.inputs import decode, parse_json, read_bytes
from evalgate.core.models import MAX_ANSWER_CHARS, Case, Generation, KnowledgeEntry


class RecordedResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    repeat: int = Field(default=0, ge=0)
    output: Annotated[str, Field(max_length=MAX_ANSWER_CHARS)]
    latency_ms: float | None = Field(default=None, ge=0)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    model_id: str | None = None
    prompt_version: str | None = None


class ReplayCandidate:
    """Answers come from a file. Recorded latency is history, so generations are marked as not measured now."""

    live = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = f"replay:{self.path}"
        self.responses: dict[tuple[str, int], RecordedResponse] = {}
        raw = read_bytes(self.path, "recorded responses file")
        self.sha256 = hashlib.sha256(raw).hexdigest()
        if self.path.suffix == ".json":
            self._load_results_json(raw)
        else:
            self._load_jsonl()

    @classmethod
    def from_result(cls, run: Any) -> ReplayCandidate:
        """The stored answers of a run record (a ``RunResult``), e.g. an approved baseline to re-score."""
        obj = cls.__new__(cls)
        raw = run.model_dump_json().encode()
        obj.path = Path(f"results-{run.run_id}.json")
        obj.name = f"stored answers of run {run.run_id}"
        obj.responses = {}
        obj.sha256 = hashlib.sha256(raw).hexdigest()
        obj._load_results_json(raw)
        return obj

    def _load_jsonl(self) -> None:
        problems: list[Problem] = []
        for n, r in iter_models(self.path, str(self.path), RecordedResponse, problems):
            if (r.id, r.repeat) in self.responses:
                problems.append(Problem(str(self.path), n, f"duplicate response for case '{r.id}' repeat {r.repeat}"))
                continue
            self.responses[(r.id, r.repeat)] = r
        if problems:
            raise InputError(problems)
        if not self.responses:
            raise InputError.single(str(self.path), None, "no recorded responses in file")

    def _load_results_json(self, raw: bytes) -> None:
        name = str(self.path)
        data = parse_json(decode(raw, name), name)
        cases = data.get("cases") if isinstance(data, dict) else None
        if not isinstance(cases, list):
            raise InputError.single(name, None, "not a results.json (expected an object with a 'cases' list)")
        problems: list[Problem] = []
        for i, case in enumerate(cases):
            gens = case.get("generations") if isinstance(case, dict) else None
            if not isinstance(gens, list):
                problems.append(Problem(name, None, f"cases[{i}]: expected an object with 'id' and 'generations'"))
                continue
            for j, g in enumerate(gens):
                if not isinstance(g, dict):
                    problems.append(Problem(name, None, f"cases[{i}].generations[{j}]: expected an object"))
                    continue
                if g.get("output") is None:
                    continue
                try:
                    r = RecordedResponse.model_validate({"repeat": 0, **g, "id": case.get("id")})
                except ValidationError as exc:
                    problems.extend(
                        Problem(name, None, f"cases[{i}].generations[{j}].{m}") for m in format_validation_error(exc)
                    )
                    continue
                self.responses[(r.id, r.repeat)] = r
        if problems:
            raise InputError(problems[:20])
        if not self.responses:
            raise InputError.single(str(self.path), None, "results.json holds no recorded outputs")

    def identity(self) -> dict[str, Any]:
        return {"kind": "replay", "file_sha256": self.sha256}

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        r = self.responses.get((case.id, repeat)) or (self.responses.get((case.id, 0)) if repeat else None)
        if r is None:
            return Generation(
                case_id=case.id, repeat=repeat, error=f"no recorded response for case '{case.id}' in {self.path}"
            )
        return Generation(
            case_id=case.id,
            repeat=repeat,
            output=r.output,
            latency_ms=r.latency_ms,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            model_id=r.model_id,
            prompt_version=r.prompt_version,
            cached=True,
        )
