"""A tiny golden dataset and in-process fakes for unit tests of the core (no network, no model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.core.ports import JudgeCall, ToolSpec

KB = """# Returns

## returns.window: Return window
Items can be returned within 30 days of delivery for a full refund.

## returns.final-sale: Final sale
Items marked final sale cannot be returned.
"""


def write_golden(root: Path, cases: list[dict[str, Any]], gate: str | None = None) -> Path:
    (root / "knowledge").mkdir(parents=True, exist_ok=True)
    (root / "suites").mkdir(exist_ok=True)
    (root / "knowledge" / "returns.md").write_text(KB)
    (root / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    if gate is not None:
        (root / "gate.toml").write_text(gate)
    return root


def case_dict(i: int, **kw: Any) -> dict[str, Any]:
    base = {
        "id": f"c-{i:03d}",
        "category": "returns",
        "prompt": f"How long do I have to return item {i}?",
        "reference": "You can return items within 30 days of delivery for a full refund.",
        "context": ["returns.window"],
        "expected": "answer",
        "tags": [],
    }
    base.update(kw)
    return base


class DictCandidate:
    """Answers from a dict of case id -> text (or an exception to raise)."""

    live = True

    def __init__(self, answers: dict[str, Any], name: str = "dict") -> None:
        self.answers = answers
        self.name = name
        self.calls = 0

    def identity(self) -> dict[str, Any]:
        return {"kind": "dict", "name": self.name}

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        self.calls += 1
        a = self.answers[case.id]
        if isinstance(a, Exception):
            raise a
        return Generation(
            case_id=case.id,
            repeat=repeat,
            output=a,
            latency_ms=100.0 + repeat,
            input_tokens=50,
            output_tokens=20,
            model_id="us.anthropic.claude-sonnet-4-20250514-v1:0",
        )


class ScriptedJudgeModel:
    """A JudgeModel whose replies are produced by a function of (user prompt) or taken from a queue."""

    model_id = "test-judge"

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls = 0

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        self.calls += 1
        r = self.reply(user) if callable(self.reply) else self.reply.pop(0)
        if isinstance(r, Exception):
            raise r
        return r if isinstance(r, JudgeCall) else JudgeCall(tool_input=r, input_tokens=100, output_tokens=30)


class HashEmbedder:
    """Deterministic bag-of-words embeddings (unit length) so similar texts are close."""

    name = "hash"
    model_id = "hash-bow-64"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        import hashlib
        import math
        import re

        self.calls += 1
        out = []
        for t in texts:
            v = [0.0] * 64
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                v[int(hashlib.md5(w.encode()).hexdigest(), 16) % 64] += 1.0
            n = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / n for x in v])
        return out
