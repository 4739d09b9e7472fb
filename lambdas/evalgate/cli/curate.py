"""``evalgate curate``: propose golden cases from judged production records, or merge a reviewed batch."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from evalgate.core.errors import InputError


class CoverageFile(BaseModel):
    """``coverage.json`` as ``evalgate curate`` writes it and ``evalgate run --coverage`` reads it."""

    model_config = ConfigDict(extra="ignore")

    records: int = Field(ge=0)
    categories: list[dict[str, Any]] = Field(default_factory=list)
    uncovered: list[str] = Field(default_factory=list)


def add_parser(sub: Any) -> None:
    cur = sub.add_parser(
        "curate",
        help="propose golden cases from judged production records; merge a reviewed batch",
        description="Read judged live answers (a folder or s3:// prefix) over a time window and write review.jsonl "
        "(proposals with provenance, personal data masked) and coverage.md/json into --out. A person completes "
        "each entry (reference, context, tags, verified_by) or sets status to rejected; `evalgate validate "
        "--review FILE` checks it and `evalgate curate --merge FILE` adds the completed entries to golden/.",
    )
    cur.add_argument("--records", metavar="SOURCE", help="folder or s3://bucket/prefix of judged records")
    cur.add_argument("--since", type=_iso_day, metavar="YYYY-MM-DD", help="first day (default: --days ago)")
    cur.add_argument("--until", type=_iso_day, metavar="YYYY-MM-DD", help="last day, inclusive (default: today)")
    cur.add_argument("--days", type=int, default=90, help="window when --since is not given (default: 90)")
    cur.add_argument("--golden", type=Path, default=Path("golden"))
    cur.add_argument("--config", type=Path, help="default: GOLDEN/gate.toml ([golden] section)")
    cur.add_argument("--max", type=int, dest="max_proposals", help="proposals at most (default: from gate.toml)")
    cur.add_argument("--embedder", choices=["local", "titan"], default="local")
    cur.add_argument("--out", type=Path, default=Path("out/curate"), help="folder for review.jsonl and coverage")
    cur.add_argument("--merge", type=Path, metavar="REVIEW", help="add a completed review file's cases to golden/")
    cur.set_defaults(handler=curate_command)


def _iso_day(text: str) -> Any:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def curate_command(args: argparse.Namespace) -> int:
    from evalgate.cli.common import make_embedder
    from evalgate.core.config import load_config
    from evalgate.core.dataset import load_golden
    from evalgate.core.inputs import write_lines_atomic
    from evalgate.engine.curate import (
        Settings,
        coverage_json,
        coverage_markdown,
        load_records,
        merge_review,
        propose,
        review_entry,
    )

    if args.merge is not None:
        if args.records:
            raise InputError.single("--merge", None, "merges a review file; it does not read --records")
        added = merge_review(args.merge, args.golden)
        if added:
            print(f"curate: added {len(added)} case(s) to {args.golden}: {', '.join(c.id for c in added)}")
        else:
            print(f"curate: nothing to add from {args.merge} (every entry rejected or merged before)")
        return 0
    if not args.records:
        raise InputError.single("--records", None, "name a folder or s3:// prefix of judged records (or use --merge)")
    if args.days < 1:
        raise InputError.single("--days", None, "must be at least 1")
    if args.max_proposals is not None and not 1 <= args.max_proposals <= 1000:
        raise InputError.single("--max", None, "must be between 1 and 1000")
    config = load_config(args.config or args.golden / "gate.toml")
    golden = load_golden(args.golden)
    until = (args.until + timedelta(days=1)) if args.until else datetime.now(UTC)
    since = args.since or until - timedelta(days=args.days)
    if since >= until:
        raise InputError.single("--since", None, "must be before --until")
    records, problems = load_records(args.records, since, until)
    for problem in problems[:20]:
        print(f"warning: {problem}")
    if len(problems) > 20:
        print(f"warning: … and {len(problems) - 20} more unreadable record(s)")
    g = config.golden
    settings = Settings(
        max_proposals=args.max_proposals or g.max_proposals,
        low_quality=g.low_quality,
        novelty=g.novelty,
        duplicate=g.duplicate,
    )
    cur = propose(
        records, golden, make_embedder(args.embedder, config.models.embeddings) if records else None, settings
    )
    cur.problems = problems
    out = args.out
    write_lines_atomic(out / "review.jsonl", [review_entry(p).model_dump_json() for p in cur.proposals])
    write_lines_atomic(out / "coverage.md", [coverage_markdown(cur, since, until)])
    coverage = json.dumps(coverage_json(cur), indent=2)
    write_lines_atomic(out / "coverage.json", [coverage])
    # The gate reads it from golden/ on every run: commit it with the reviewed batch.
    write_lines_atomic(args.golden / "coverage.json", [coverage])
    personal = sum(p.personal_data for p in cur.proposals)
    print(
        f"curate: {len(records)} record(s), {len(problems)} unreadable; {len(cur.proposals)} proposal(s)"
        f" ({personal} with personal data masked) → {out / 'review.jsonl'}; coverage → {out / 'coverage.md'}"
        f" and {args.golden / 'coverage.json'}"
    )
    return 0
