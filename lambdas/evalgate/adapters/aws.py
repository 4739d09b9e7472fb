"""The one place that builds AWS clients, and the one place that maps AWS errors to provider errors.

Clients are botocore's (the engine under boto3: the same clients, credential chain and endpoint resolution,
without loading boto3 — about 20 ms of every process's start-up); S3's come from a boto3 session over the same
botocore session, for the transfer methods boto3 adds to them (``upload_file``, ``download_file``).
Clients use the default credential chain and default endpoint resolution, so the standard environment
variables (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, ...) redirect them;
nothing here hard-codes an endpoint. Timeouts and botocore's retries are explicit and overridable, either
by argument (``ClientSettings``) or by environment (``EVALGATE_AWS_CONNECT_TIMEOUT``,
``EVALGATE_AWS_READ_TIMEOUT``, ``EVALGATE_AWS_MAX_ATTEMPTS``, ``EVALGATE_AWS_RETRY_MODE``,
``EVALGATE_AWS_MAX_POOL``). Clients for model calls (``model_client_settings``) send each attempt once:
``evalgate.core.retry`` owns their retries, so botocore's are off (one attempt, ``standard`` mode; see README
"Resilience" for the measurement behind that choice). Other clients keep botocore's retries.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotocoreConnectionError,
)
from botocore.handlers import BUILTIN_HANDLERS

from evalgate.core.errors import InputError, ProviderError, ThrottledError, TransientError, clip

USER_AGENT_EXTRA = "evalgate"

# Error codes that say the model or the service is not ready: a capacity refusal to the retry policy, and
# "unavailable" (not "busy") to a user waiting on the call (``user_facing_kind``).
NOT_READY_CODES = frozenset({"ServiceUnavailableException", "ServiceUnavailable", "ModelNotReadyException"})
# Error codes that mean "the service refused for capacity": the retry policy backs off and lowers concurrency.
THROTTLING_CODES = NOT_READY_CODES | frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
        "EC2ThrottledException",
    }
)
THROTTLING_STATUS = frozenset({429, 503})
# Failures worth retrying that are not about capacity (the retry policy backs off, concurrency unchanged).
TRANSIENT_CODES = frozenset(
    {
        "InternalServerException",
        "InternalFailure",
        "InternalServerError",
        "ServiceException",
        "ModelTimeoutException",
        "ModelStreamErrorException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)

UserFacingKind = Literal["throttled", "unavailable", "failed"]

_ENV_OVERRIDES: tuple[tuple[str, str, type], ...] = (
    ("connect_timeout", "EVALGATE_AWS_CONNECT_TIMEOUT", float),
    ("read_timeout", "EVALGATE_AWS_READ_TIMEOUT", float),
    ("max_attempts", "EVALGATE_AWS_MAX_ATTEMPTS", int),
    ("retry_mode", "EVALGATE_AWS_RETRY_MODE", str),
    ("max_pool_connections", "EVALGATE_AWS_MAX_POOL", int),
)


@dataclass(frozen=True)
class ClientSettings:
    """How clients talk to AWS. Every field has an explicit default and can be overridden.

    ``max_attempts`` counts every attempt including the first (as ``AWS_MAX_ATTEMPTS`` does): 1 disables retries.
    ``max_pool_connections`` should be at least the concurrency used against one client.
    """

    region: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    max_attempts: int = 5
    retry_mode: str = "adaptive"
    max_pool_connections: int = 64
    endpoint_url: str | None = None  # None: botocore's resolution (env / config file / default)
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_pool_connections < 1:
            raise ValueError("max_pool_connections must be at least 1")
        if self.retry_mode not in {"adaptive", "standard", "legacy"}:
            raise ValueError(f"unknown retry mode {self.retry_mode!r}")

    @classmethod
    def from_env(cls, **overrides: Any) -> ClientSettings:
        """Defaults, then ``EVALGATE_AWS_*`` environment overrides, then explicit keyword overrides."""
        values: dict[str, Any] = {}
        for name, env, conv in _ENV_OVERRIDES:
            raw = os.environ.get(env, "").strip()
            if not raw:
                continue
            try:
                values[name] = conv(raw)
            except ValueError:
                raise InputError.single("environment", None, f"{env}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_(self, **changes: Any) -> ClientSettings:
        return replace(self, **changes)

    def botocore_config(self) -> Config:
        return Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # botocore's retries["max_attempts"] counts retries only; total_max_attempts counts every attempt,
            # like AWS_MAX_ATTEMPTS and the config file's max_attempts.
            retries={"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            user_agent_extra=USER_AGENT_EXTRA,
        )


def model_client_settings(**overrides: Any) -> ClientSettings:
    """Settings for model-call clients (bedrock-runtime, a Lambda candidate): one attempt per call, because
    ``evalgate.core.retry`` retries them; ``EVALGATE_AWS_MAX_ATTEMPTS`` / ``EVALGATE_AWS_RETRY_MODE`` still apply
    (the fault bench compares botocore's modes that way)."""
    defaults: dict[str, Any] = {"max_attempts": 1, "retry_mode": "standard"}
    for name, env, _ in _ENV_OVERRIDES:
        if name in defaults and os.environ.get(env, "").strip():
            del defaults[name]
    return ClientSettings.from_env(**{**defaults, **overrides})


def resolve_region(session: botocore.session.Session, explicit: str | None = None) -> str:
    """Explicit region, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile's region, else an error."""
    region = explicit or os.environ.get("AWS_REGION") or session.get_config_variable("region")
    if not region:
        raise InputError.single(
            "environment",
            None,
            "no AWS region configured: set AWS_REGION (or AWS_DEFAULT_REGION), configure a region in the "
            "AWS profile, or pass a region explicitly",
        )
    return region


# Sessions are expensive to create (~100 ms: they load the endpoint and service models) and not thread-safe;
# clients are cheap to make from a warm session and thread-safe once made. So one session per credential-
# relevant environment, and client creation under a lock.
_SESSION_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)
_sessions: dict[tuple[str | None, ...], botocore.session.Session] = {}
_boto3_sessions: dict[int, Any] = {}  # id(botocore session) -> the boto3 session over it (S3 clients)
_sessions_lock = threading.Lock()
_BOTO3_CLIENTS = frozenset({"s3"})  # services whose clients boto3 adds methods to


def _session(profile: str | None) -> botocore.session.Session:
    # A session copies botocore's BUILTIN_HANDLERS when it is made; libraries that append to them later
    # (moto's mock_aws does, on import) must see a fresh session, hence their count in the key.
    key = (profile, str(len(BUILTIN_HANDLERS)), *(os.environ.get(name) for name in _SESSION_ENV))
    session = _sessions.get(key)
    if session is None:
        session = botocore.session.Session(profile=profile)
        _sessions[key] = session
    return session


def _boto3_session(session: botocore.session.Session) -> Any:
    """The boto3 session over ``session`` (one per botocore session: boto3 registers its handlers on it)."""
    wrapped = _boto3_sessions.get(id(session))
    if wrapped is None:
        import boto3

        wrapped = _boto3_sessions[id(session)] = boto3.session.Session(botocore_session=session)
    return wrapped


def credentials_available(profile: str | None = None) -> bool:
    """Whether the default credential chain finds credentials. Resolved on the shared session, so the clients
    made next reuse them instead of resolving (and loading a session) again."""
    with _sessions_lock:
        return _session(profile).get_credentials() is not None


def make_client(service: str, settings: ClientSettings | None = None) -> Any:
    """A client for ``service`` with default credential/endpoint resolution and our retry/timeout config.

    Endpoint and region are resolved from the environment at each call (``AWS_ENDPOINT_URL_<SERVICE>``,
    ``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``...), credentials by the default chain.
    """
    settings = settings or ClientSettings.from_env()
    with _sessions_lock:
        session = _session(settings.profile)
        region = resolve_region(session, settings.region)
        kwargs: dict[str, Any] = {"region_name": region, "config": settings.botocore_config()}
        if settings.endpoint_url:
            kwargs["endpoint_url"] = settings.endpoint_url
        if service in _BOTO3_CLIENTS:
            return _boto3_session(session).client(service, **kwargs)
        return session.create_client(service, **kwargs)


def error_code(exc: ClientError) -> str:
    """The error code, PascalCase: an error inside an event stream names its member (``throttlingException``)."""
    code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
    return code[:1].upper() + code[1:]


def error_status(exc: ClientError) -> int | None:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def map_aws_error(exc: Exception, what: str, extra_throttling: frozenset[str] = frozenset()) -> ProviderError:
    """Turn a botocore/boto3 exception into ``ThrottledError`` (capacity) or ``ProviderError`` (anything else).

    ``what`` names the thing called (e.g. ``bedrock model anthropic.claude...``) and leads the message.
    """
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = error_status(exc)
        message = str(exc.response.get("Error", {}).get("Message") or "").strip()
        attempts = exc.response.get("ResponseMetadata", {}).get("RetryAttempts")
        tried = f" after {int(attempts) + 1} attempts" if attempts is not None else ""
        detail = f"{code} (HTTP {status}){tried}" if status else f"{code}{tried}"
        if message:
            detail += f": {clip(message, 300)}"
        if code in THROTTLING_CODES or code in extra_throttling or status in THROTTLING_STATUS:
            return ThrottledError(f"{what}: throttled: {detail}", retry_after=_retry_after(exc))
        if code in TRANSIENT_CODES or (status is not None and status >= 500):
            return TransientError(f"{what}: {detail}", retry_after=_retry_after(exc))
        return ProviderError(f"{what}: {detail}")
    if isinstance(exc, ReadTimeoutError):
        return TransientError(f"{what}: read timed out ({clip(str(exc), 300)})")
    if isinstance(exc, ConnectTimeoutError):
        return TransientError(f"{what}: connect timed out ({clip(str(exc), 300)})")
    if isinstance(exc, EndpointConnectionError):  # a wrong endpoint more often than a blip: not retried
        return ProviderError(f"{what}: cannot connect ({clip(str(exc), 300)})")
    if isinstance(exc, ConnectionClosedError):
        return TransientError(f"{what}: connection closed ({clip(str(exc), 300)})")
    if isinstance(exc, NoCredentialsError):
        return ProviderError(f"{what}: no AWS credentials found")
    if isinstance(exc, BotoCoreError):
        return ProviderError(f"{what}: {type(exc).__name__}: {clip(str(exc), 300)}")
    return ProviderError(f"{what}: {type(exc).__name__}: {clip(str(exc), 300)}")


def user_facing_kind(exc: Exception, extra_throttling: frozenset[str] = frozenset()) -> UserFacingKind:
    """How a service answers a user waiting on a failed call, from the same map as ``map_aws_error``: ``throttled``
    (busy: retry shortly), ``unavailable`` (the model or service is not ready, timed out or unreachable) or
    ``failed``."""
    if isinstance(exc, ClientError) and (error_code(exc) in NOT_READY_CODES or error_status(exc) == 503):
        return "unavailable"  # checked first: ModelNotReadyException comes with HTTP 429
    if isinstance(exc, BotocoreConnectionError):  # connect timeouts, closed connections, an unreachable endpoint
        return "unavailable"
    err = map_aws_error(exc, "call", extra_throttling)
    if isinstance(err, ThrottledError):
        return "throttled"
    return "unavailable" if isinstance(err, TransientError) else "failed"


def _retry_after(exc: ClientError) -> float | None:
    """Seconds to wait from a ``Retry-After`` header or Lambda's ``retryAfterSeconds`` field, when sent."""
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
    for raw in (headers.get("retry-after"), exc.response.get("retryAfterSeconds")):
        try:
            value = float(raw) if raw is not None else None
        except (TypeError, ValueError):
            continue
        if value is not None and 0 <= value < 3600:
            return value
    return None
