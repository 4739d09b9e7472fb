"""`evalgate validate`: check the golden set, gate config, recorded responses, reviews and guardrail files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from evalgate.core.errors import InputError, Problem


def add_parser(sub: Any) -> None:
    val = sub.add_parser(
        "validate",
        help="check datasets, knowledge base, config and recorded responses",
        description="Check the golden dataset and gate config. Problems print as file:line: message; "
        "exit 2 when any is found.",
    )
    val.add_argument("--golden", type=Path, default=Path("golden"))
    val.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml")
    val.add_argument(
        "--responses",
        type=Path,
        nargs="*",
        help="recorded response files to check against the cases (default: GOLDEN/responses/*.jsonl)",
    )
    val.add_argument(
        "--guardrails",
        type=Path,
        default=Path("guardrails"),
        help="folder of guardrail files to check (default: guardrails, when present)",
    )
    val.add_argument(
        "--review",
        type=Path,
        action="append",
        metavar="FILE",
        help="a curation review file: every entry must be completed and verified, or rejected (repeatable)",
    )
    val.set_defaults(handler=validate_command)


def validate_command(args: argparse.Namespace) -> int:
    from evalgate.adapters.replay import ReplayCandidate
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden

    problems = []
    golden = None
    try:
        golden = load_golden(args.golden)
    except InputError as exc:
        problems.extend(exc.problems)
    config_path = args.config or args.golden / "gate.toml"
    try:
        config = load_config(config_path)
        if config.cost.max_usd is not None and config.unpriced_models():
            problems.append(
                Problem(
                    str(config_path),
                    None,
                    "[cost] max_usd is set but [pricing] has no price for " + ", ".join(config.unpriced_models()),
                )
            )
    except InputError as exc:
        problems.extend(exc.problems)
    labels = args.golden / "judge_labels.jsonl"
    if golden is not None and labels.is_file():
        from evalgate.engine.judge_calibration import load_judge_labels

        try:
            load_judge_labels(labels, golden.knowledge)
        except InputError as exc:
            problems.extend(exc.problems)
    files = args.responses if args.responses is not None else sorted((args.golden / "responses").glob("*.jsonl"))
    for path in files:
        try:
            replay = ReplayCandidate(path)
        except InputError as exc:
            problems.extend(exc.problems)
            continue
        if golden is not None:
            known = {c.id for c in golden.cases}
            for cid, rep in sorted(replay.responses):
                if cid not in known:
                    problems.append(Problem(str(path), None, f"response for unknown case id '{cid}' (repeat {rep})"))
            missing = sorted(known - {cid for cid, _ in replay.responses})
            if missing:
                problems.append(
                    Problem(str(path), None, f"no response for {len(missing)} case(s): {', '.join(missing[:6])}")
                )
    if golden is not None:
        from evalgate.engine.curate import check_review

        for review in args.review or []:
            problems.extend(check_review(review, golden)[1])
    guardrail_files = sorted(args.guardrails.glob("*.toml")) if args.guardrails.is_dir() else []
    if args.guardrails != Path("guardrails") and not args.guardrails.is_dir():
        problems.append(Problem(str(args.guardrails), None, "guardrails folder not found"))
    for path in guardrail_files:
        from evalgate.engine.guardrail_spec import load_guardrail_spec

        try:
            load_guardrail_spec(path)
        except InputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputError(problems)
    assert golden is not None
    counts = {s: len(golden.suite(s)) for s in golden.suites}
    print(
        f"ok: {len(golden.knowledge)} knowledge entries, "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + f" cases, {len(files)} response file(s), {len(guardrail_files)} guardrail file(s)"
        + (f", {len(args.review)} review file(s)" if args.review else "")
    )
    return 0
