"""JUnit XML for CodeBuild report groups (and any CI that reads JUnit).

One ``<testsuite>`` per evaluation suite with one ``<testcase>`` per golden case, plus a ``gate`` suite with one
testcase per gated aggregate and the overall verdict. Fail closed: an unscored case is an ``<error>``, never a
pass; a REVIEW verdict is a failure (type ``NeedsReview``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from evalgate.core.results import Aggregate, CaseResult, RunResult, answer_text, excerpt, one_line
from evalgate.reports.common import (
    case_reasons,
    confidence_label,
    fmt_ci,
    fmt_num,
    is_gated,
    judge_trust_lines,
    repeat_text,
    suite_order,
    threshold_text,
)

GATE_CLASSNAME = "evalgate.gate"
MESSAGE_CHARS = 1000
ANSWER_CHARS = 1000
# Characters XML 1.0 cannot carry at all (model output may contain control characters).
_XML_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    """Drop characters that would make the document unparseable; ElementTree escapes the rest."""
    return _XML_ILLEGAL.sub("\ufffd", text)


OutcomeKind = Literal["pass", "failure", "error", "skipped"]


@dataclass
class Outcome:
    """What one testcase reports: ``kind`` is pass, failure, error or skipped."""

    kind: OutcomeKind = "pass"
    failure_type: str = ""
    message: str = ""
    body: str = ""
    system_out: str = ""


@dataclass
class CaseSpec:
    classname: str
    name: str
    time_s: float
    outcome: Outcome = field(default_factory=Outcome)


# --------------------------------------------------------------------------------------------------- outcomes


CASE_OUTCOMES: dict[str, tuple[OutcomeKind, str]] = {
    "fail": ("failure", "QualityGate"),
    "error": ("error", "CaseError"),  # the candidate or the judge errored
    "unscored": ("error", "Unscored"),  # fail closed: never a pass
}


def case_outcome(case: CaseResult) -> Outcome:
    repeats = repeat_text(case, len(case.generations)) or ""
    if case.status == "pass":
        return Outcome(system_out=repeats)
    reasons = case_reasons(case)
    kind, failure_type = CASE_OUTCOMES[case.status]
    first = reasons[0] if reasons else f"case {case.status}"
    return Outcome(kind, failure_type, _message(first), case_body(case, reasons), repeats)


def case_body(case: CaseResult, reasons: list[str]) -> str:
    lines = ["Reasons:"] + [f"- {r}" for r in reasons]
    if case.metrics:
        lines.append("Metrics:")
        for name, m in case.metrics.items():
            value = fmt_num(m.value) if m.value is not None else "unscored"
            lines.append(f"- {name} = {value}" + (f" ({one_line(m.reason)})" if m.reason else ""))
    lines.append(f"Expected behaviour: {case.expected}; observed: {case.observed or '—'}")
    if case.unsupported_claims:
        lines.append("Unsupported claims:")
        lines.extend(f"- {c}" for c in case.unsupported_claims)
    answer = answer_text(case)
    if answer is not None:
        lines.append(f"Answer (excerpt): {excerpt(answer, ANSWER_CHARS)}")
    return "\n".join(lines)


def aggregate_outcome(agg: Aggregate, ci_label: str) -> Outcome:
    value = fmt_ci(agg.value, agg.ci_low, agg.ci_high)
    method = f", {agg.method}" if agg.method != "none" else ""
    described = (
        f"{agg.suite}.{agg.metric} = {value} ({ci_label}{method}); threshold {threshold_text(agg)}; "
        f"n={agg.n}, unscored={agg.n_unscored}; status {agg.status}" + (f"; {agg.note}" if agg.note else "")
    )
    if agg.status == "fail":
        message = f"{agg.suite}.{agg.metric} {value} fails threshold {threshold_text(agg)}"
        return Outcome("failure", "QualityGate", _message(message), described)
    if agg.status in ("not_run", "insufficient"):
        why = agg.note or ("not run in this tier" if agg.status == "not_run" else "not enough scored cases to decide")
        return Outcome("skipped", message=_message(f"{agg.status}: {why}"), system_out=described)
    return Outcome(system_out=described)


def verdict_outcome(result: RunResult) -> Outcome:
    v = result.verdict
    reasons = v.reasons or [f"verdict {v.verdict}"]
    out = f"Verdict {v.verdict} (exit code {v.exit_code})\n" + "\n".join(f"- {r}" for r in reasons)
    message = _message(f"{v.verdict}: {reasons[0]}")
    if v.verdict == "PASS":
        return Outcome(system_out=out)
    if v.verdict == "FAIL":
        return Outcome("failure", "QualityGate", message, out, out)
    if v.verdict == "REVIEW":
        return Outcome("failure", "NeedsReview", message, out, out)
    return Outcome("error", "RunError", message, out, out)


def _message(text: str) -> str:
    flat = one_line(text)
    return flat if len(flat) <= MESSAGE_CHARS else flat[: MESSAGE_CHARS - 1] + "…"


# --------------------------------------------------------------------------------------------------- specs


def case_specs(cases: list[CaseResult]) -> list[CaseSpec]:
    return [
        CaseSpec(f"evalgate.{c.suite}.{c.category}", c.id, (c.latency_ms or 0.0) / 1000.0, case_outcome(c))
        for c in cases
    ]


def gate_specs(result: RunResult) -> list[CaseSpec]:
    label = confidence_label(result)
    specs = [
        CaseSpec(GATE_CLASSNAME, f"{a.suite}.{a.metric}", 0.0, aggregate_outcome(a, label))
        for a in result.aggregates
        if is_gated(a)
    ]
    trust = judge_trust_lines(result)
    if trust:
        untrusted = [c for c in result.judge_calibration if not c.get("ok")]
        low = bool(result.self_agreement and result.self_agreement.get("below_floor"))
        text = "\n".join(f"- {line}" for line in trust)
        outcome = (
            Outcome("failure", "UntrustedJudge", _message(next(t for t in trust if "NOT trusted" in t)), text, text)
            if untrusted
            else Outcome("failure", "NeedsReview", _message("the judge disagreed with itself"), text, text)
            if low
            else Outcome(system_out=text)
        )
        specs.append(CaseSpec(GATE_CLASSNAME, "judge and stability", 0.0, outcome))
    specs.append(CaseSpec(GATE_CLASSNAME, "verdict", 0.0, verdict_outcome(result)))
    return specs


# --------------------------------------------------------------------------------------------------- xml


def _fmt_time(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"


def testcase_element(spec: CaseSpec) -> ET.Element:
    el = ET.Element(
        "testcase", {"classname": xml_safe(spec.classname), "name": xml_safe(spec.name), "time": _fmt_time(spec.time_s)}
    )
    o = spec.outcome
    if o.kind != "pass":
        attrs = {"message": xml_safe(o.message)}
        if o.failure_type:
            attrs["type"] = o.failure_type
        child = ET.SubElement(el, o.kind, attrs)
        if o.body:
            child.text = xml_safe(o.body)
    if o.system_out:
        ET.SubElement(el, "system-out").text = xml_safe(o.system_out)
    return el


def count(specs: list[CaseSpec], kind: str) -> int:
    return sum(s.outcome.kind == kind for s in specs)


def testsuite_element(name: str, specs: list[CaseSpec], timestamp: str | None) -> ET.Element:
    attrs = {
        "name": xml_safe(name),
        "tests": str(len(specs)),
        "failures": str(count(specs, "failure")),
        "errors": str(count(specs, "error")),
        "skipped": str(count(specs, "skipped")),
        "time": _fmt_time(sum(s.time_s for s in specs)),
    }
    if timestamp:
        attrs["timestamp"] = timestamp
    suite = ET.Element("testsuite", attrs)
    suite.extend(testcase_element(s) for s in specs)
    return suite


def junit_timestamp(value: str) -> str | None:
    """JUnit wants ISO 8601 without a zone (``2025-01-31T12:00:00``); None when the run time does not parse."""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None


def run_seconds(result: RunResult) -> float | None:
    try:
        start = datetime.fromisoformat(result.started_at)
        end = datetime.fromisoformat(result.finished_at)
        return max((end - start).total_seconds(), 0.0)
    except (ValueError, TypeError):
        return None


def build_junit(result: RunResult) -> ET.Element:
    timestamp = junit_timestamp(result.started_at)
    suites: list[ET.Element] = []
    all_specs: list[CaseSpec] = []
    for suite in suite_order(result):
        specs = case_specs([c for c in result.cases if c.suite == suite])
        if specs:
            suites.append(testsuite_element(suite, specs, timestamp))
            all_specs.extend(specs)
    gate = gate_specs(result)
    suites.append(testsuite_element("gate", gate, timestamp))
    all_specs.extend(gate)
    elapsed = run_seconds(result)
    root = ET.Element(
        "testsuites",
        {
            "name": xml_safe(f"evalgate {result.run_id}"),
            "tests": str(len(all_specs)),
            "failures": str(count(all_specs, "failure")),
            "errors": str(count(all_specs, "error")),
            "skipped": str(count(all_specs, "skipped")),
            "time": _fmt_time(elapsed if elapsed is not None else sum(s.time_s for s in all_specs)),
        },
    )
    root.extend(suites)
    return root


def render_junit(result: RunResult) -> str:
    root = build_junit(result)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
