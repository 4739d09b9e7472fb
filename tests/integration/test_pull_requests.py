"""Verdicts where people work: the pull-request comment and status (GitHub stand-in, CodeCommit via Stubber),
the fork guard, and tickets for known errors (OpsCenter via Stubber, GitHub issues via the stand-in)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from evalgate.adapters.github import GitHubClient, GitHubError, token_from_secret
from evalgate.cli import main
from evalgate.core.models import MetricValue
from evalgate.core.results import CaseResult, RunResult, Usage, Verdict
from evalgate.release.pull_request import post_codecommit
from evalgate.release.tickets import GitHubTickets, OpsCenterTickets, apply_ticket_report, findings, raise_tickets
from evalgate.reports.pr_comment import MARKER, render_comment
from tests.fakes.github_fake import REPO, GitHubFake, Scripted

SHA = "a" * 40
EXIT = {"PASS": 0, "FAIL": 1, "REVIEW": 3, "ERROR": 4}


def case(cid: str, status: str = "pass", answer: str = "An answer.", **kw: Any) -> CaseResult:
    return CaseResult(
        id=cid,
        suite="regression",
        category=kw.pop("category", "returns"),
        expected="answer",
        question=f"question of {cid}?",
        output=answer,
        status=status,
        **kw,
    )  # type: ignore[arg-type]


def result(verdict: str, cases: list[CaseResult], reasons: list[str] | None = None) -> RunResult:
    return RunResult(
        run_id="run-1",
        started_at="2026-12-05T10:00:00Z",
        finished_at="2026-12-05T10:01:00Z",
        tool_version="0.1.0",
        tier="auto",
        suites=["regression"],
        candidate={"name": "bedrock"},
        cases=cases,
        commit=SHA,
        usage=Usage(model_calls=12, cache_hits=30, cost_usd=0.0421),
        verdict=Verdict(verdict=verdict, exit_code=EXIT[verdict], reasons=reasons or [f"{verdict} because"]),  # type: ignore[arg-type]
    )


def hallucinating(cid: str = "ret-window", high_stakes: bool = False) -> CaseResult:
    return case(
        cid,
        "pass",
        "You have 60 days.",
        hallucinated=True,
        unsupported_claims=["60 days"],
        tags=["high_stakes"] if high_stakes else [],
    )


# ------------------------------------------------------------------------------------------------ comment


@pytest.mark.parametrize("verdict", ["PASS", "FAIL", "REVIEW", "ERROR"])
def test_comment_says_the_verdict_in_words(verdict: str):
    body = render_comment(result(verdict, [case("a")]), report_url="https://example.com/r.html")
    assert body.startswith(MARKER)
    words = {
        "PASS": "passes the quality gate",
        "FAIL": "fails the quality gate",
        "REVIEW": "needs a person's review",
        "ERROR": "could not be evaluated",
    }
    assert f"evalgate: {verdict} — this change {words[verdict]}" in body
    assert "cost $0.0421 (12 model calls, 30 from cache)" in body and "Full report: https://example.com/r.html" in body


def test_comment_shows_regressions_with_baseline_and_candidate_answers_escaped():
    base = result("PASS", [case("a", answer="Within 30 days of delivery."), case("b", "fail"), case("c")])
    cand = result(
        "FAIL",
        [
            case(
                "a", "fail", answer="Within 60 days | [click](http://evil.example)", failures=["similarity 0.41 < 0.72"]
            ),
            case("b", "pass"),
            case("c"),
        ],
    )
    body = render_comment(cand, base)
    assert "Against the approved baseline: **1** case(s) now fail, 1 fixed." in body
    assert "pass → fail" in body and "Within 30 days of delivery." in body
    assert "\\|" in body and "](http" not in body  # a pipe can't break the table; no link from model output


# ------------------------------------------------------------------------------------------------ GitHub


def write_results(tmp_path: Path, r: RunResult) -> Path:
    p = tmp_path / "results.json"
    p.write_text(r.model_dump_json())
    return p


def test_one_comment_updated_in_place_and_a_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with GitHubFake(token="t0k") as gh:
        gh.add_pull(7, SHA)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "t0k")
        args = ["comment", "--post", "github", "--repo", REPO, "--pr", "auto", "--report-url", "https://r.example/x"]
        assert main([*args, "--results", str(write_results(tmp_path, result("FAIL", [case("a", "fail")])))]) == 0
        assert main([*args, "--results", str(write_results(tmp_path, result("PASS", [case("a")])))]) == 0
        assert len(gh.comments[7]) == 1 and "evalgate: PASS" in gh.comments[7][0]["body"]
        assert [s["state"] for s in gh.statuses] == ["failure", "success"]
        assert gh.statuses[-1]["context"] == "evalgate" and gh.statuses[-1]["target_url"] == "https://r.example/x"
        assert all(h.get("Authorization") == "Bearer t0k" for _, _, h in gh.requests)


def test_rate_limits_and_server_errors_are_waited_out(tmp_path: Path):
    waits: list[float] = []
    with GitHubFake(token="t") as gh:
        gh.add_pull(3, SHA)
        gh.script.extend(
            [
                Scripted(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1005"}, "API rate limit exceeded"),
                Scripted(429, {"Retry-After": "7"}),
                Scripted(502),
            ]
        )
        client = GitHubClient(REPO, "t", api_url=gh.url, sleep=waits.append, clock=lambda: 1000.0)
        assert client.pulls_for_commit(SHA)[0]["number"] == 3
    # the one retry policy's back-off: at least what GitHub asked for, else full jitter (attempt 3: under 0.4 s)
    assert waits[:2] == [5.0, 7.0] and len(waits) == 3 and 0.0 <= waits[2] < 0.4


def test_a_wait_beyond_the_time_budget_is_not_slept_but_reported():
    waits: list[float] = []
    with GitHubFake(token="t") as gh:
        gh.add_pull(3, SHA)
        gh.script.append(Scripted(429, {"Retry-After": "3600"}, "secondary rate limit"))
        client = GitHubClient(REPO, "t", api_url=gh.url, sleep=waits.append, time_budget_s=60.0)
        with pytest.raises(GitHubError, match="GitHub API 429: secondary rate limit"):
            client.pulls_for_commit(SHA)
    assert waits == []  # an hour's wait would cross the budget: given up at once, nothing half-waited


def test_refused_token_is_a_log_line_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    with GitHubFake(token="right") as gh:
        gh.add_pull(7, SHA)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "wrong")
        code = main(
            [
                "comment",
                "--post",
                "github",
                "--repo",
                REPO,
                "--pr",
                "7",
                "--results",
                str(write_results(tmp_path, result("PASS", [case("a")]))),
            ]
        )
    assert code == 0
    out = capsys.readouterr().out
    assert "could not set the commit status: GitHub API 401: Bad credentials" in out
    assert "could not post the pull-request comment: GitHub API 401" in out
    assert "wrong" not in out  # the token never appears in a log


def test_missing_token_is_an_input_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    code = main(
        [
            "comment",
            "--post",
            "github",
            "--repo",
            REPO,
            "--pr",
            "7",
            "--results",
            str(write_results(tmp_path, result("PASS", [case("a")]))),
        ]
    )
    assert code == 2 and "no GitHub token" in capsys.readouterr().err


def test_token_read_from_secrets_manager_plain_or_json():
    with mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-east-1")
        sm.create_secret(Name="plain", SecretString="ghp_plain\n")
        sm.create_secret(Name="json", SecretString=json.dumps({"token": "ghp_json"}))
        assert token_from_secret("plain", sm) == "ghp_plain"
        assert token_from_secret("json", sm) == "ghp_json"


@pytest.mark.parametrize(("fork", "allow", "code"), [(False, False, 0), (True, False, 2), (True, True, 0)])
def test_pull_requests_from_forks_are_refused_unless_allowed(
    fork: bool, allow: bool, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    with GitHubFake(token="t") as gh:
        gh.add_pull(9, SHA, fork=fork)
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "t")
        args = ["pr-context", "--repo", REPO, "--commit", SHA] + (["--allow-forks"] if allow else [])
        assert main(args) == code
    out = capsys.readouterr()
    if code == 0:
        assert "PR_NUMBER=9\nPR_BASE=main" in out.out
    else:
        assert "comes from a fork" in out.err


def test_no_open_pull_request_for_the_commit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    with GitHubFake(token="t") as gh:
        gh.add_pull(4, SHA, state="closed")
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        monkeypatch.setenv("GITHUB_TOKEN", "t")
        assert main(["pr-context", "--repo", REPO, "--commit", SHA]) == 2
    assert "no open pull request" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ CodeCommit


def test_codecommit_comment_is_found_by_marker_and_updated():
    cc = boto3.client("codecommit", region_name="us-east-1")
    with Stubber(cc) as stub:
        stub.add_response(
            "get_comments_for_pull_request",
            {
                "commentsForPullRequestData": [
                    {
                        "comments": [
                            {"commentId": "c-other", "content": "LGTM"},
                            {"commentId": "c-ours", "content": MARKER},
                        ]
                    }
                ]
            },
            {"pullRequestId": "12", "repositoryName": "svc"},
        )
        stub.add_response(
            "update_comment", {"comment": {"commentId": "c-ours"}}, {"commentId": "c-ours", "content": ANY}
        )
        lines = post_codecommit(
            cc, MARKER + "\nnew", repository="svc", pull_request_id="12", before_commit="b" * 40, after_commit=SHA
        )
        stub.assert_no_pending_responses()
    assert lines == ["comment c-ours updated on pull request 12"]


def test_codecommit_comment_created_once_and_failures_logged():
    cc = boto3.client("codecommit", region_name="us-east-1")
    with Stubber(cc) as stub:
        stub.add_response(
            "get_comments_for_pull_request",
            {"commentsForPullRequestData": []},
            {"pullRequestId": "12", "repositoryName": "svc"},
        )
        stub.add_response(
            "post_comment_for_pull_request",
            {"comment": {"commentId": "c-new"}},
            {
                "pullRequestId": "12",
                "repositoryName": "svc",
                "beforeCommitId": "b" * 40,
                "afterCommitId": SHA,
                "content": ANY,
                "clientRequestToken": ANY,
            },
        )
        stub.add_client_error("get_comments_for_pull_request", "PullRequestDoesNotExistException", "no such PR")
        assert post_codecommit(
            cc, MARKER + "x" * 20_000, repository="svc", pull_request_id="12", before_commit="b" * 40, after_commit=SHA
        ) == ["comment c-new created on pull request 12"]
        lines = post_codecommit(
            cc, MARKER, repository="svc", pull_request_id="12", before_commit="b" * 40, after_commit=SHA
        )
    assert lines[0].startswith("could not post the pull-request comment: PullRequestDoesNotExistException")


# ------------------------------------------------------------------------------------------------ tickets


def test_findings_are_hallucinations_and_injection_leaks_with_stable_keys():
    leak = case(
        "inj-1",
        "pass",
        metrics={
            "injection_success": MetricValue(name="injection_success", value=1.0, reason="leaked canary CANARY-1")
        },
    )
    r = result("PASS", [hallucinating(high_stakes=True), leak, case("fine")])
    fs = findings(r)
    assert [(f.kind, f.case_id, f.high_stakes) for f in fs] == [
        ("hallucination", "ret-window", True),
        ("injection_leak", "inj-1", True),
    ]
    assert fs[0].key == findings(r)[0].key and fs[0].key != fs[1].key


def describe(key: str, items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"OpsItemSummaries": items}, {
        "OpsItemFilters": [
            {
                "Key": "OperationalData",
                "Values": [json.dumps({"key": "/evalgate/finding", "value": key})],
                "Operator": "Equal",
            },
            {"Key": "Status", "Values": ["Open", "InProgress"], "Operator": "Equal"},
        ],
        "MaxResults": 5,
    }


def test_opscenter_opens_one_ticket_per_finding_and_counts_reruns():
    r = result("PASS", [hallucinating()])
    key = findings(r)[0].key
    ssm = boto3.client("ssm", region_name="us-east-1")
    sink = OpsCenterTickets(ssm)
    with Stubber(ssm) as stub:
        stub.add_response("describe_ops_items", *describe(key, []))
        stub.add_response(
            "create_ops_item",
            {"OpsItemId": "oi-1"},
            {
                "Title": "Hallucination in case ret-window",
                "Description": ANY,
                "Source": "evalgate",
                "Category": "Quality",
                "Severity": "3",
                "OperationalData": ANY,
            },
        )
        stub.add_response("describe_ops_items", {"OpsItemSummaries": []})  # open high-stakes count
        first = raise_tickets(r, sink, {"commit": SHA})
        stub.add_response(
            "describe_ops_items",
            *describe(
                key, [{"OpsItemId": "oi-1", "OperationalData": {"/evalgate/count": {"Value": "1", "Type": "String"}}}]
            ),
        )
        stub.add_response(
            "update_ops_item",
            {},
            {
                "OpsItemId": "oi-1",
                "OperationalData": {"/evalgate/count": {"Value": "2", "Type": "String"}},
            },
        )
        stub.add_response("describe_ops_items", {"OpsItemSummaries": []})
        second = raise_tickets(r, sink, {"commit": SHA})
        stub.assert_no_pending_responses()
    assert [t.as_dict()["created"] for t in first.tickets + second.tickets] == [True, False]
    assert second.tickets[0].count == 2 and second.tickets[0].id == "oi-1"


def test_create_ops_item_carries_the_native_dedup_string():
    r = result("PASS", [hallucinating()])
    ssm = boto3.client("ssm", region_name="us-east-1")
    sent: dict[str, Any] = {}

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.update(params)

    ssm.meta.events.register("provide-client-params.ssm.CreateOpsItem", capture)
    with Stubber(ssm) as stub:
        stub.add_response("describe_ops_items", *describe(findings(r)[0].key, []))
        stub.add_response("create_ops_item", {"OpsItemId": "oi-9"})
        OpsCenterTickets(ssm).open(findings(r)[0], {"commit": SHA, "report": "https://r.example"})
    data = sent["OperationalData"]
    assert json.loads(data["/aws/dedup"]["Value"]) == {"dedupString": f"evalgate:{findings(r)[0].key}"}
    assert data["/evalgate/commit"]["Value"] == SHA and data["/evalgate/detail"]["Value"] == "60 days"


def test_failing_runs_open_no_tickets_and_a_down_ticket_system_is_reported():
    class Down:
        name = "down"

        def open(self, finding: Any, context: dict[str, str]) -> Any:
            raise ConnectionError("refused")

        def open_high_stakes(self) -> int:
            raise ConnectionError("refused")

    assert raise_tickets(result("FAIL", [hallucinating()]), Down(), {}).tickets == []
    r = result("PASS", [hallucinating()])
    report = raise_tickets(r, Down(), {})
    apply_ticket_report(r, report, review_when_open_high_stakes=1)
    assert r.verdict.verdict == "REVIEW" and "could not be counted" in r.verdict.reasons[0]
    assert any("could not open a ticket in down" in w for w in r.warnings)


def test_open_high_stakes_tickets_turn_pass_into_review():
    from evalgate.release.tickets import TicketReport

    r = result("PASS", [case("a")])
    apply_ticket_report(r, TicketReport(open_high_stakes=2), review_when_open_high_stakes=2)
    assert (r.verdict.verdict, r.verdict.exit_code) == ("REVIEW", 3)
    assert r.verdict.reasons[0] == "2 high-stakes known-error ticket(s) are open (review at 2 or more)"
    ok = result("PASS", [case("a")])
    apply_ticket_report(ok, TicketReport(open_high_stakes=1), review_when_open_high_stakes=2)
    assert ok.verdict.verdict == "PASS"


def test_github_issues_one_per_finding_reruns_add_a_comment():
    r = result("PASS", [hallucinating(high_stakes=True), hallucinating("shp-cost")])
    with GitHubFake(token="t") as gh:
        sink = GitHubTickets(GitHubClient(REPO, "t", api_url=gh.url))
        first = raise_tickets(r, sink, {"commit": SHA})
        second = raise_tickets(r, sink, {"commit": "b" * 40})
        assert len(gh.issues) == 2
        assert [t.created for t in first.tickets] == [True, True] and [t.created for t in second.tickets] == [False] * 2
        assert second.tickets[0].count == 2 and first.open_high_stakes == 1
        assert "high-stakes" in [lb["name"] for lb in gh.issues[0]["labels"]]


def test_reports_list_the_tickets(tmp_path: Path):
    from evalgate.release.tickets import Ticket, TicketReport
    from evalgate.reports import write_reports

    r = result("PASS", [hallucinating()])
    t = Ticket("oi-7", "Hallucination in case ret-window", "k", created=False, count=3, high_stakes=False)
    apply_ticket_report(r, TicketReport(tickets=[t], open_high_stakes=0), review_when_open_high_stakes=None)
    write_reports(r, tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    assert "## Known errors (tickets)" in summary
    assert "Hallucination in case ret-window: oi-7 (already open, seen 3×)" in summary
    assert "oi-7" in (tmp_path / "report.html").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["tickets"][0]["id"] == "oi-7"
