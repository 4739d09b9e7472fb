"""What only the service and the project's own tools can produce: signed request ids and signed synthetic traffic.

**The key.** One Secrets Manager secret holds the signing key (its ``SecretString``, at least 32 characters),
rotated on a schedule by :func:`rotate` (the four Secrets Manager rotation steps; a new random key). Secrets
Manager keeps the version being replaced under the ``AWSPREVIOUS`` label whenever a new value becomes
``AWSCURRENT``. Both versions are read through a Powertools Parameters provider (cached for ``max_age`` seconds,
so the secret is read once per few minutes per environment, not per request; an id that fails to verify with
the cached keys re-reads it, at most every ``MIN_REFRESH_S``). The previous key still verifies for ``grace_s``
seconds after the current version was created — long enough for ids issued just before a rotation, and by
environments still holding the old key in their cache, to be rated — and never after.

**Request ids** (``<unique>.<attribution>.<signature>``): ``unique`` is 32 random hex characters; the
attribution is base64url of ``[function version, model id, prompt version, issue time]``; the signature is
HMAC-SHA256 (base64url) over the unique part, the attribution and the issue time. Feedback is accepted only for
an id whose signature verifies (``hmac.compare_digest``: constant time) and whose issue time lies within the
feedback window. Every refusal looks the same to the caller, so the answer reveals nothing about the key.

**Synthetic traffic** (the project's load test, smoke runs and deployment hooks) carries the header
``x-evalgate-synthetic: <issue time>.<signature>``, the HMAC over the issue time and the SHA-256 of the request
body, valid for a few minutes: a caller without the key cannot mark its traffic as synthetic (and so cannot keep
it away from the online judge), and a header seen once cannot be reused for another body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

SECRET_ENV = "EVALGATE_SIGNING_SECRET"  # the secret's name or ARN
CACHE_ENV = "EVALGATE_SIGNING_CACHE_SECONDS"
GRACE_ENV = "EVALGATE_SIGNING_GRACE_SECONDS"
SYNTHETIC_HEADER = "x-evalgate-synthetic"
MIN_KEY_CHARS = 32
DEFAULT_CACHE_S = 300
DEFAULT_GRACE_S = 7200
SYNTHETIC_MAX_SKEW_S = 300
RETRY_AFTER_FAILURE_S = 30.0  # a key read that failed is not retried on every request (users keep being answered)
MIN_REFRESH_S = 30.0  # an id that does not verify re-reads the secret at most this often (forgeries can't force more)
FUTURE_SKEW_S = 60  # clocks of different Lambda environments may differ a little
_ID_DOMAIN = "evalgate/request-id/v1"
_SYNTHETIC_DOMAIN = "evalgate/synthetic/v1"

Refusal = Literal["malformed", "signature", "expired"]


class SigningUnavailable(Exception):
    """The signing key could not be read (missing secret, no permission, too short); the message names the secret."""


@dataclass(frozen=True)
class Attribution:
    """Which deployment produced an answer: feedback sent later is counted against it."""

    version: str
    model_id: str
    prompt_version: str


@dataclass(frozen=True)
class SigningKey:
    secret: bytes
    created: float  # epoch seconds: when this version of the secret was created

    def mac(self, fields: list[Any]) -> bytes:
        message = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
        return hmac.new(self.secret, message, hashlib.sha256).digest()


@dataclass(frozen=True)
class Keyring:
    """The key that signs, and the keys that verify (the previous one only during the grace period)."""

    current: SigningKey
    previous: SigningKey | None = None
    grace_s: float = DEFAULT_GRACE_S

    def verifying(self, now: float) -> list[SigningKey]:
        keys = [self.current]
        if self.previous is not None and now < self.current.created + self.grace_s:
            keys.append(self.previous)
        return keys

    def verifies(self, fields: list[Any], signature: bytes, now: float) -> bool:
        ok = False
        for key in self.verifying(now):  # every key is tried: the time taken does not say which one matched
            ok |= hmac.compare_digest(key.mac(fields), signature)
        return ok


KeySource = Callable[[], Keyring]


def reread(source: KeySource) -> Keyring | None:
    """The keyring read afresh, when the source can re-read and has not done so lately; else None.

    For an id that does not verify with the cached keys: it may have been signed by an environment that already
    holds a key rotated in since this one cached the secret.
    """
    refresh = getattr(source, "refresh", None)
    return refresh() if callable(refresh) else None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ------------------------------------------------------------------------------------------------ request ids


def issue_request_id(keyring: Keyring | None, attribution: Attribution, now: float | None = None) -> str:
    """A new request id. Without a keyring (signing unavailable) the id carries no signature and never verifies."""
    unique = secrets.token_hex(16)
    issued = int(time.time() if now is None else now)
    values = [attribution.version, attribution.model_id, attribution.prompt_version, issued]
    token = _b64(json.dumps(values, separators=(",", ":")).encode())
    signature = _b64(keyring.current.mac([_ID_DOMAIN, unique, *values])) if keyring is not None else ""
    return f"{unique}.{token}.{signature}"


@dataclass(frozen=True)
class IssuedId:
    unique: str
    attribution: Attribution
    issued: int


def verify_request_id(
    keyring: Keyring, request_id: str, window_s: float, now: float | None = None
) -> IssuedId | Refusal:
    """The id's contents when this service signed it within ``window_s`` seconds, else why not (for the log only)."""
    now = time.time() if now is None else now
    parts = request_id.split(".")
    if len(parts) != 3 or len(parts[0]) != 32 or not parts[1] or not parts[2]:
        return "malformed"
    unique, token, sig = parts
    try:
        values = json.loads(_unb64(token))
        signature = _unb64(sig)
    except (binascii.Error, ValueError):
        return "malformed"
    if not (
        isinstance(values, list)
        and len(values) == 4
        and all(isinstance(v, str) and v for v in values[:3])
        and isinstance(values[3], int)
        and not isinstance(values[3], bool)
    ):
        return "malformed"
    if not keyring.verifies([_ID_DOMAIN, unique, *values], signature, now):
        return "signature"
    issued = values[3]
    if not (now - window_s <= issued <= now + FUTURE_SKEW_S):
        return "expired"
    return IssuedId(unique, Attribution(values[0], values[1], values[2]), issued)


# ------------------------------------------------------------------------------------------------ synthetic


def _body_digest(body: str | bytes | None) -> str:
    raw = body.encode() if isinstance(body, str) else (body or b"")
    return hashlib.sha256(raw).hexdigest()


def synthetic_header(keyring: Keyring, body: str | bytes | None, now: float | None = None) -> dict[str, str]:
    """The header that marks one request (this body) as the project's own synthetic traffic."""
    issued = int(time.time() if now is None else now)
    signature = keyring.current.mac([_SYNTHETIC_DOMAIN, issued, _body_digest(body)])
    return {SYNTHETIC_HEADER: f"{issued}.{_b64(signature)}"}


def is_synthetic(
    keyring: Keyring | None, headers: Mapping[str, str] | None, body: str | bytes | None, now: float | None = None
) -> bool:
    """True only for a header signed with the key, for this body, within a few minutes of now."""
    if keyring is None or not headers:
        return False
    value = next((v for k, v in headers.items() if k.lower() == SYNTHETIC_HEADER), None)
    if not value:
        return False
    issued_text, _, sig = value.partition(".")
    now = time.time() if now is None else now
    try:
        issued = int(issued_text)
        signature = _unb64(sig)
    except (binascii.Error, ValueError):
        return False
    if abs(now - issued) > SYNTHETIC_MAX_SKEW_S:
        return False
    return keyring.verifies([_SYNTHETIC_DOMAIN, issued, _body_digest(body)], signature, now)


# ------------------------------------------------------------------------------------------------ the secret


def _provider_class() -> type[Any]:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    class SecretVersionsProvider(SecretsProvider):  # type: ignore[misc]
        """Reads the AWSCURRENT and AWSPREVIOUS versions of a secret as one cached value."""

        def _get(self, name: str, **sdk_options: Any) -> str:
            from botocore.exceptions import ClientError

            current = self.client.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
            try:
                previous: Any = self.client.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                previous = None

            def version(v: Any) -> dict[str, Any] | None:
                if v is None or "SecretString" not in v:
                    return None
                created = v.get("CreatedDate")
                ts = created.timestamp() if isinstance(created, datetime) else 0.0
                return {"key": v["SecretString"], "created": ts}

            return json.dumps({"current": version(current), "previous": version(previous)})

    return SecretVersionsProvider


class SecretKeySource:
    """The keyring from a Secrets Manager secret, through a Powertools provider (cached for ``max_age`` s)."""

    def __init__(
        self,
        secret_id: str,
        *,
        max_age: int = DEFAULT_CACHE_S,
        grace_s: float = DEFAULT_GRACE_S,
        client: Any = None,
    ) -> None:
        self.secret_id = secret_id
        self.max_age = max_age
        self.grace_s = grace_s
        self._client = client
        self._provider: Any = None
        self._lock = threading.Lock()
        self._failed: tuple[float, str] | None = None  # (monotonic time, message) of the last failed read
        self._read_at = float("-inf")  # monotonic time of the last read from Secrets Manager

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretKeySource | None:
        env = os.environ if env is None else env
        secret = env.get(SECRET_ENV, "").strip()
        if not secret:
            return None

        def num(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise SigningUnavailable(f"{name}: not a whole number of seconds ({raw!r})") from None
            if value < 0:
                raise SigningUnavailable(f"{name}: must not be negative ({value})")
            return value

        return cls(secret, max_age=num(CACHE_ENV, DEFAULT_CACHE_S), grace_s=num(GRACE_ENV, DEFAULT_GRACE_S))

    def _get_provider(self) -> Any:
        with self._lock:
            if self._provider is None:
                client = self._client
                if client is None:
                    from evalgate.adapters.aws import ClientSettings, make_client

                    client = make_client(
                        "secretsmanager",
                        ClientSettings.from_env(
                            connect_timeout=2.0, read_timeout=5.0, max_attempts=3, retry_mode="standard"
                        ),
                    )
                self._provider = _provider_class()(boto3_client=client)
            return self._provider

    def refresh(self) -> Keyring | None:
        """The keyring read from Secrets Manager now (bypassing the cache), unless that was done lately."""
        if time.monotonic() - self._read_at < MIN_REFRESH_S:
            return None
        return self._read(force=True)

    def __call__(self) -> Keyring:
        return self._read(force=False)

    def _read(self, force: bool) -> Keyring:
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < RETRY_AFTER_FAILURE_S:
            raise SigningUnavailable(failed[1])
        try:
            if force or self._read_at == float("-inf"):
                self._read_at = time.monotonic()
            raw = self._get_provider().get(self.secret_id, max_age=self.max_age, transform="json", force_fetch=force)
        except Exception as exc:
            message = f"signing secret {self.secret_id}: cannot read it ({type(exc).__name__})"
            self._failed = (time.monotonic(), message)
            raise SigningUnavailable(message) from exc
        self._failed = None

        def key(v: Any, label: str) -> SigningKey | None:
            if v is None:
                return None
            text = v.get("key") if isinstance(v, dict) else None
            if not isinstance(text, str) or len(text) < MIN_KEY_CHARS:
                raise SigningUnavailable(
                    f"signing secret {self.secret_id} ({label}): the value must be a string of at least "
                    f"{MIN_KEY_CHARS} characters"
                )
            return SigningKey(text.encode(), float(v.get("created") or 0.0))

        current = key(raw.get("current") if isinstance(raw, dict) else None, "AWSCURRENT")
        if current is None:
            raise SigningUnavailable(f"signing secret {self.secret_id}: no AWSCURRENT string value")
        previous = key(raw.get("previous"), "AWSPREVIOUS") if isinstance(raw, dict) else None
        return Keyring(current, previous, self.grace_s)


# ------------------------------------------------------------------------------------------------ rotation

ROTATION_STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")


class RotationError(Exception):
    """A rotation step cannot proceed (wrong version, not pending, unusable value); Secrets Manager retries."""


def rotate(client: Any, secret_id: str, token: str, step: str) -> str:
    """One step of a Secrets Manager rotation of the signing key (a new random key; no other system to update).

    ``createSecret`` stores a new 64-character key as the ``AWSPENDING`` version ``token`` (once: a repeated
    call finds it); ``testSecret`` checks it is usable; ``finishSecret`` makes it ``AWSCURRENT`` — Secrets
    Manager then labels the replaced version ``AWSPREVIOUS``, which verifies for the grace period.
    """
    from botocore.exceptions import ClientError

    if step not in ROTATION_STEPS:
        raise RotationError(f"{secret_id}: unknown rotation step {step!r}")
    versions = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages") or {}
    if token not in versions:
        raise RotationError(f"{secret_id}: version {token} has no stage for rotation")
    if "AWSCURRENT" in versions[token]:
        return "already current"
    if "AWSPENDING" not in versions[token]:
        raise RotationError(f"{secret_id}: version {token} is not pending rotation")
    if step == "createSecret":
        try:
            client.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage="AWSPENDING")
            return "pending key exists"
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
        key = client.get_random_password(PasswordLength=64, ExcludePunctuation=True, IncludeSpace=False)
        client.put_secret_value(
            SecretId=secret_id,
            ClientRequestToken=token,
            SecretString=key["RandomPassword"],
            VersionStages=["AWSPENDING"],
        )
        return "pending key created"
    if step == "setSecret":
        return "nothing to set: the key is only used by this stage's service and tools"
    if step == "testSecret":
        value = client.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage="AWSPENDING")
        if len(value.get("SecretString") or "") < MIN_KEY_CHARS:
            raise RotationError(f"{secret_id}: pending key is shorter than {MIN_KEY_CHARS} characters")
        return "pending key usable"
    current = next((v for v, stages in versions.items() if "AWSCURRENT" in stages), None)
    kwargs = {"RemoveFromVersionId": current} if current else {}
    client.update_secret_version_stage(SecretId=secret_id, VersionStage="AWSCURRENT", MoveToVersionId=token, **kwargs)
    return "pending key is now current"


def synthetic_signer_from_env(env: Mapping[str, str] | None = None) -> Callable[[bytes], dict[str, str]] | None:
    """For the project's own callers (load test, smoke runs, hooks): body -> the synthetic header, or None when
    ``EVALGATE_SIGNING_SECRET`` is not set (the traffic is then treated like any user's)."""
    source = SecretKeySource.from_env(env)
    if source is None:
        return None

    def sign(body: bytes) -> dict[str, str]:
        return synthetic_header(source(), body)

    return sign
