"""Stand-in judges of known quality, for calibration tests (in-process and behind the loopback Bedrock fake).

- ``agreeing``: knows the human labels of the calibration sets and agrees with them, except on a fixed ~8% of
  answers (chosen by hash) where it disagrees: a good but imperfect judge.
- ``coin_flip``: ignores the answer's truth; its score depends only on a hash of the answer text.

Both read the question and the candidate answer out of evalgate's fenced judge prompt, as a real model would.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evalgate.core.dataset import load_knowledge
from evalgate.core.ports import JudgeCall, ToolSpec
from evalgate.engine.judge_calibration import labelled_items

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "data"
LABELS = ROOT / "golden" / "judge_labels.jsonl"
_FENCE = re.compile(r'<(DATA-[0-9a-f]+) kind="(\w+)">\n(.*?)\n</\1>', re.DOTALL)


def fenced(prompt: str) -> dict[str, str]:
    return {kind: text for _, kind, text in _FENCE.findall(prompt)}


def _unit(text: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}\x00{text}".encode()).hexdigest()[:12], 16) / 16**12


def truth_table(limit: int | None = None) -> dict[tuple[str, str], int]:
    """(question, answer) -> 1 when people labelled the answer unfaithful, over every calibration set."""
    knowledge, _ = load_knowledge(ROOT / "golden" / "knowledge")
    data = labelled_items(BENCH, LABELS, knowledge, limit)
    return {(it.question, it.answer): it.unfaithful for it in data.items}


def verdict(score: float) -> dict[str, Any]:
    return {
        "score": score,
        "verdict": "pass" if score >= 0.85 else "fail",
        "reasons": "stand-in judge",
        "unsupported_claims": [] if score >= 0.85 else ["a claim the knowledge does not support"],
    }


def agreeing(truth: dict[tuple[str, str], int], disagree: float = 0.08) -> Callable[[str], dict[str, Any]]:
    def grade(prompt: str) -> dict[str, Any]:
        f = fenced(prompt)
        q, a = f.get("question", ""), f.get("candidate_answer", "")
        bad = truth.get((q, a), 0)
        if _unit(a, "disagree") < disagree:
            bad = 1 - bad
        return verdict(0.2 + 0.1 * _unit(a, "jitter") if bad else 0.9 + 0.1 * _unit(a, "jitter"))

    return grade


def coin_flip(prompt: str) -> dict[str, Any]:
    a = fenced(prompt).get("candidate_answer", "")
    return verdict(0.2 if _unit(a, "coin") < 0.5 else 0.95)


class StandInJudgeModel:
    """A JudgeModel answering with ``grade(user prompt)``; ``model_id`` names which stand-in it is."""

    def __init__(self, model_id: str, grade: Callable[[str], dict[str, Any]]) -> None:
        self.model_id = model_id
        self.grade = grade
        self.calls = 0

    def call(self, system: str, user: str, tool: ToolSpec) -> JudgeCall:
        self.calls += 1
        return JudgeCall(tool_input=self.grade(user), input_tokens=600, output_tokens=40)


def calibrate_through_cli(folder: Path, model_ids: list[str], grade: Callable[[str], dict[str, Any]]) -> int:
    """Run ``evalgate calibrate --metric judge`` for each model against the loopback Bedrock fake, whose judge
    answers with ``grade``: the same command a person or the pipeline runs, writing real records into ``folder``."""
    import os
    from unittest import mock

    from evalgate.cli import main
    from tests.fakes.bedrock_fake import BedrockFake

    code = 0
    with BedrockFake(judge_fn=lambda req: grade(req.user_text)) as fake:
        env = {
            **fake.env(),
            "AWS_CONFIG_FILE": str(folder / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(folder / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with mock.patch.dict(os.environ, env):
            for model_id in model_ids:
                args = ["calibrate", "--metric", "judge", "--judge-model", model_id, "--records", str(folder)]
                code = max(code, main([*args, "--golden", str(ROOT / "golden"), "--limit", "100", "--no-cache"]))
    return code
