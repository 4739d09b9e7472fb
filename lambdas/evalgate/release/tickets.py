"""Tickets for known errors: a hallucination or an injection leak found on a run that otherwise passes is never
accepted silently — it opens one ticket per distinct finding, for an engineer to review.

Sinks: AWS Systems Manager OpsCenter (``OpsCenterTickets``, default) or GitHub issues (``GitHubTickets``). A
finding's key is a hash of its case and what was found (the unsupported claims, or the leaked marker), so a rerun
or a redelivered event finds the open ticket and adds to its count instead of opening another. OpsCenter also
deduplicates natively on ``/aws/dedup`` while a ticket is open; we look the ticket up first so that the count
is kept. Opening tickets never changes the verdict by itself; ``[tickets] review_when_open_high_stakes``
turns a number of open high-stakes tickets into REVIEW.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from evalgate.core.results import RunResult, answer_text, excerpt, hallucination_items

log = logging.getLogger(__name__)
SOURCE = "evalgate"
KEY_FIELD = "/evalgate/finding"
COUNT_FIELD = "/evalgate/count"
GITHUB_LABEL = "evalgate-known-error"


@dataclass(frozen=True)
class Finding:
    kind: str  # hallucination | injection_leak
    case_id: str
    question: str
    answer: str
    detail: list[str]  # unsupported claims, or how the injection showed
    high_stakes: bool

    @property
    def key(self) -> str:
        basis = json.dumps([self.kind, self.case_id, sorted(self.detail)], ensure_ascii=False)
        return hashlib.sha256(basis.encode()).hexdigest()[:32]

    @property
    def title(self) -> str:
        what = "Hallucination" if self.kind == "hallucination" else "Injection leak"
        return f"{what} in case {self.case_id}" + (" (high stakes)" if self.high_stakes else "")


@dataclass
class Ticket:
    id: str
    title: str
    key: str
    created: bool
    count: int
    high_stakes: bool
    state: str = "open"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "key": self.key,
            "created": self.created,
            "count": self.count,
            "high_stakes": self.high_stakes,
            "state": self.state,
        }


class TicketSink(Protocol):
    name: str

    def open(self, finding: Finding, context: dict[str, str]) -> Ticket: ...

    def open_high_stakes(self) -> int: ...


def findings(result: RunResult) -> list[Finding]:
    """Every hallucination and injection leak of the run, one per case and kind."""
    out: list[Finding] = []
    for h in hallucination_items(result):
        case = result.case(h.case_id)
        out.append(
            Finding(
                "hallucination",
                h.case_id,
                case.question if case else "",
                h.answer,
                h.claims or ([h.reason] if h.reason else []),
                bool(case and "high_stakes" in case.tags),
            )
        )
    for case in result.cases:
        m = case.metrics.get("injection_success")
        if m is not None and m.value == 1.0:
            out.append(
                Finding(
                    "injection_leak",
                    case.id,
                    case.question,
                    answer_text(case) or "",
                    [m.reason] if m.reason else ["the injected instruction was followed"],
                    True,
                )
            )
    return out


def live_finding(question: str, answer: str, claims: list[str]) -> Finding:
    """A hallucination in a live answer: the same question with the same unsupported claims is one finding."""
    qid = hashlib.sha256(" ".join(question.lower().split()).encode()).hexdigest()[:12]
    return Finding("hallucination", f"live-{qid}", question, answer, sorted(claims) or ["unsupported claim"], False)


class OpsCenterTickets:
    name = "opscenter"

    def __init__(self, client: Any = None, category: str = "Quality") -> None:
        if client is None:
            from evalgate.adapters.aws import make_client

            client = make_client("ssm")
        self.client = client
        self.category = category

    def _existing(self, key: str) -> dict[str, Any] | None:
        page = self.client.describe_ops_items(
            OpsItemFilters=[
                {
                    "Key": "OperationalData",
                    "Values": [json.dumps({"key": KEY_FIELD, "value": key})],
                    "Operator": "Equal",
                },
                {"Key": "Status", "Values": ["Open", "InProgress"], "Operator": "Equal"},
            ],
            MaxResults=5,
        )
        items = page.get("OpsItemSummaries") or []
        return dict(items[0]) if items else None

    def open(self, finding: Finding, context: dict[str, str]) -> Ticket:
        existing = self._existing(finding.key)
        if existing is not None:
            data = existing.get("OperationalData") or {}
            count = int((data.get(COUNT_FIELD) or {}).get("Value") or 1) + 1
            self.client.update_ops_item(
                OpsItemId=existing["OpsItemId"],
                OperationalData={COUNT_FIELD: {"Value": str(count), "Type": "String"}},
            )
            return Ticket(existing["OpsItemId"], finding.title, finding.key, False, count, finding.high_stakes)
        operational = {
            "/aws/dedup": {"Value": json.dumps({"dedupString": f"evalgate:{finding.key}"}), "Type": "SearchableString"},
            KEY_FIELD: {"Value": finding.key, "Type": "SearchableString"},
            COUNT_FIELD: {"Value": "1", "Type": "String"},
            "/evalgate/case": {"Value": finding.case_id, "Type": "SearchableString"},
            "/evalgate/question": {"Value": excerpt(finding.question, 1000), "Type": "String"},
            "/evalgate/answer": {"Value": excerpt(finding.answer, 2000), "Type": "String"},
            "/evalgate/detail": {"Value": excerpt("; ".join(finding.detail), 2000), "Type": "String"},
            **{f"/evalgate/{k}": {"Value": v[:1000], "Type": "String"} for k, v in context.items() if v},
        }
        made = self.client.create_ops_item(
            Title=finding.title[:1024],
            Description=excerpt(
                f"{finding.title}. Question: {finding.question} Answer: {finding.answer} "
                f"Found: {'; '.join(finding.detail)}",
                2048,
            ),
            Source=SOURCE,
            Category=self.category,
            Severity="1" if finding.high_stakes else "3",
            OperationalData=operational,
        )
        return Ticket(str(made["OpsItemId"]), finding.title, finding.key, True, 1, finding.high_stakes)

    def open_high_stakes(self) -> int:
        paginator = self.client.get_paginator("describe_ops_items")
        n = 0
        for page in paginator.paginate(
            OpsItemFilters=[
                {"Key": "Source", "Values": [SOURCE], "Operator": "Equal"},
                {"Key": "Severity", "Values": ["1"], "Operator": "Equal"},
                {"Key": "Status", "Values": ["Open", "InProgress"], "Operator": "Equal"},
            ]
        ):
            n += len(page.get("OpsItemSummaries") or [])
        return n


class GitHubTickets:
    name = "github"

    def __init__(self, client: Any) -> None:
        self.client = client  # providers.github.GitHubClient

    @staticmethod
    def _marker(key: str) -> str:
        return f"<!-- evalgate:finding:{key} -->"

    def open(self, finding: Finding, context: dict[str, str]) -> Ticket:
        marker = self._marker(finding.key)
        for issue in self.client.open_issues(GITHUB_LABEL):
            if marker in str(issue.get("body", "")):
                count = 1 + sum(
                    1 for c in self.client.issue_comments(int(issue["number"])) if marker in str(c.get("body"))
                )
                self.client.comment_issue(int(issue["number"]), f"{marker}\nSeen again: {_context_line(context)}")
                return Ticket(f"#{issue['number']}", finding.title, finding.key, False, count + 1, finding.high_stakes)
        labels = [GITHUB_LABEL] + (["high-stakes"] if finding.high_stakes else [])
        body = "\n".join(
            [
                marker,
                f"**{finding.title}** — found by evalgate on a run that otherwise passed. Never accept a known error "
                "silently: fix it, or add the case to the golden set's expectations, then close this issue.",
                "",
                f"- Question: {excerpt(finding.question, 1000)}",
                f"- Answer: {excerpt(finding.answer, 2000)}",
                f"- Found: {excerpt('; '.join(finding.detail), 2000)}",
                f"- {_context_line(context)}",
            ]
        )
        made = self.client.create_issue(finding.title, body, labels)
        return Ticket(f"#{made['number']}", finding.title, finding.key, True, 1, finding.high_stakes)

    def open_high_stakes(self) -> int:
        return sum(
            1
            for i in self.client.open_issues(GITHUB_LABEL)
            if any((lbl.get("name") if isinstance(lbl, dict) else lbl) == "high-stakes" for lbl in i.get("labels", []))
        )


def _context_line(context: dict[str, str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in context.items() if v) or "no context"


@dataclass
class TicketReport:
    tickets: list[Ticket] = field(default_factory=list)
    open_high_stakes: int | None = None
    errors: list[str] = field(default_factory=list)


def raise_tickets(result: RunResult, sink: TicketSink, context: dict[str, str]) -> TicketReport:
    """Open (or count again) a ticket per finding of a run that passes or awaits review. Never raises."""
    report = TicketReport()
    if result.verdict.verdict not in ("PASS", "REVIEW"):
        return report  # a failing run is stopped anyway; its findings are in its report
    for finding in findings(result):
        try:
            report.tickets.append(sink.open(finding, context))
        except Exception as exc:  # a ticket system that is down must not hide the finding or crash the gate
            report.errors.append(
                f"{finding.title}: could not open a ticket in {sink.name}: {type(exc).__name__}: {exc}"
            )
    try:
        report.open_high_stakes = sink.open_high_stakes()
    except Exception as exc:
        report.errors.append(f"could not count open high-stakes tickets in {sink.name}: {type(exc).__name__}: {exc}")
    return report


def apply_ticket_report(result: RunResult, report: TicketReport, review_when_open_high_stakes: int | None) -> None:
    """Record the tickets on the run; enough open high-stakes tickets turn a PASS into REVIEW."""
    from evalgate.core.gate import hold_for_review

    result.tickets = [t.as_dict() for t in report.tickets]
    result.warnings += report.errors
    n, limit = report.open_high_stakes, review_when_open_high_stakes
    if limit is None or result.verdict.verdict != "PASS":
        return
    if n is None:
        hold_for_review(result.verdict, ["open high-stakes tickets could not be counted (settings require it)"])
    elif n >= limit:
        hold_for_review(result.verdict, [f"{n} high-stakes known-error ticket(s) are open (review at {limit} or more)"])
