"""GitHub REST API, for what the pipeline tells a pull request: a commit status, one comment, issues for known errors.

``GITHUB_API_URL`` (default ``https://api.github.com``; GitHub Enterprise sets its own) picks the endpoint. The
token comes from Secrets Manager at run time (``token_from_secret``) or ``GITHUB_TOKEN``; it is sent only in the
``Authorization`` header and never logged. Rate-limit answers (429, or 403 with ``x-ratelimit-remaining: 0``),
5xx and dropped connections are retried by the product's one retry policy (``evalgate.core.retry``): back-off
with full jitter, at least as long as ``Retry-After`` / ``x-ratelimit-reset`` say, given up when the next attempt
could not start within ``time_budget_s``; anything else — or a retry that would cross the budget — raises
``GitHubError`` with the status and GitHub's message.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evalgate.core.errors import ProviderError, ThrottledError, TransientError
from evalgate.core.retry import GaveUp, RetryPolicy

DEFAULT_API = "https://api.github.com"
API_VERSION = "2022-11-28"


class GitHubError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(f"GitHub API {status or 'unreachable'}: {message}")
        self.status = status


class _Attempt(ProviderError):
    """One failed attempt, for the retry policy: the HTTP status (None: unreachable) and GitHub's message. As
    such, a refusal (not retried); the subclasses below are retried."""

    def __init__(self, status: int | None, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.status, self.detail = status, detail


class _RateLimited(_Attempt, ThrottledError):
    pass


class _Unavailable(_Attempt, TransientError):
    pass


@dataclass
class GitHubClient:
    repo: str  # owner/name
    token: str
    api_url: str = field(default_factory=lambda: os.environ.get("GITHUB_API_URL") or DEFAULT_API)
    timeout: float = 15.0
    time_budget_s: float = 60.0  # per request: retries stop when the next attempt could not start within it
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time  # epoch seconds, for x-ratelimit-reset
    monotonic: Callable[[], float] = time.monotonic  # the retry policy's clock

    def __post_init__(self) -> None:
        if self.repo.count("/") != 1 or not all(self.repo.split("/")):
            raise ValueError(f"repository must be owner/name, got {self.repo!r}")

    # ------------------------------------------------------------------------------------------ transport

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = self.api_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else None
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "evalgate",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"

        def attempt() -> Any:
            req = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                raise self._classify(exc.code, exc.headers, _message(exc.read().decode("utf-8", "replace"))) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                raise _Unavailable(None, str(getattr(exc, "reason", exc))) from None

        policy = RetryPolicy(1, time_budget=self.time_budget_s, clock=self.monotonic, sleep=self.sleep)
        try:
            return policy.call(attempt, model="GitHub API")
        except GaveUp as exc:
            last = exc.last
            status, detail = (last.status, last.detail) if isinstance(last, _Attempt) else (None, str(last))
            raise GitHubError(status, detail) from None

    def _classify(self, status: int, headers: Any, detail: str) -> _Attempt:
        """A failed attempt as the retry policy sees it: rate-limited (with the wait GitHub asked for), a server
        error worth retrying, or a refusal."""
        limited = status == 429 or (status == 403 and str(headers.get("x-ratelimit-remaining", "")) == "0")
        if not limited and status < 500:
            return _Attempt(status, detail)
        wait: float | None = None
        retry_after, reset = headers.get("Retry-After"), headers.get("x-ratelimit-reset")
        try:
            if retry_after is not None:
                wait = max(0.0, float(retry_after))
            elif limited and reset is not None:
                wait = max(0.0, float(reset) - self.clock())
        except ValueError:
            wait = None
        return (_RateLimited if limited else _Unavailable)(status, detail, wait)

    # ------------------------------------------------------------------------------------------ API

    def pulls_for_commit(self, sha: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/repos/{self.repo}/commits/{sha}/pulls") or [])

    def set_status(self, sha: str, state: str, description: str, target_url: str | None, context: str) -> None:
        body: dict[str, Any] = {"state": state, "description": description[:140], "context": context}
        if target_url:
            body["target_url"] = target_url
        self.request("POST", f"/repos/{self.repo}/statuses/{sha}", body)

    def issue_comments(self, number: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 21):  # 2,000 comments at most
            batch = self.request("GET", f"/repos/{self.repo}/issues/{number}/comments?per_page=100&page={page}") or []
            out += batch
            if len(batch) < 100:
                break
        return out

    def upsert_comment(self, number: int, body: str, marker: str) -> tuple[str, int]:
        """Update the comment that carries ``marker`` (ours), or create it. Returns (created|updated, comment id)."""
        mine = [c for c in self.issue_comments(number) if marker in str(c.get("body", ""))]
        if mine:
            cid = int(mine[0]["id"])
            self.request("PATCH", f"/repos/{self.repo}/issues/comments/{cid}", {"body": body})
            return "updated", cid
        made = self.request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})
        return "created", int(made["id"])

    def open_issues(self, label: str) -> list[dict[str, Any]]:
        q = urllib.parse.urlencode({"labels": label, "state": "open", "per_page": 100})
        return [i for i in self.request("GET", f"/repos/{self.repo}/issues?{q}") or [] if "pull_request" not in i]

    def create_issue(self, title: str, body: str, labels: list[str]) -> dict[str, Any]:
        return dict(
            self.request("POST", f"/repos/{self.repo}/issues", {"title": title, "body": body, "labels": labels})
        )

    def comment_issue(self, number: int, body: str) -> None:
        self.request("POST", f"/repos/{self.repo}/issues/{number}/comments", {"body": body})


def _message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return str(data.get("message", text))[:200] if isinstance(data, dict) else text[:200]


def token_from_secret(secret_id: str, client: Any = None) -> str:
    """The token stored in Secrets Manager: the secret string itself, or its ``token`` field when it is JSON."""
    if client is None:
        from evalgate.adapters.aws import make_client

        client = make_client("secretsmanager")
    value = str(client.get_secret_value(SecretId=secret_id).get("SecretString") or "")
    try:
        data = json.loads(value)
    except ValueError:
        return value.strip()
    return str(data.get("token", "")).strip() if isinstance(data, dict) else value.strip()
