"""Benchmark: tokens and dollars of `--tier auto` against running everything heavy, on the demo data, with the
verdict of each change compared. Run: `.venv/bin/python bench/bench_tiers.py` (about 2-4 minutes).

A synthetic git history of twelve changes (docs, code, a prompt change that regresses and its revert, golden
data, a code bug and its fix, a pricing tweak, a threshold change, a release tag) is built in a temporary
repository holding a copy of golden/ and prompts/. Each change is evaluated by the real CLI, in three ways:

- auto        `evalgate run --tier auto` (skip / smoke + cheap judge with borderline escalation / full / release)
- heavy       `evalgate run --tier release` on every change: every case, heavy judge, 3 repeats
- heavy-1     the same with one repeat (a less generous reference: every case, heavy judge)

Each mode keeps its own approved baseline (a change is approved when its verdict is PASS), as the pipeline
does. The candidate is Bedrock Converse against the loopback fake, answering with the demo's recorded answers
(the approved baseline set, or the regressed set for the changes that break things), so generation tokens are
counted; the judge is simulated by the fake (claim checking against the cited knowledge, with more noise for
the cheap judge than for the heavy one). Similarity uses the local MiniLM model (free, like the offline tier).
No cache, so every run pays in full.

Printed: per change, the tier auto chose, each mode's verdict and tokens; totals; the saving
(1 - auto / heavy, in tokens and in dollars); and how many verdicts agree. Written to bench/results/tiers.json.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

from evalgate.adapters import local  # noqa: E402
from evalgate.cli import main as evalgate  # noqa: E402
from evalgate.core.metrics import ungrounded_numbers  # noqa: E402
from tests.fakes.bedrock_fake import BedrockFake, FakeRequest, section  # noqa: E402

CHEAP = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@example.com",
        "HOME": str(repo),
    }
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def load_answers(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / "golden" / "responses" / f"{name}.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("repeat", 0) == 0:
                out[rec["id"]] = rec["output"]
    return out


class Simulation:
    """The fake's behaviour: answers from a recorded set; a judge that checks numbers against the knowledge."""

    def __init__(self, golden_root: Path) -> None:
        from evalgate.core.dataset import load_golden

        golden = load_golden(golden_root)
        self.questions = sorted(((c.question, c.id) for c in golden.cases), key=lambda t: -len(t[0]))
        self.sets = {"baseline": load_answers("baseline"), "regressed": load_answers("regressed")}
        self.current = "baseline"

    def answer(self, req: FakeRequest) -> str:
        text = req.user_text
        for q, cid in self.questions:
            if q in text:
                return self.sets[self.current][cid]
        raise AssertionError("prompt not in the golden set")

    def judge(self, req: FakeRequest) -> dict[str, Any]:
        text = req.user_text
        answer = section(text, "answer") or ""
        knowledge = section(text, "knowledge") or ""
        question = section(text, "question") or ""
        spread = 0.06 if req.model_id == CHEAP else 0.015
        h = int(hashlib.sha256(f"{req.model_id}|{text}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        noise = (2 * h - 1) * spread
        if "Rubric (faithfulness" in text:
            bad = ungrounded_numbers(answer, [knowledge, question])
            score = (0.45 if bad else 0.94) + noise
            claims = [f"number {n} is not in the excerpts" for n in bad]
        else:
            score, claims = 0.95 + noise, []
        score = round(min(1.0, max(0.0, score)), 3)
        return {
            "score": score,
            "verdict": "pass" if score >= 0.85 else "fail",
            "reasons": "simulated judge",
            "unsupported_claims": claims,
        }


def share_local_model() -> None:
    """One MiniLM model for every run of this process (loading it per run is not what is measured)."""
    cache: dict[str, Any] = {}
    original = local.LocalEmbedder._load

    def load(self: local.LocalEmbedder) -> Any:
        if "m" not in cache:
            cache["m"] = original(self)
        self._session, self._tokenizer = cache["m"]
        return cache["m"]

    local.LocalEmbedder._load = load  # type: ignore[method-assign]


def history() -> list[tuple[str, str, Callable[[Path], None]]]:
    """(label, response set the candidate answers with, change to make) in commit order."""

    def edit(path: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
        def go(repo: Path) -> None:
            p = repo / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(fn(p.read_text() if p.exists() else ""))

        return go

    prompt = "prompts/support/v1/system.md"
    return [
        ("docs: README", "baseline", edit("README.md", lambda s: s + "\nUsage notes.\n")),
        ("code: refactor", "baseline", edit("app/handler.py", lambda s: s + "def helper():\n    return 1\n")),
        ("prompt change (regresses)", "regressed", edit(prompt, lambda s: s + "\nBe generous with refunds.\n")),
        ("revert the prompt", "baseline", edit(prompt, lambda s: s.replace("\nBe generous with refunds.\n", ""))),
        ("golden: notes", "baseline", edit("golden/README.md", lambda s: s + "\nReviewed.\n")),
        ("code: bug (regresses)", "regressed", edit("app/handler.py", lambda s: s + "BUG = True\n")),
        ("code: fix", "baseline", edit("app/handler.py", lambda s: s.replace("BUG = True\n", ""))),
        (
            "gate.toml pricing",
            "baseline",
            edit("golden/gate.toml", lambda s: s.replace("input_per_1k = 0.0008", "input_per_1k = 0.0008  # checked")),
        ),
        (
            "threshold: relevance",
            "baseline",
            edit("golden/gate.toml", lambda s: s.replace("relevance = 0.90", "relevance = 0.89")),
        ),
        ("docs: guide", "baseline", edit("docs/guide.md", lambda s: s + "More.\n")),
        ("code: logging", "baseline", edit("app/handler.py", lambda s: s + "LOG = 1\n")),
        ("release tag v1.0.0", "baseline", lambda repo: None),
    ]


def run_mode(mode: str, repo: Path, out: Path, baseline: Path | None) -> dict[str, Any]:
    args = [
        "run",
        "--candidate",
        "bedrock",
        "--golden",
        str(repo / "golden"),
        "--repo",
        str(repo),
        "--embedder",
        "local",
        "--no-cache",
        "--no-progress",
        "--out",
        str(out),
    ]
    if mode == "auto":
        args += ["--tier", "auto"]
    elif mode == "heavy":
        args += ["--tier", "release"]
    else:
        args += ["--tier", "release", "--repeats", "1"]
    if baseline is not None:
        args += ["--baseline", str(baseline)]
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        code = evalgate(args)
    data = json.loads((out / "results.json").read_text())
    u = data["usage"]
    decided = re.search(r"tier auto → (\w+)", buf.getvalue())
    return {
        "exit": code,
        "verdict": data["verdict"]["verdict"],
        "tier": decided.group(1) if decided else data["tier"],
        "tokens": u["input_tokens"] + u["output_tokens"],
        "usd": u["cost_usd"],
        "escalated": len((data.get("escalation") or {}).get("cases") or []),
        "cases": len(data["cases"]) if not data.get("skipped") else 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tiers.json")
    args = ap.parse_args()
    if shutil.which("git") is None:
        print("bench_tiers: needs git", file=sys.stderr)
        return 2
    share_local_model()
    t0 = time.perf_counter()
    modes = ("auto", "heavy", "heavy-1")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, BedrockFake() as fake, fake.patched_env():
        for var in ("AWS_PROFILE", "EVALGATE_BASE_COMMIT", "CODEBUILD_RESOLVED_SOURCE_VERSION", "SOURCE_BRANCH"):
            os.environ.pop(var, None)
        repo = Path(tmp) / "repo"
        shutil.copytree(ROOT / "golden", repo / "golden")
        shutil.copytree(ROOT / "prompts", repo / "prompts")
        (repo / "README.md").write_text("# demo service\n")
        (repo / "app").mkdir()
        (repo / "app" / "handler.py").write_text("def handler(event, context):\n    return {}\n")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "approved start")
        sim = Simulation(repo / "golden")
        fake.answer_fn, fake.judge_fn = sim.answer, sim.judge
        approved: dict[str, Path | None] = {}
        for mode in modes:  # the approved starting point of each mode (not counted)
            out = Path(tmp) / f"start-{mode}"
            res = run_mode("heavy-1" if mode == "auto" else mode, repo, out, None)
            approved[mode] = out / "results.json" if res["verdict"] == "PASS" else None
            assert res["verdict"] == "PASS", f"the approved start must pass ({mode}: {res})"
        for i, (label, answers, change) in enumerate(history(), start=1):
            change(repo)
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "--allow-empty", "-m", label)
            if label.startswith("release tag"):
                git(repo, "tag", "v1.0.0")
            sim.current = answers
            row: dict[str, Any] = {"change": label, "answers": answers}
            for mode in modes:
                out = Path(tmp) / f"c{i:02d}-{mode}"
                res = run_mode(mode, repo, out, approved[mode])
                row[mode] = res
                if res["verdict"] == "PASS":
                    approved[mode] = out / "results.json"
            rows.append(row)
            print(
                f"{i:2d} {label:28s} auto={row['auto']['tier']:<7s} {row['auto']['verdict']:<6s} "
                f"{row['auto']['tokens']:>8,d} tok | heavy {row['heavy']['verdict']:<6s} "
                f"{row['heavy']['tokens']:>8,d} tok | heavy-1 {row['heavy-1']['verdict']:<6s} "
                f"{row['heavy-1']['tokens']:>8,d} tok",
                flush=True,
            )
    totals = {
        m: {"tokens": sum(r[m]["tokens"] for r in rows), "usd": round(sum(r[m]["usd"] for r in rows), 4)} for m in modes
    }
    same = sum(r["auto"]["verdict"] == r["heavy"]["verdict"] for r in rows)
    same1 = sum(r["auto"]["verdict"] == r["heavy-1"]["verdict"] for r in rows)
    summary = {
        "changes": len(rows),
        "totals": totals,
        "token_saving_vs_heavy": round(1 - totals["auto"]["tokens"] / totals["heavy"]["tokens"], 3),
        "usd_saving_vs_heavy": round(1 - totals["auto"]["usd"] / totals["heavy"]["usd"], 3),
        "token_saving_vs_heavy_1_repeat": round(1 - totals["auto"]["tokens"] / totals["heavy-1"]["tokens"], 3),
        "usd_saving_vs_heavy_1_repeat": round(1 - totals["auto"]["usd"] / totals["heavy-1"]["usd"], 3),
        "same_verdict_as_heavy": f"{same}/{len(rows)}",
        "same_verdict_as_heavy_1_repeat": f"{same1}/{len(rows)}",
        "tiers_chosen": {t: sum(r["auto"]["tier"] == t for r in rows) for t in ("skip", "smoke", "full", "release")},
        "borderline_cases_escalated": sum(r["auto"]["escalated"] for r in rows),
        "target_saving": 0.40,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "changes": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
