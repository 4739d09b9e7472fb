"""``--tier auto``: decide how much to evaluate from what changed since the last approved commit.

``git diff --name-only --no-renames <approved>..HEAD`` (plus uncommitted and untracked files when the
working tree is evaluated) is classified file by file, first match wins:

=============  ===================================================================================  ==========
category       which files                                                                          effect
=============  ===================================================================================  ==========
thresholds     the gate config (``golden/gate.toml``) when a section in ``[tiers] gate_sections``    full
               changed (thresholds, suites, models, gate, embedders, guardrail); other sections
               (pricing, load, tiers...) count as code
judge          ``[tiers] judge`` globs (the judge's prompt and rubrics) or a ``[tiers] judge_keys``  full +
               model setting (gate config ``[models] judge``/``heavy_judge``, cdk.json judge ids)    recalibrate
prompts        ``[tiers] prompts`` globs (``prompts/**``)                                            full
golden         ``[tiers] golden`` globs (``golden/**``: cases, suites, knowledge base)               full
guardrails     ``[tiers] guardrails`` globs (``guardrails/**``: the guardrail as code)               full
models         a JSON file of ``[tiers] model_keys`` whose listed keys changed (``cdk.json``         full
               generatorModelId, promptVersion, featureFlags...); other changes to it are code
ignored        ``[tiers] ignore`` globs (``.gitignore``...)                                          none
docs           ``[tiers] docs`` globs (``**/*.md``, ``docs/**``...)                                  skip
code           anything else                                                                         smoke
=============  ===================================================================================  ==========

The tier is the most demanding effect: **full** if anything needs it; else **smoke** (the smoke subset with
the cheap judge) if code changed; else **skip** (PASS with a note; the approved results are carried forward).
A **release candidate** — a tag on HEAD or a branch matching ``[release]`` globs, or ``--release`` — gets the
**release** tier (every case, heavy judge or a Bedrock evaluation job, repeats) whatever changed.

Fail safe: when the approved commit is unknown or not in the clone (a shallow checkout), or git fails, the
decision is **full**, never less, and the reason says why.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import subprocess
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalgate.core.config import GateConfig
from evalgate.core.models import Case
from evalgate.core.results import RunResult, Verdict, run_identity

FULL_CATEGORIES = ("thresholds", "prompts", "golden", "guardrails", "models", "judge")
SHOWN_FILES = 5
GIT_TIMEOUT_S = 60


@dataclass(frozen=True)
class Tier:
    """How much one tier evaluates: ``judge`` names the ``[models]`` judge it calls (None: no model at all),
    ``subset`` the tag of the cases it selects (None: every case), ``repeats`` its answers per case."""

    judge: str | None
    subset: str | None
    repeats: int
    about: str


TIERS: dict[str, Tier] = {
    "offline": Tier(
        None, None, 1, "no AWS: local embeddings, rule checks (behaviour, numeric grounding, injection), statistics"
    ),
    "smoke": Tier(
        "judge",
        "smoke",
        1,
        "cases tagged 'smoke' (topped up so each gated group has gate.min_cases), cheap judge (Bedrock)",
    ),
    "full": Tier("judge", None, 1, "every case, cheap judge (Bedrock)"),
    "release": Tier("heavy_judge", None, 3, "every case, heavy judge, 3 repeats to measure run-to-run noise"),
}


class GitError(Exception):
    pass


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    """Match a repository-relative POSIX path: ``*`` within a directory, ``**`` across directories
    (``**/*.md`` matches ``README.md`` and ``docs/a/b.md``)."""
    return _glob_regex(pattern).match(path) is not None


def matches_any(path: str, patterns: Sequence[str]) -> bool:
    return any(glob_match(path, p) for p in patterns)


def git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            errors="replace",  # file contents at a revision may be any bytes; they are only compared
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {' '.join(args)}: {exc}") from exc
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split())[:300]
        raise GitError(f"git {' '.join(args)}: {msg or f'exit {proc.returncode}'}")
    return proc.stdout


def head_commit(repo: Path) -> str | None:
    try:
        return git(repo, "rev-parse", "HEAD").strip() or None
    except GitError:
        return None


def changed_files(repo: Path, base: str, head: str = "HEAD", worktree: bool = True) -> list[str]:
    """Paths changed between ``base`` and ``head`` (renames as delete + add, so both paths count), plus
    uncommitted and untracked files when ``worktree`` (the tree being evaluated is the working tree)."""
    git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    out = set(git(repo, "diff", "--name-only", "--no-renames", f"{base}..{head}").splitlines())
    if worktree:
        out.update(git(repo, "diff", "--name-only", "--no-renames", "HEAD").splitlines())
        out.update(git(repo, "ls-files", "--others", "--exclude-standard").splitlines())
    return sorted(p for p in out if p.strip())


def _file_at(repo: Path, rev: str | None, path: str) -> str | None:
    """File text at a revision (None: the working tree); None when it does not exist there."""
    if rev is None:
        p = repo / path
        return p.read_text(encoding="utf-8", errors="replace") if p.is_file() else None
    try:
        return git(repo, "show", f"{rev}:{path}")
    except GitError:
        return None


def _sections_changed(old: str | None, new: str | None, sections: Sequence[str]) -> list[str] | None:
    """TOML top-level keys among ``sections`` whose value differs; None when either side cannot be parsed."""
    try:
        a = tomllib.loads(old) if old is not None else {}
        b = tomllib.loads(new) if new is not None else {}
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
    return [s for s in sections if a.get(s) != b.get(s)]


def _dig(doc: Any, dotted: str) -> Any:
    cur = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _keys_changed(old: str | None, new: str | None, keys: Sequence[str]) -> list[str] | None:
    try:
        a = json.loads(old) if old is not None else {}
        b = json.loads(new) if new is not None else {}
    except (ValueError, RecursionError):
        return None
    return [k for k in keys if _dig(a, k) != _dig(b, k)]


def _toml_keys_changed(old: str | None, new: str | None, keys: Sequence[str], ignore: Sequence[str] = ()) -> list[str]:
    """Dotted TOML keys among ``keys`` whose value differs (a table compares without its ``ignore`` sub-keys);
    empty when either side cannot be parsed (the section rule then decides)."""
    try:
        a = tomllib.loads(old) if old is not None else {}
        b = tomllib.loads(new) if new is not None else {}
    except tomllib.TOMLDecodeError:
        return []

    def value(doc: dict[str, Any], key: str) -> Any:
        v = _dig(doc, key)
        if isinstance(v, dict):
            return {k: x for k, x in v.items() if f"{key}.{k}" not in ignore}
        return v

    return [k for k in keys if value(a, k) != value(b, k)]


@dataclass
class TierDecision:
    """What ``--tier auto`` chose and why. ``tier``: skip, smoke, full or release."""

    tier: str
    reasons: list[str]
    base: str | None = None
    head: str | None = None
    release: bool = False
    files: dict[str, list[str]] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        return f"tier auto → {self.tier}: " + "; ".join(self.reasons)

    @property
    def recalibrate(self) -> bool:
        """The judge (model or rubric) changed: it must be recalibrated before the eval uses it."""
        return bool(self.files.get("judge"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": "auto",
            "tier": self.tier,
            "reasons": list(self.reasons),
            "base": self.base,
            "head": self.head,
            "release": self.release,
            "recalibrate": self.recalibrate,
            "files": {k: list(v) for k, v in self.files.items()},
        }


def _first_match(path: str, rules: Sequence[tuple[str, Sequence[str]]]) -> str | None:
    return next((category for category, globs in rules if matches_any(path, globs)), None)


def _shown(paths: Sequence[str]) -> str:
    more = f", … (+{len(paths) - SHOWN_FILES})" if len(paths) > SHOWN_FILES else ""
    return ", ".join(paths[:SHOWN_FILES]) + more


def classify(
    paths: Sequence[str], config: GateConfig, repo: Path, base: str, gate_file: str | None, worktree: bool = True
) -> dict[str, list[str]]:
    """Category -> changed paths (paths of the gate config and model files carry the changed keys)."""
    t = config.tiers
    head_rev = None if worktree else "HEAD"
    out: dict[str, list[str]] = {}

    def add(cat: str, item: str) -> None:
        out.setdefault(cat, []).append(item)

    # The ``[tiers]`` globs in the docstring table's order (first match wins): these before the model keys of JSON
    # files, ``ignore`` and ``docs`` after them; a file no rule claims is code.
    before_model_keys = (("judge", t.judge), ("prompts", t.prompts), ("golden", t.golden), ("guardrails", t.guardrails))
    after_model_keys = (("ignored", t.ignore), ("docs", t.docs))
    for path in paths:
        if gate_file is not None and path == gate_file:
            old, new = _file_at(repo, base, path), _file_at(repo, head_rev, path)
            changed = _sections_changed(old, new, list(t.gate_sections))
            judge_keys = _toml_keys_changed(old, new, [k for k in t.judge_keys if k.startswith("models.")])
            if judge_keys:
                add("judge", f"{path} [{', '.join(judge_keys)}]")
                if "models" in (changed or []) and not _toml_keys_changed(old, new, ["models"], ignore=judge_keys):
                    changed = [c for c in changed or [] if c != "models"]
            if changed is None:
                add("thresholds", f"{path} (unparseable: treated as a threshold change)")
            elif changed:
                add("thresholds", f"{path} [{', '.join(changed)}]")
            elif not judge_keys:
                add("code", f"{path} (outside {', '.join(t.gate_sections)})")
            continue
        by_glob = _first_match(path, before_model_keys)
        if by_glob is not None:
            add(by_glob, path)
            continue
        if path in t.model_keys:
            keys = _keys_changed(_file_at(repo, base, path), _file_at(repo, head_rev, path), t.model_keys[path])
            judges = [k for k in keys or [] if k in t.judge_keys]
            others = [k for k in keys or [] if k not in t.judge_keys]
            if judges:
                add("judge", f"{path} [{', '.join(judges)}]")
            if keys is None:
                add("models", f"{path} (unparseable: treated as a model change)")
            elif others:
                add("models", f"{path} [{', '.join(others)}]")
            elif not judges:
                add("code", path)
            continue
        add(_first_match(path, after_model_keys) or "code", path)
    return out


def release_reason(config: GateConfig, branch: str | None, tags: Sequence[str], forced: bool = False) -> str | None:
    if forced:
        return "release candidate (--release)"
    for tag in tags:
        for pattern in config.release.tags:
            if fnmatch.fnmatchcase(tag, pattern):
                return f"release candidate: tag '{tag}' on HEAD matches '{pattern}'"
    if branch:
        short = branch.removeprefix("refs/heads/")
        for pattern in config.release.branches:
            if fnmatch.fnmatchcase(short, pattern):
                return f"release candidate: branch '{short}' matches '{pattern}'"
    return None


def current_branch(repo: Path) -> str | None:
    for env in ("EVALGATE_BRANCH", "SOURCE_BRANCH", "CODEBUILD_WEBHOOK_HEAD_REF"):
        if os.environ.get(env):
            return os.environ[env].removeprefix("refs/heads/")
    try:
        name = git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip()
    except GitError:
        return None
    return None if name in ("", "HEAD") else name


def head_tags(repo: Path) -> list[str]:
    try:
        return [t.strip() for t in git(repo, "tag", "--points-at", "HEAD").splitlines() if t.strip()]
    except GitError:
        return []


def decide_tier(
    config: GateConfig,
    *,
    repo: Path,
    base: str | None,
    gate_file: str | None = "golden/gate.toml",
    branch: str | None = None,
    tags: Sequence[str] | None = None,
    release: bool = False,
    worktree: bool = True,
) -> TierDecision:
    """The tier for the working tree of ``repo`` against the approved commit ``base`` (see the module doc)."""
    head = head_commit(repo)
    tags = list(tags) if tags is not None else head_tags(repo)
    branch = branch if branch is not None else current_branch(repo)
    why_release = release_reason(config, branch, tags, release)
    if why_release:
        return TierDecision("release", [why_release], base=base, head=head, release=True)
    if not base:
        return TierDecision(
            "full",
            [
                "no approved commit to diff against (pass --since, set EVALGATE_BASE_COMMIT or use a baseline "
                "results.json that records its commit): full set"
            ],
            head=head,
        )
    try:
        paths = changed_files(repo, base, "HEAD", worktree)
    except GitError as exc:
        return TierDecision(
            "full",
            [
                f"cannot diff against the approved commit {base[:12]} ({exc}); a shallow clone needs "
                "`git fetch --unshallow` or the commit fetched: full set"
            ],
            base=base,
            head=head,
        )
    files = classify(paths, config, repo, base, gate_file, worktree)
    short = base[:12]
    if not paths:
        return TierDecision("skip", [f"nothing changed since the approved commit {short}"], base, head, files=files)
    full = [(c, files[c]) for c in FULL_CATEGORIES if files.get(c)]
    if full:
        reasons = [f"{cat} changed: {_shown(items)}" for cat, items in full]
        if files.get("judge"):
            reasons.append(
                "the judge changed: it is recalibrated (`evalgate calibrate --metric judge --if-needed`) before "
                "the eval uses it, and a judged tier refuses it until its record meets the floors"
            )
        return TierDecision("full", reasons, base, head, files=files)
    if files.get("code"):
        reasons = [
            f"code changed ({len(files['code'])} file(s): {_shown(files['code'])}) but no prompt, model, golden "
            "data or threshold: smoke subset with the cheap judge"
        ]
        return TierDecision("smoke", reasons, base, head, files=files)
    docs = files.get("docs", []) + files.get("ignored", [])
    return TierDecision(
        "skip",
        [f"only docs changed since the approved commit {short} ({len(docs)} file(s): {_shown(docs)})"],
        base,
        head,
        files=files,
    )


def _rank(case_id: str) -> str:
    return hashlib.sha256(case_id.encode()).hexdigest()


def smoke_subset(cases: Sequence[Case], config: GateConfig, tag: str = "smoke") -> tuple[list[Case], list[str]]:
    """Cases tagged ``smoke``, topped up (deterministically, by case-id hash) so that each gated group —
    each suite, and guardrail unsafe/safe and injection direct/indirect — has at least ``gate.min_cases``
    cases: a smoke run can then reach a verdict instead of 'insufficient data'. Returns the subset in the
    input order and notes on what was added."""
    from evalgate.engine.guardrails import stratum  # boto3: only when a smoke run is chosen, not to read TIERS

    need = config.gate.min_cases
    chosen = {c.id for c in cases if tag in c.tags}
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(stratum(c, config.guardrail), []).append(c)
    notes: list[str] = []
    for name, group in sorted(groups.items()):
        have = sum(1 for c in group if c.id in chosen)
        if have >= need:
            continue
        extra = sorted((c for c in group if c.id not in chosen), key=lambda c: _rank(c.id))[: need - have]
        chosen.update(c.id for c in extra)
        if extra:
            notes.append(f"{name}: {have} smoke-tagged + {len(extra)} added to reach {min(need, len(group))}")
    return [c for c in cases if c.id in chosen], notes


def skip_result(
    decision: TierDecision,
    baseline: RunResult | None,
    config: GateConfig,
    commit: str | None,
    candidate: dict[str, Any],
) -> RunResult:
    """The PASS record of a skipped run. The approved baseline's cases and aggregates are carried forward
    unchanged (marked so), so this results.json is still a complete baseline for the next change."""
    now = datetime.now(UTC).isoformat()
    reasons = [f"evaluation skipped ({decision.summary})"]
    if baseline is not None:
        reasons.append(
            f"the approved run {baseline.run_id}'s results are carried forward unchanged ({len(baseline.cases)} cases)"
        )
    else:
        reasons.append("no baseline was given, so no results are carried forward")
    return RunResult(
        **run_identity(now, now),
        tier="skip",
        suites=list(baseline.suites) if baseline is not None else [],
        candidate=candidate,
        judge=baseline.judge if baseline is not None else None,
        embedder=baseline.embedder if baseline is not None else None,
        baseline={"run_id": baseline.run_id, "candidate": baseline.candidate.get("name")} if baseline else None,
        repeats=baseline.repeats if baseline is not None else 1,
        config=config.model_dump(mode="json"),
        config_sha256=config.fingerprint(),
        not_run=[{"metric": "all metrics", "reason": "; ".join(decision.reasons)}],
        cases=list(baseline.cases) if baseline is not None else [],
        aggregates=list(baseline.aggregates) if baseline is not None else [],
        diversity=baseline.diversity if baseline is not None else None,
        unscored=dict(baseline.unscored) if baseline is not None else {},
        verdict=Verdict(verdict="PASS", exit_code=0, reasons=reasons),
        commit=commit,
        tier_decision=decision.to_dict(),
        skipped=True,
    )
