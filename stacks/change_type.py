"""Pick the production traffic-shifting mode from what a change touches.

Runtime changes (what the service answers with) go through the CodeDeploy canary; infrastructure-only changes
shift all at once, still behind the pre-traffic hook (blue/green style). The rule, in order:

1. a changed path under ``lambdas/``, ``prompts/``, ``guardrails/`` or ``golden/knowledge/`` (and the folders
   cdk.json names for the service: ``serviceCodeRoot``, ``promptsDir``, ``goldenDir``/knowledge), or
   ``requirements-lambda.txt`` -> ``canary`` (handler code, evalgate scoring, prompt templates, the guardrail
   config — it changes what users see —, the retrieved knowledge, runtime deps);
2. ``cdk.json`` with a changed model, prompt, guardrail or flag setting -> ``canary``;
3. anything else (stacks/, app.py, tests/, docs, golden cases, other cdk.json keys) -> ``all-at-once``;
4. no usable diff (first run, unknown base commit, git error) -> ``canary`` (fail safe).

A change of the judge (its prompt and rubrics in ``lambdas/evalgate/engine/judge.py``, or ``judgeModelId`` /
``heavyJudgeModelId`` in ``cdk.json``) is its own change type, ``judge``: it does not change what the service
answers (the mode follows the rules above), but the quality gate recalibrates the judge before the eval uses it
(``evalgate calibrate --metric judge --if-needed`` in the gate step; ``evalgate tier`` reports it as ``judge``).
``--explain`` names the change types.

The Synth step runs ``python3 -m stacks.change_type --base <last approved commit>`` and passes the printed
mode to ``cdk synth -c deploymentMode=<mode>``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

Mode = Literal["canary", "all-at-once"]

RUNTIME_PATTERNS: tuple[str, ...] = (
    "lambdas/*",
    "prompts/*",
    "guardrails/*",
    "golden/knowledge/*",
    "requirements-lambda.txt",
    "requirements.txt",  # its aws-lambda-powertools pin selects the Lambda layer
)
# cdk.json context keys whose change alters what the service answers with.
RUNTIME_SETTINGS: frozenset[str] = frozenset(
    {
        "generatorModelId",
        "promptVersion",
        "guardrailId",
        "guardrailVersion",
        "guardrailConfig",
        "featureFlags",
        "serviceCodeRoot",
        "serviceHandler",
        "promptsDir",
        "goldenDir",
    }
)


# The judge: where its prompt and rubrics live, and the cdk.json context keys naming its models (the same
# defaults as evalgate's [tiers] judge / judge_keys).
JUDGE_PATTERNS: tuple[str, ...] = ("lambdas/evalgate/engine/judge.py",)
JUDGE_SETTINGS: frozenset[str] = frozenset({"judgeModelId", "heavyJudgeModelId"})


def judge_changed(paths: Iterable[str] | None, settings_changed: Iterable[str] = ()) -> bool:
    """A change of judge model or rubric (unknown paths count as a change: fail safe)."""
    if paths is None:
        return True
    norm = [p.strip().lstrip("./") for p in paths if p.strip()]
    return any(fnmatch.fnmatch(p, pat) for p in norm for pat in JUDGE_PATTERNS) or bool(
        JUDGE_SETTINGS.intersection(settings_changed)
    )


def change_types(paths: Iterable[str] | None, settings_changed: Iterable[str] = ()) -> list[str]:
    """The kinds of change, for people and logs: ``runtime`` (canary), ``judge``, ``infrastructure``."""
    path_list = None if paths is None else list(paths)
    keys = list(settings_changed)
    kinds = ["runtime"] if classify_change(path_list, keys) == "canary" else ["infrastructure"]
    if judge_changed(path_list, keys):
        kinds.append("judge")
    return kinds


def service_patterns(context: Mapping[str, Any]) -> tuple[str, ...]:
    """The service's own runtime folders wherever cdk.json keeps them (``serviceCodeRoot``, ``promptsDir``,
    ``goldenDir``'s knowledge): they are shipped in the service's asset like ``lambdas/`` and ``prompts/``."""
    folders = (context.get("serviceCodeRoot"), context.get("promptsDir"),
               f"{context['goldenDir']}/knowledge" if isinstance(context.get("goldenDir"), str) else None)
    return tuple(f"{f.strip('/')}/*" for f in folders if isinstance(f, str) and f.strip("/"))


def is_runtime_path(path: str, extra: Iterable[str] = ()) -> bool:
    p = path.strip().lstrip("./")
    return any(fnmatch.fnmatch(p, pat) for pat in (*RUNTIME_PATTERNS, *extra))


def changed_settings(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> set[str]:
    """Context keys whose value differs between two ``cdk.json`` documents."""
    b = dict((before or {}).get("context", {}))
    a = dict((after or {}).get("context", {}))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def classify_change(
    paths: Iterable[str] | None, settings_changed: Iterable[str] = (), extra_patterns: Iterable[str] = ()
) -> Mode:
    """The deployment mode for a change given its changed paths (None = unknown -> canary); ``extra_patterns``:
    the service's folders (``service_patterns``)."""
    if paths is None:
        return "canary"
    path_list = [p for p in paths if p.strip()]
    extra = tuple(extra_patterns)
    if any(is_runtime_path(p, extra) for p in path_list):
        return "canary"
    if RUNTIME_SETTINGS.intersection(settings_changed):
        return "canary"
    return "all-at-once"


def resolve_mode(requested: str, changed_paths: list[str] | None) -> Mode:
    """``deploymentMode`` context: explicit ``canary``/``all-at-once`` wins; ``auto`` classifies the paths."""
    if requested in ("canary", "all-at-once"):
        return requested  # type: ignore[return-value]
    return classify_change(changed_paths)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def diff_since(base: str) -> tuple[list[str] | None, set[str]]:
    """Changed paths and changed cdk.json keys between ``base`` and HEAD; (None, {}) if git cannot tell."""
    if not base:
        return None, set()
    try:
        paths = [p for p in _git("diff", "--name-only", base, "HEAD").splitlines() if p]
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None, set()
    keys: set[str] = set()
    if "cdk.json" in paths:
        try:
            before = json.loads(_git("show", f"{base}:cdk.json"))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            before = {}
        try:
            after = json.loads(_git("show", "HEAD:cdk.json"))
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            after = {}
        keys = changed_settings(before, after)
    return paths, keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="", help="commit to diff against (the last approved one); empty = unknown")
    parser.add_argument("--explain", action="store_true", help="print the changed paths to stderr")
    args = parser.parse_args(argv)
    paths, keys = diff_since(args.base.strip())
    try:
        context = json.loads(Path("cdk.json").read_text(encoding="utf-8")).get("context", {})
    except (OSError, ValueError, AttributeError):
        context = {}
    mode = classify_change(paths, keys, service_patterns(context if isinstance(context, dict) else {}))
    if args.explain:
        shown = "unknown (no base commit)" if paths is None else ", ".join(paths) or "(none)"
        kinds = ", ".join(change_types(paths, keys))
        print(
            f"changed paths: {shown}; changed settings: {sorted(keys) or '(none)'} -> {mode} (change types: {kinds})",
            file=sys.stderr,
        )
    print(mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
