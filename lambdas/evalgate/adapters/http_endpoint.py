"""A deployed service as the candidate: POST each case as JSON to an HTTP endpoint (stdlib ``urllib`` only).

Request body: ``{"question": <last user message>, "session_id": "evalgate-<case>-<repeat>"}``, plus
``"messages"`` (all turns) for multi-turn cases and ``"document"`` when the case carries an untrusted
document. The answer is read from a dotted JSON path (default ``answer``; ``data.items.0.text`` indexes
lists). ``usage.inputTokens`` / ``usage.outputTokens`` are read when present, and ``latency.ttft_ms`` /
``latency.total_ms`` give the time to first token (``base.client_ttft_ms``).

**Authentication** (``auth``, matching the service's ``apiAuth`` setting): ``iam`` signs each request with
SigV4 for ``execute-api`` (botocore's signer, the default credential chain); ``jwt`` sends
``Authorization: Bearer <token>`` from ``EVALGATE_API_TOKEN``, or from an OAuth2 client-credentials grant
described by ``EVALGATE_API_CLIENT`` (JSON ``{"token_url", "client_id", "client_secret"[, "scope"]}``, e.g. a
Cognito app client; the token is reused until a minute before it expires). ``synthetic`` adds the signed
header that marks the project's own traffic (``evalgate.adapters.signing``): without it a request counts as a user's.
``http_candidate_from_env`` builds the candidate the CLI uses from ``EVALGATE_API_AUTH`` and those variables.

HTTP 429/503 raise ``HttpThrottledError`` (a ``ThrottledError``) with ``retry_after`` in seconds when the
server sent ``Retry-After``; other 5xx, timeouts and dropped connections raise ``TransientError``; any
other non-2xx or a body that is not the expected JSON raises ``ProviderError`` with the status and a snippet
of the body. Retrying is ``evalgate.core.retry``'s job, not this adapter's.
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from evalgate.contracts.service import ask_body
from evalgate.core.errors import InputError, ProviderError, ThrottledError, TransientError
from evalgate.core.models import Case, Generation, KnowledgeEntry
from evalgate.core.ports import client_ttft_ms, int_or_none, str_or_none

THROTTLE_STATUS = frozenset({429, 503})
MAX_BODY = 10 * 1024 * 1024
AUTH_ENV = "EVALGATE_API_AUTH"
TOKEN_ENV = "EVALGATE_API_TOKEN"
CLIENT_ENV = "EVALGATE_API_CLIENT"
ApiAuth = Literal["none", "iam", "jwt"]
API_AUTH_MODES: tuple[ApiAuth, ...] = ("none", "iam", "jwt")
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class HttpThrottledError(ThrottledError):
    """The endpoint refused for capacity. ``retry_after`` is the server's Retry-After in seconds, if given."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date (RFC 9110). None when absent/invalid."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def extract_path(doc: Any, path: str) -> Any:
    """Follow a dotted path (``a.b.0.c``) through dicts and lists; KeyError when a step is missing."""
    cur = doc
    for part in path.split(".") if path else []:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise KeyError(path)
    return cur


def _snippet(raw: bytes | str, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class HttpCandidate:
    """The system under test behind an HTTP endpoint (e.g. the staging API).

    ``headers`` are sent as-is; ``api_key_env`` names an environment variable whose value is sent in
    ``api_key_header`` (read at call time, never stored in ``identity()``). ``version`` should identify what
    is deployed behind the URL (e.g. a commit or Lambda version): answers are cached by ``identity()``, and a
    URL alone does not say what code answered.
    """

    live = True

    def __init__(
        self,
        url: str,
        *,
        answer_path: str = "answer",
        headers: Mapping[str, str] | None = None,
        api_key_env: str | None = None,
        api_key_header: str = "x-api-key",
        timeout: float = 30.0,
        version: str | None = None,
        name: str | None = None,
        auth: ApiAuth = "none",
        bearer: Callable[[], str] | None = None,
        synthetic: Callable[[bytes], dict[str, str]] | None = None,
        region: str | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"endpoint URL must be http(s): {url!r}")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if auth not in API_AUTH_MODES:
            raise ValueError(f"auth must be one of {', '.join(API_AUTH_MODES)}, not {auth!r}")
        if auth == "jwt" and bearer is None:
            raise ValueError(f"auth 'jwt' needs a token: set {TOKEN_ENV} or {CLIENT_ENV}")
        self.auth = auth
        self.bearer = bearer
        self.synthetic = synthetic
        self.region = region
        self._aws: Any = None  # boto3 session for SigV4: one per candidate (one per request would cost ms)
        if auth == "iam":
            import boto3

            self._aws = boto3.session.Session()
        self.url = url
        self.answer_path = answer_path
        self.headers = dict(headers or {})
        self.api_key_env = api_key_env
        self.api_key_header = api_key_header
        self.timeout = timeout
        self.version = version
        self.name = name or f"http:{url}"
        # No proxies from the environment for an explicitly configured endpoint URL.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def identity(self) -> dict[str, Any]:
        return {"kind": "http", "url": self.url, "answer_path": self.answer_path, "version": self.version}

    def body(self, case: Case, repeat: int) -> dict[str, Any]:
        return ask_body(case.question, f"evalgate-{case.id}-{repeat}", case.turns, case.untrusted_context)

    def _headers(self, data: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "evalgate"}
        headers.update(self.headers)
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ProviderError(f"{self.url}: environment variable {self.api_key_env} (API key) is not set")
            headers[self.api_key_header] = key
        if self.synthetic is not None:
            try:
                headers.update(self.synthetic(data))
            except Exception as exc:
                raise ProviderError(f"{self.url}: cannot sign the synthetic-traffic header: {exc}") from exc
        if self.auth == "jwt" and self.bearer is not None:
            headers["Authorization"] = f"Bearer {self.bearer()}"
        if self.auth == "iam":
            headers = sigv4_headers(self.url, data, headers, self.region, self._aws)
        return headers

    def generate(self, case: Case, knowledge: list[KnowledgeEntry], repeat: int) -> Generation:
        data = json.dumps(self.body(case, repeat)).encode()
        req = urllib.request.Request(self.url, data=data, headers=self._headers(data), method="POST")
        start = time.monotonic()
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read(MAX_BODY)
                status = resp.status
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from exc
        except TimeoutError as exc:
            raise TransientError(f"{self.url}: timed out after {self.timeout:g}s") from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (TimeoutError, socket.timeout)):
                raise TransientError(f"{self.url}: timed out after {self.timeout:g}s") from exc
            raise ProviderError(f"{self.url}: cannot connect: {exc.reason}") from exc
        except (ConnectionError, http.client.HTTPException) as exc:  # reset mid-body, bad status line
            raise TransientError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise ProviderError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        latency_ms = (time.monotonic() - start) * 1000.0
        return self._parse(case, repeat, status, raw, latency_ms)

    def _http_error(self, exc: urllib.error.HTTPError) -> ProviderError:
        try:
            raw = exc.read(4096)
        except OSError:
            raw = b""
        status = exc.code
        if status in THROTTLE_STATUS:
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            hint = f", retry after {retry_after:g}s" if retry_after is not None else ""
            return HttpThrottledError(
                f"{self.url}: throttled: HTTP {status}{hint}: {_snippet(raw)}", retry_after=retry_after, status=status
            )
        if status >= 500:
            return TransientError(f"{self.url}: HTTP {status}: {_snippet(raw)}")
        return ProviderError(f"{self.url}: HTTP {status}: {_snippet(raw)}")

    def _parse(self, case: Case, repeat: int, status: int, raw: bytes, latency_ms: float) -> Generation:
        try:
            doc = json.loads(raw)
        except ValueError:
            raise ProviderError(f"{self.url}: HTTP {status}: response is not JSON: {_snippet(raw)}") from None
        try:
            answer = extract_path(doc, self.answer_path)
        except KeyError:
            raise ProviderError(
                f"{self.url}: HTTP {status}: no '{self.answer_path}' in response: {_snippet(raw)}"
            ) from None
        if not isinstance(answer, str):
            raise ProviderError(
                f"{self.url}: HTTP {status}: '{self.answer_path}' is {type(answer).__name__}, not text: {_snippet(raw)}"
            )
        usage = doc.get("usage") if isinstance(doc, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Generation(
            case_id=case.id,
            repeat=repeat,
            output=answer,
            latency_ms=latency_ms,
            ttft_ms=client_ttft_ms(doc, latency_ms),
            input_tokens=int_or_none(usage.get("inputTokens")),
            output_tokens=int_or_none(usage.get("outputTokens")),
            model_id=str_or_none(doc.get("model_id")) if isinstance(doc, dict) else None,
            prompt_version=str_or_none(doc.get("prompt_version")) if isinstance(doc, dict) else None,
            guardrail_intervened=bool(doc.get("guardrail_intervened")) if isinstance(doc, dict) else False,
        )


# ------------------------------------------------------------------------------------------------ authentication


def execute_api_region(url: str) -> str | None:
    """``us-east-1`` from ``https://<id>.execute-api.us-east-1.amazonaws.com/...``; None for other hosts."""
    match = _EXECUTE_API_HOST.match(urllib.parse.urlsplit(url).hostname or "")
    return match.group(1) if match else None


def sigv4_headers(
    url: str, data: bytes, headers: Mapping[str, str], region: str | None = None, session: Any = None
) -> dict[str, str]:
    """``headers`` plus a SigV4 signature for ``execute-api`` (API Gateway IAM authorization), with the default
    credential chain of ``session`` (a new boto3 session when None)."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = session or boto3.session.Session()
    region = region or execute_api_region(url) or session.region_name
    if not region:
        raise ProviderError(f"{url}: cannot sign with SigV4: no AWS region (set AWS_REGION)")
    credentials = session.get_credentials()
    if credentials is None:
        raise ProviderError(f"{url}: cannot sign with SigV4: no AWS credentials")
    request = AWSRequest(method="POST", url=url, data=data, headers=dict(headers))
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return {k: str(v) for k, v in request.headers.items()}


class ClientCredentialsToken:
    """An OAuth2 client-credentials access token (RFC 6749 4.4), fetched once and reused until near expiry."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, scope: str | None = None) -> None:
        if not token_url.startswith("https://") and not token_url.startswith("http://127.0.0.1"):
            raise ValueError(f"token_url must be https: {token_url!r}")
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __call__(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = self._fetch()
                self._expires = time.monotonic() + max(0.0, lifetime - 60.0)
            return self._token

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials", "client_id": self.client_id}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(f"{self.client_id}:{self._client_secret}".encode()).decode()
        req = urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
            method="POST",
        )
        try:
            with self._opener.open(req, timeout=10) as resp:
                doc = json.loads(resp.read(65536))
        except urllib.error.HTTPError as exc:
            raise ProviderError(f"{self.token_url}: token request refused: HTTP {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise ProviderError(f"{self.token_url}: token request failed: {type(exc).__name__}") from exc
        token = doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(f"{self.token_url}: token response has no access_token")
        lifetime = doc.get("expires_in")
        return token, float(lifetime) if isinstance(lifetime, int | float) else 300.0


def bearer_from_env(env: Mapping[str, str]) -> Callable[[], str] | None:
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return lambda: token
    raw = env.get(CLIENT_ENV, "").strip()
    if not raw:
        return None
    try:
        doc = json.loads(raw)
        return ClientCredentialsToken(
            doc["token_url"], doc["client_id"], doc["client_secret"], doc.get("scope") or None
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError.single(
            CLIENT_ENV, None, f"must be JSON with token_url, client_id, client_secret (and optional scope): {exc}"
        ) from None


def http_candidate_from_env(url: str, *, timeout: float = 30.0, env: Mapping[str, str] | None = None) -> HttpCandidate:
    """The HTTP candidate of the project's own runs: authenticated as ``EVALGATE_API_AUTH`` says, and marked as
    synthetic traffic when ``EVALGATE_SIGNING_SECRET`` names the service's signing secret."""
    from evalgate.adapters.signing import SigningUnavailable, synthetic_signer_from_env

    env = os.environ if env is None else env
    auth = env.get(AUTH_ENV, "").strip() or "none"
    if auth not in API_AUTH_MODES:
        raise InputError.single(AUTH_ENV, None, f"must be one of {', '.join(API_AUTH_MODES)} (got {auth!r})")
    bearer = bearer_from_env(env) if auth == "jwt" else None
    if auth == "jwt" and bearer is None:
        raise InputError.single(AUTH_ENV, None, f"'jwt' needs {TOKEN_ENV} or {CLIENT_ENV} to be set")
    try:
        synthetic = synthetic_signer_from_env(env)
    except SigningUnavailable as exc:
        raise InputError.single("EVALGATE_SIGNING_SECRET", None, str(exc)) from None
    try:
        return HttpCandidate(url, timeout=timeout, auth=auth, bearer=bearer, synthetic=synthetic)
    except ValueError as exc:
        raise InputError.single("--candidate/--target", None, str(exc)) from None
