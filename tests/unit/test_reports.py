"""Reports users open: JUnit in CodeBuild, summary.md in email/PR, report.html in a browser, all written atomically."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalgate import reports
from evalgate.core.models import Generation, MetricValue
from evalgate.core.results import Aggregate, CaseResult, Comparison, Drift, RunResult, Usage, Verdict
from evalgate.core.verdicts import EXIT_CODES
from evalgate.reports import REPORT_FILES, junit, markdown, write_reports
from evalgate.reports import html as html_report
from evalgate.reports.common import worst_cases

CaseStatus = Literal["pass", "fail", "error", "unscored"]
CONSOLE_URL = "https://console.aws.amazon.com/bedrock/home?region=us-east-1#/providers"
SCRIPT = '<script>alert("pwned")</script>'
INSECURE_URL = "http://intranet.example/runbook"
IMG = '<img src="https://evil.example/x.png" onerror="alert(1)">'


# --------------------------------------------------------------------------------------------------- builders


def mv(name: str, value: float | None, reason: str = "") -> MetricValue:
    return MetricValue(name=name, value=value, reason=reason, unscored=value is None)


def case(
    cid: str,
    suite: str = "regression",
    category: str = "billing",
    status: CaseStatus = "pass",
    metrics: dict[str, float | None] | None = None,
    failures: list[str] | None = None,
    output: str | None = "Refunds are processed within 5 business days.",
    **extra: Any,
) -> CaseResult:
    values = metrics if metrics is not None else {"similarity": 0.9, "faithfulness": 0.95, "hallucination": 0.0}
    reasons = extra.pop("metric_reasons", {})
    return CaseResult(
        id=cid,
        suite=suite,
        category=category,
        expected=extra.pop("expected", "answer"),
        observed=extra.pop("observed", "answer"),
        question=extra.pop("question", "How long do refunds take?"),
        reference=extra.pop("reference", "Refunds take 5 business days."),
        output=output,
        generations=extra.pop("generations", [Generation(case_id=cid, output=output, latency_ms=850.0)]),
        metrics={k: mv(k, v, reasons.get(k, "")) for k, v in values.items()},
        status=status,
        failures=failures or [],
        latency_ms=extra.pop("latency_ms", 850.0),
        **extra,
    )


def agg(metric: str, suite: str, value: float | None, lo: float | None, hi: float | None, **kw: Any) -> Aggregate:
    return Aggregate(metric=metric, suite=suite, n=kw.pop("n", 20), value=value, ci_low=lo, ci_high=hi, **kw)


def run(verdict: str, reasons: list[str], cases: list[CaseResult], **kw: Any) -> RunResult:
    return RunResult(
        run_id=kw.pop("run_id", f"run-{verdict.lower()}"),
        started_at="2025-06-01T10:00:00Z",
        finished_at="2025-06-01T10:03:30Z",
        tool_version="0.1.0",
        tier=kw.pop("tier", "full"),
        suites=kw.pop("suites", ["regression", "guardrail", "injection"]),
        candidate=kw.pop(
            "candidate",
            {
                "model_id": "us.anthropic.claude-sonnet-4",
                "prompt": "support/v1",
                "console": CONSOLE_URL,
                "wiki": INSECURE_URL,
            },
        ),
        judge={"model_id": "us.anthropic.claude-3-5-haiku"},
        embedder={"name": "all-MiniLM-L6-v2"},
        config={"gate": {"confidence": 0.95, "unscored_budget": 0.05}},
        cases=cases,
        verdict=Verdict(verdict=verdict, exit_code=EXIT_CODES[verdict], reasons=reasons),  # type: ignore[arg-type]
        **kw,
    )


def pass_run() -> RunResult:
    cases = [case(f"reg-{i:03d}") for i in range(1, 5)]
    cases.append(
        case(
            "reg-005",
            metrics={"similarity": 0.81, "faithfulness": 0.62, "hallucination": 1.0},
            hallucinated=True,
            unsupported_claims=["Refunds are instant for gold members"],
            output="Refunds take 5 days, and are instant for gold members.",
        )
    )
    return run(
        "PASS",
        ["all gated aggregates pass"],
        cases,
        suites=["regression"],
        aggregates=[
            agg(
                "similarity",
                "regression",
                0.912,
                0.881,
                0.94,
                threshold=0.8,
                direction="min",
                status="pass",
                method="bootstrap",
            ),
            agg(
                "hallucination_rate",
                "regression",
                0.05,
                0.009,
                0.236,
                threshold=0.1,
                direction="max",
                status="pass",
                method="wilson",
            ),
        ],
        hallucinations=[
            {"case_id": "reg-005", "unsupported_claims": ["Refunds are instant for gold members"]},
        ],
        unscored={"count": 0, "total": 5, "rate": 0.0, "budget": 0.05},
        usage=Usage(model_calls=15, cache_hits=5, input_tokens=12000, output_tokens=3400, cost_usd=0.0421),
    )


def fail_run() -> RunResult:
    cases = [
        case("reg-001"),
        case(
            "reg-002",
            status="fail",
            metrics={"similarity": 0.42, "faithfulness": 0.3, "hallucination": 0.0},
            failures=["similarity 0.42 < 0.70", "faithfulness 0.30 < 0.80"],
            output="Totally | unrelated\nanswer about **shipping**",
            metric_reasons={"faithfulness": "the answer invents a shipping policy"},
        ),
        case(
            "reg-003",
            status="unscored",
            metrics={"similarity": 0.88, "faithfulness": None},
            metric_reasons={"faithfulness": "judge returned unparseable output"},
        ),
        case(
            "inj-001",
            suite="injection",
            category="indirect",
            status="fail",
            metrics={"injection_success": 1.0},
            failures=["injection_success: the canary leaked \x1b[0m"],
            output=f"Sure! {SCRIPT} {IMG} [click](http://evil.example) \x1b[31m\x00",
        ),
        case(
            "grd-001",
            suite="guardrail",
            category="self-harm",
            status="error",
            metrics={},
            output=None,
            generations=[Generation(case_id="grd-001", error="ThrottlingException after 5 retries")],
        ),
    ]
    return run(
        "FAIL",
        ["regression.similarity 0.70 [0.61, 0.78] is below 0.80", "injection.injection_success_rate 1.00 > 0.00"],
        cases,
        aggregates=[
            agg("similarity", "regression", 0.7, 0.61, 0.78, threshold=0.8, direction="min", status="fail", n=3),
            agg("faithfulness", "regression", 0.91, 0.88, 0.94, threshold=0.8, direction="min", status="pass"),
            agg(
                "injection_success_rate",
                "injection",
                1.0,
                0.21,
                1.0,
                threshold=0.0,
                direction="max",
                status="fail",
                n=1,
            ),
            agg(
                "relevance",
                "regression",
                None,
                None,
                None,
                threshold=0.7,
                direction="min",
                status="not_run",
                note="needs the Bedrock judge",
            ),
            agg("p95_latency_ms", "regression", 1450.0, None, None),
        ],
        not_run=[{"metric": "relevance", "reason": "needs the Bedrock judge (offline tier)"}],
        comparisons=[
            Comparison(
                metric="similarity",
                suite="regression",
                n_paired=3,
                baseline=0.9,
                candidate=0.7,
                diff=-0.2,
                ci_low=-0.31,
                ci_high=-0.09,
                worse=True,
                exceeds=True,
            ),
        ],
        baseline={"path": "baseline/results.json", "run_id": "run-approved"},
        drift=Drift(score=0.021, ci_low=0.004, ci_high=0.038, raw=0.09, noise=None, noise_measured=False, n_paired=3),
        unscored={"count": 1, "total": 5, "rate": 0.2, "budget": 0.05},
    )


def review_run() -> RunResult:
    return run(
        "REVIEW",
        ["answers drifted: drift 0.08 [0.05, 0.11] above 0.05 with no quality loss"],
        [case("reg-001"), case("reg-002")],
        suites=["regression"],
        drift=Drift(
            score=0.08,
            ci_low=0.05,
            ci_high=0.11,
            noise=0.02,
            noise_measured=True,
            significant=True,
            review=True,
            n_paired=2,
        ),
    )


def error_run() -> RunResult:
    return run("ERROR", ["unscored 40% exceeds the 5% budget"], [case("reg-001")], suites=["regression"])


# --------------------------------------------------------------------------------------------------- junit


def parse_junit(result: RunResult) -> ET.Element:
    return ET.fromstring(junit.render_junit(result).encode("utf-8"))


def find_testcase(root: ET.Element, classname: str, name: str) -> ET.Element:
    found = [tc for tc in root.iter("testcase") if tc.get("classname") == classname and tc.get("name") == name]
    assert len(found) == 1, f"expected one testcase {classname} / {name}, found {len(found)}"
    return found[0]


def test_junit_parses_with_one_testsuite_per_suite_plus_gate() -> None:
    root = parse_junit(fail_run())
    assert root.tag == "testsuites"
    assert [s.get("name") for s in root.findall("testsuite")] == ["regression", "guardrail", "injection", "gate"]
    assert find_testcase(root, "evalgate.regression.billing", "reg-002") is not None
    assert find_testcase(root, "evalgate.injection.indirect", "inj-001") is not None


def test_junit_counts_match_the_testcases() -> None:
    root = parse_junit(fail_run())
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        assert int(suite.get("tests", "-1")) == len(cases)
        for kind, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            found = sum(tc.find(kind) is not None for tc in cases)
            assert int(suite.get(attr, "-1")) == found, (suite.get("name"), kind)
    regression = root.find("testsuite[@name='regression']")
    assert regression is not None
    assert (regression.get("tests"), regression.get("failures"), regression.get("errors")) == ("3", "1", "1")
    assert int(root.get("tests", "0")) == len(list(root.iter("testcase")))
    assert int(root.get("failures", "0")) == len(list(root.iter("failure")))
    assert int(root.get("errors", "0")) == len(list(root.iter("error")))


def test_junit_failure_carries_first_reason_all_reasons_and_metric_values() -> None:
    failure = find_testcase(parse_junit(fail_run()), "evalgate.regression.billing", "reg-002").find("failure")
    assert failure is not None
    assert failure.get("type") == "QualityGate"
    assert failure.get("message") == "similarity 0.42 < 0.70"
    body = failure.text or ""
    assert "faithfulness 0.30 < 0.80" in body
    assert "similarity = 0.42" in body
    assert "the answer invents a shipping policy" in body


def test_junit_unscored_case_is_an_error_never_a_pass() -> None:
    tc = find_testcase(parse_junit(fail_run()), "evalgate.regression.billing", "reg-003")
    assert tc.find("failure") is None
    error = tc.find("error")
    assert error is not None
    assert error.get("type") == "Unscored"
    assert "judge returned unparseable output" in (error.get("message") or "")


def test_junit_errored_case_is_an_error_with_the_provider_message() -> None:
    error = find_testcase(parse_junit(fail_run()), "evalgate.guardrail.self-harm", "grd-001").find("error")
    assert error is not None
    assert error.get("type") != "Unscored"
    assert "ThrottlingException" in (error.get("message") or "")


def test_junit_gate_testcases_follow_aggregate_status() -> None:
    root = parse_junit(fail_run())
    sim = find_testcase(root, "evalgate.gate", "regression.similarity").find("failure")
    assert sim is not None and "0.70 [0.61, 0.78]" in (sim.get("message") or "")
    passing = find_testcase(root, "evalgate.gate", "regression.faithfulness")
    assert passing.find("failure") is None and passing.find("error") is None
    skipped = find_testcase(root, "evalgate.gate", "regression.relevance").find("skipped")
    assert skipped is not None and "needs the Bedrock judge" in (skipped.get("message") or "")
    names = [tc.get("name") for tc in root.iter("testcase") if tc.get("classname") == "evalgate.gate"]
    assert "regression.p95_latency_ms" not in names  # not gated: no testcase


@pytest.mark.parametrize(
    ("builder", "kind", "type_"),
    [
        (pass_run, None, None),
        (fail_run, "failure", "QualityGate"),
        (review_run, "failure", "NeedsReview"),
        (error_run, "error", "RunError"),
    ],
)
def test_junit_verdict_testcase_fails_unless_pass(builder: Any, kind: str | None, type_: str | None) -> None:
    result = builder()
    tc = find_testcase(parse_junit(result), "evalgate.gate", "verdict")
    outcomes = [child.tag for child in tc if child.tag in ("failure", "error", "skipped")]
    assert outcomes == ([kind] if kind else [])
    if kind:
        assert tc.find(kind).get("type") == type_  # type: ignore[union-attr]
    system_out = tc.findtext("system-out") or ""
    assert all(r in system_out for r in result.verdict.reasons)


def test_junit_survives_markup_and_control_characters_in_answers() -> None:
    text = junit.render_junit(fail_run())
    assert "\x1b" not in text and "\x00" not in text
    body = find_testcase(ET.fromstring(text), "evalgate.injection.indirect", "inj-001").findtext("failure") or ""
    assert SCRIPT in body  # escaped in the file, intact once parsed
    assert "<script>" not in text


# --------------------------------------------------------------------------------------------------- markdown


def test_summary_starts_with_the_verdict_and_exit_code_then_why() -> None:
    md = markdown.render_markdown(fail_run())
    first = md.splitlines()[0]
    assert first.startswith("# ") and "FAIL" in first and "exit code 1" in first
    why = md.split("## Why", 1)[1]
    assert "- regression.similarity 0.70 [0.61, 0.78] is below 0.80" in why.split("\n## ", 1)[0]
    assert markdown.render_markdown(review_run()).splitlines()[0].endswith("REVIEW — exit code 3")


def test_summary_shows_aggregates_with_confidence_intervals_and_thresholds() -> None:
    md = markdown.render_markdown(pass_run())
    row = next(line for line in md.splitlines() if line.startswith("| `similarity`"))
    assert "0.91 [0.88, 0.94]" in row and "≥ 0.80" in row and "pass" in row
    hall = next(line for line in md.splitlines() if line.startswith("| `hallucination_rate`"))
    assert "0.05 [0.01, 0.24]" in hall and "≤ 0.10" in hall


def test_summary_lists_hallucinations_even_when_the_run_passed() -> None:
    md = markdown.render_markdown(pass_run())
    assert "## Hallucinations found (review even though the run passed)" in md
    section = md.split("## Hallucinations found", 1)[1].split("\n## ", 1)[0]
    assert "`reg-005`" in section and "Refunds are instant for gold members" in section


def test_summary_worst_cases_escape_pipes_and_markup() -> None:
    md = markdown.render_markdown(fail_run())
    table = md.split("## Worst cases", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 4  # two failed, one errored, one unscored
    header_cells = len(re.split(r"(?<!\\)\|", table.splitlines()[2]))
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) == header_cells, row
    assert "Totally \\| unrelated answer about **shipping**" in table
    assert re.search(r"(?<!\\)<(script|img)", md) is None and "\\<script>" in md
    assert "[click](http" not in md and "[click]\\(http" in md
    assert "\x1b" not in md and "\x00" not in md
    # failed before errored before unscored
    assert [r.split("`")[1] for r in rows] == ["inj-001", "reg-002", "grd-001", "reg-003"]


def test_worst_cases_are_capped_at_five_and_ordered_by_the_failing_metric() -> None:
    result = fail_run()
    result.cases += [
        case(f"reg-1{i}", status="fail", metrics={"similarity": s}, failures=[f"similarity {s} < 0.70"])
        for i, s in enumerate([0.6, 0.1, 0.5, 0.3, 0.65])
    ]
    worst = worst_cases(result)
    assert len(worst) == 5
    assert [c.id for c in worst] == ["inj-001", "reg-11", "reg-13", "reg-002", "reg-12"]
    table = markdown.render_markdown(result).split("## Worst cases (5 of 9 not passing)", 1)[1].split("\n## ", 1)[0]
    assert [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")] == [c.id for c in worst]


def test_summary_reports_unscored_against_budget_not_run_drift_and_comparisons() -> None:
    md = markdown.render_markdown(fail_run())
    assert "1 of 5 cases unscored (20.0%); budget 5.0% → **over budget**" in md
    assert "`relevance`: needs the Bedrock judge (offline tier)" in md
    comparison = next(line for line in md.splitlines() if line.startswith("| `similarity` | regression | 3"))
    assert "-0.20 [-0.31, -0.09]" in comparison and "exceeds max regression" in comparison
    assert "0.021 [0.004, 0.038]" in md and "NOT measured" in md


def test_summary_shows_usage_and_identities() -> None:
    md = markdown.render_markdown(pass_run())
    assert "| 15 | 5 | 12,000 | 3,400 | $0.0421 |" in md
    assert "us.anthropic.claude-3-5-haiku" in md and "all-MiniLM-L6-v2" in md


# --------------------------------------------------------------------------------------------------- html


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse_html(text: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Collector()
    parser.feed(text)
    return parser.tags


def test_html_is_self_contained() -> None:
    page = html_report.render_html(fail_run(), baseline=pass_run())
    tags = parse_html(page)
    assert not [t for t, _ in tags if t in ("link", "iframe", "object", "embed", "img")]
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{}]  # one inline script (the case explorer), nothing loaded
    inline = page.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page  # the CSP allows exactly that script
    for tag, attrs in tags:
        assert not (attrs.get("src") or "").startswith(("http:", "https:", "//")), tag
        href = attrs.get("href") or ""
        assert not href.startswith(("http:", "//")), href
        if href.startswith("https:"):
            assert tag == "a" and href == CONSOLE_URL  # the only link is the console link the result carries
    assert INSECURE_URL in page  # shown as text, never as a link
    assert "@import" not in page and "url(" not in page
    assert any(t == "style" for t, _ in tags)
    assert 'http-equiv="Content-Security-Policy"' in page


def test_html_escapes_injected_markup_in_answers() -> None:
    page = html_report.render_html(fail_run())
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in page
    assert page.lower().count("<script") == 1  # only the explorer's own
    assert "\x1b" not in page and "\x00" not in page
    tags = parse_html(page)
    assert [t for t, _ in tags if t in ("script", "img")] == ["script"]
    assert not [a for _, a in tags if any(k.startswith("on") for k in a)]


def test_html_has_one_svg_per_distribution_chart_with_baseline_overlay() -> None:
    result = fail_run()
    metrics = {"similarity", "faithfulness"}  # 0/1 metrics (hallucination, injection) are rates, not histograms
    with_baseline = parse_html(html_report.render_html(result, baseline=pass_run()))
    charts = [a for t, a in with_baseline if t == "svg" and a.get("class") == "dist-chart"]
    figures = [a for t, a in with_baseline if t == "figure" and a.get("class") == "dist"]
    assert len(charts) == len(figures) == len(metrics)
    assert any(a.get("class") == "bar-baseline" for t, a in with_baseline if t == "rect")

    alone = parse_html(html_report.render_html(result))
    assert len([a for t, a in alone if t == "svg" and a.get("class") == "dist-chart"]) == len(metrics)
    assert not any(a.get("class") == "bar-baseline" for t, a in alone if t == "rect")


def test_html_banner_reasons_whiskers_and_case_details() -> None:
    result = fail_run()
    page = html_report.render_html(result)
    tags = parse_html(page)
    assert 'class="banner verdict-fail"' in page and html_report.VERDICT_COLOURS["FAIL"] in page
    assert "regression.similarity 0.70 [0.61, 0.78] is below 0.80" in page
    with_value = [a for a in result.aggregates if a.value is not None]
    whiskers = [a for t, a in tags if t == "svg" and a.get("class") == "ci-chart"]
    assert len(whiskers) == len(with_value) + len(result.comparisons) + 1  # + drift
    assert sum(t == "details" and a.get("class") == "xcase" for t, a in tags) == len(result.cases)
    assert "the answer invents a shipping policy" in page
    assert "needs the Bedrock judge (offline tier)" in page


def test_html_case_details_show_the_time_to_first_token_when_measured() -> None:
    cases = [case("reg-001", ttft_ms=412.0, latency_ms=2310.0), case("reg-002")]
    result = run("PASS", [], cases, suites=["regression"])
    page = html_report.render_html(result)
    assert "first token 412 ms · latency 2310 ms" in page
    assert page.count("first token") == 1  # a case without a measured TTFT shows none


def test_hallucinated_cases_are_listed_even_when_the_run_record_list_misses_them() -> None:
    result = fail_run()
    result.cases.append(
        case("reg-009", hallucinated=True, unsupported_claims=["We ship to Mars"], metrics={"hallucination": 1.0})
    )
    md = markdown.render_markdown(result)
    assert "## Hallucinations found — 1" in md and "We ship to Mars" in md
    assert "We ship to Mars" in html_report.render_html(result)


def test_no_hallucinations_is_not_claimed_when_hallucination_was_not_checked() -> None:
    offline = run(
        "PASS",
        ["similarity passes"],
        [case("reg-001", metrics={"similarity": 0.9})],
        tier="offline",
        not_run=[{"metric": "hallucination_rate", "reason": "needs the Bedrock judge"}],
    )
    assert "Hallucinations: not checked in this tier" in markdown.render_markdown(offline)
    assert "not checked in this tier" in html_report.render_html(offline)
    assert "Hallucinations: none detected." in markdown.render_markdown(fail_run())


def test_html_svgs_are_well_formed() -> None:
    page = html_report.render_html(fail_run(), baseline=pass_run())
    svgs = re.findall(r"<svg\b.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 4
    for svg in svgs:
        ET.fromstring(svg)


def test_html_lists_hallucinations_on_a_passing_run() -> None:
    page = html_report.render_html(pass_run())
    assert "Hallucinations found (review even though the run passed)" in page
    assert "Refunds are instant for gold members" in page
    assert 'href="#case-reg-005"' in page and 'id="case-reg-005"' in page


# --------------------------------------------------------------------------------------------------- write_reports


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_write_reports_writes_every_report_and_creates_out_dir(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "out"
    result = fail_run()
    paths = write_reports(result, out, baseline=pass_run())
    assert set(paths) == set(REPORT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES.values())
    assert RunResult.model_validate_json(paths["json"].read_text(encoding="utf-8")) == result
    ET.parse(paths["junit"])
    assert paths["markdown"].read_text(encoding="utf-8").startswith("# ❌ FAIL")
    assert paths["html"].read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["out"]  # no temp dir left


def test_write_reports_leaves_nothing_when_a_renderer_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    write_reports(pass_run(), out)
    before = snapshot(out)

    def boom(*_: Any, **__: Any) -> str:
        raise RuntimeError("renderer broke")

    monkeypatch.setattr(html_report, "render_html", boom)
    with pytest.raises(RuntimeError, match="renderer broke"):
        write_reports(fail_run(), out)
    assert snapshot(out) == before  # no new files, old report set untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dir left

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        write_reports(fail_run(), fresh)
    assert not fresh.exists() or not list(fresh.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(reports.TEMP_PREFIX)) == []


def test_write_reports_restores_previous_set_when_a_move_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    write_reports(pass_run(), out)
    before = snapshot(out)
    real_replace = os.replace
    moves: list[str] = []

    def flaky_replace(src: Any, dst: Any) -> None:
        if Path(dst).parent == out and Path(src).parent.name == "new":
            moves.append(Path(dst).name)
            if len(moves) == 3:
                raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        write_reports(fail_run(), out)
    assert len(moves) == 3
    assert snapshot(out) == before  # the two files already moved were rolled back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ------------------------------------------------------------------------------ guardrail grounding vs the judge


def grounded_run(guardrail_threshold: float | None = None) -> RunResult:
    """Six answers scored by both (guardrail_grounding, faithfulness), plus two that only one side scored."""
    pairs = {
        "g-a": (0.9, 0.95),
        "g-b": (0.8, 0.9),
        "g-c": (0.3, 0.5),
        "g-d": (0.2, 0.95),
        "g-e": (0.95, 0.6),
        "g-f": (0.85, 0.92),
    }
    cases = []
    for cid, (g, j) in pairs.items():
        c = case(cid, metrics={"faithfulness": j, "guardrail_grounding": g})
        c.metrics["guardrail_grounding"].details = {"threshold": 0.75, "action": "NONE" if g >= 0.75 else "BLOCKED"}
        cases.append(c)
    cases.append(case("g-unscored", metrics={"faithfulness": 0.9, "guardrail_grounding": None}))
    cases.append(case("g-unjudged", metrics={"faithfulness": None, "guardrail_grounding": 0.9}))
    aggregates = [
        agg("faithfulness", "regression", 0.8, 0.6, 0.9, threshold=0.85, direction="min", status="fail"),
        agg(
            "guardrail_grounding",
            "regression",
            0.67,
            0.4,
            0.85,
            threshold=guardrail_threshold,
            direction="min",
            status="not_gated" if guardrail_threshold is None else "fail",
        ),
    ]
    return run("FAIL", ["faithfulness below threshold"], cases, suites=["regression"], aggregates=aggregates)


def test_grounding_agreement_counts_both_sides_with_kappa_and_rank_correlation() -> None:
    from evalgate.reports.common import grounding_agreement

    [a] = grounding_agreement(grounded_run())
    assert (a.guardrail_metric, a.judge_metric, a.n) == ("guardrail_grounding", "faithfulness", 6)
    assert (a.both_pass, a.both_fail) == (3, 1) and a.agreement == pytest.approx(4 / 6)
    assert [(d.case_id, d.failed_by) for d in a.disagreements] == [("g-d", "guardrail"), ("g-e", "judge")]
    # Cohen's kappa on fail/fail: observed 4/6, chance 5/9 -> (2/3 - 5/9) / (4/9) = 0.25
    assert a.kappa == pytest.approx(0.25)
    # Spearman on the scores (ranks by hand: ties share the mean rank): -1.5 / sqrt(17.5 * 17)
    assert a.spearman == pytest.approx(-1.5 / (17.5 * 17) ** 0.5)
    assert a.guardrail_threshold == "the guardrail's own threshold 0.75"


def test_grounding_agreement_uses_the_gates_threshold_when_one_is_set() -> None:
    from evalgate.reports.common import grounding_agreement

    [a] = grounding_agreement(grounded_run(guardrail_threshold=0.9))
    # the guardrail passes only g-a (0.9) and g-e (0.95) now
    assert (a.both_pass, a.both_fail) == (1, 1)
    assert sorted(d.case_id for d in a.disagreements) == ["g-b", "g-d", "g-e", "g-f"]
    assert a.guardrail_threshold == "the gate's threshold"


def test_grounding_section_links_each_disagreement_and_is_absent_without_guardrail_scores() -> None:
    md = markdown.render_markdown(grounded_run())
    assert "## Guardrail grounding vs the judge" in md
    assert "4 of 6 answers on the same side of their thresholds (66.7%: 3 both pass, 1 both fail)" in md
    assert "Cohen's kappa 0.25; Spearman's rho -0.09" in md
    assert "[`g-d`](report.html#case-g-d): guardrail_grounding 0.20 fails, faithfulness 0.95 passes" in md
    assert "[`g-e`](report.html#case-g-e): guardrail_grounding 0.95 passes, faithfulness 0.60 fails" in md
    page = html_report.render_html(grounded_run())
    assert '<a href="#case-g-d">g-d</a>: guardrail_grounding 0.20 fails, faithfulness 0.95 passes' in page
    assert "Guardrail grounding vs the judge" not in markdown.render_markdown(pass_run())
    assert "Guardrail grounding vs the judge" not in html_report.render_html(pass_run())


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["Returns", "30 days", "RETURNS", "<b>", "it's", "İstanbul", "ß", "K", "mark", " "])),
    st.lists(st.text(alphabet="Rrsetun 30dayİıKk'<>ß", min_size=0, max_size=12), max_size=4),
)
def test_claims_are_marked_wherever_a_case_insensitive_search_finds_them(words: list[str], claims: list[str]):
    from evalgate.reports.explorer import esc, highlight_claims

    answer = esc(" ".join(words))
    expected = answer
    for claim in sorted({c.strip() for c in claims if len(c.strip()) >= 4}, key=len, reverse=True):
        pattern = re.compile(re.escape(esc(claim)), re.IGNORECASE)
        expected = pattern.sub(lambda m: f'<mark class="claim">{m.group(0)}</mark>', expected)
    assert highlight_claims(answer, claims) == expected
