"""Telling a pull request what the gate found: a commit status and one comment, updated in place on every push.

GitHub through its REST API (``providers.github``); CodeCommit through its pull-request comment API. Posting
never changes the verdict: every failure is returned as a log line with its reason, never raised.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from evalgate.adapters.github import GitHubClient, GitHubError
from evalgate.core.results import RunResult
from evalgate.reports.pr_comment import MARKER, render_comment, status_for

log = logging.getLogger(__name__)
CODECOMMIT_MAX_CHARS = 10_240  # CodeCommit refuses longer comments
STATUS_CONTEXT = "evalgate"


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    fork: bool
    base_branch: str


class NoPullRequest(Exception):
    """No open pull request has this commit as its head."""


def github_pull_request(client: GitHubClient, sha: str) -> PullRequestInfo:
    """The open pull request whose head is ``sha``, and whether it comes from a fork."""
    for pr in client.pulls_for_commit(sha):
        head, base = pr.get("head") or {}, pr.get("base") or {}
        if pr.get("state") == "open" and head.get("sha") == sha:
            head_repo = (head.get("repo") or {}).get("full_name")
            base_repo = (base.get("repo") or {}).get("full_name")
            return PullRequestInfo(int(pr["number"]), head_repo != base_repo, str(base.get("ref", "")))
    raise NoPullRequest(f"no open pull request in {client.repo} has {sha[:12]} as its head")


def post_github(
    client: GitHubClient,
    result: RunResult,
    comment: str,
    *,
    sha: str,
    number: int,
    report_url: str | None,
) -> list[str]:
    """Commit status and the one comment. Returns what happened, one line each; never raises."""
    lines: list[str] = []
    state, description = status_for(result)
    try:
        client.set_status(sha, state, description, report_url, STATUS_CONTEXT)
        lines.append(f"status {state} set on {sha[:12]}")
    except GitHubError as exc:
        lines.append(f"could not set the commit status: {exc}")
    try:
        how, cid = client.upsert_comment(number, comment, MARKER)
        lines.append(f"comment {cid} {how} on pull request #{number}")
    except GitHubError as exc:
        lines.append(f"could not post the pull-request comment: {exc}")
    return lines


def post_codecommit(
    client: Any,
    comment: str,
    *,
    repository: str,
    pull_request_id: str,
    before_commit: str,
    after_commit: str,
) -> list[str]:
    """The one comment on a CodeCommit pull request (found by its marker and updated). Never raises."""
    from botocore.exceptions import BotoCoreError, ClientError

    body = (
        comment if len(comment) <= CODECOMMIT_MAX_CHARS else comment[: CODECOMMIT_MAX_CHARS - 60] + "\n\n_(shortened)_"
    )
    try:
        existing = None
        token: str | None = None
        while existing is None:
            kwargs: dict[str, Any] = {"pullRequestId": pull_request_id, "repositoryName": repository}
            if token:
                kwargs["nextToken"] = token
            page = client.get_comments_for_pull_request(**kwargs)
            for data in page.get("commentsForPullRequestData", []):
                for c in data.get("comments", []):
                    if MARKER in str(c.get("content", "")) and not c.get("deleted"):
                        existing = c["commentId"]
                        break
                if existing:
                    break
            token = page.get("nextToken")
            if not token:
                break
        if existing:
            client.update_comment(commentId=existing, content=body)
            return [f"comment {existing} updated on pull request {pull_request_id}"]
        made = client.post_comment_for_pull_request(
            pullRequestId=pull_request_id,
            repositoryName=repository,
            beforeCommitId=before_commit,
            afterCommitId=after_commit,
            content=body,
            clientRequestToken=hashlib.sha256(f"{pull_request_id}:{after_commit}".encode()).hexdigest()[:64],
        )
        return [f"comment {made['comment']['commentId']} created on pull request {pull_request_id}"]
    except (BotoCoreError, ClientError) as exc:
        return [f"could not post the pull-request comment: {type(exc).__name__}: {exc}"]


def comment_for(result: RunResult, baseline: RunResult | None, report_url: str | None, commit: str | None) -> str:
    tickets = list(result.tickets) if getattr(result, "tickets", None) else None
    return render_comment(result, baseline, report_url=report_url, commit=commit, tickets=tickets)
