"""Feature flags for the service: which variant (model, prompt) a sticky cohort gets, shadow mode, capture rate.

The flag document lives in AWS AppConfig (a *Feature Flags* profile in the Powertools schema) and is read
through Powertools ``FeatureFlags`` over an ``AppConfigStore``. Cohorts are sticky: the context key
``cohort`` is a 64-bit hash of the user or session id, and rules split it with ``MODULO_RANGE``
(``START <= cohort % BASE <= END``), so the same user keeps the same variant across requests and Lambda
instances. A request without a user or session id has no ``cohort`` and gets each flag's default.

Example document (10 % of users on the candidate prompt)::

    {
      "variant": {"default": "control", "boolean_type": false,
                  "rules": {"candidate 10%": {"when_match": "candidate", "conditions": [
                      {"action": "MODULO_RANGE", "key": "cohort", "value": {"BASE": 100, "START": 0, "END": 9}}]}}},
      "variants": {"default": {"control": {"model_id": "...", "prompt_id": "support/v1"},
                               "candidate": {"model_id": "...", "prompt_id": "support/v2-concise"}},
                   "boolean_type": false},
      "shadow": {"default": false},
      "shadow_sample_rate": {"default": 0.05, "boolean_type": false},
      "capture_sample_rate": {"default": 0.2, "boolean_type": false}
    }

The document's pydantic models are built on first use (``defer_build``): a function without a flag store
never pays for them on its cold start.

Safe defaults: when no store is configured, or the store cannot be read, or the document is invalid, every
request gets the deployed function's own model and prompt (``MODEL_ID``/``PROMPT_ID``), shadow off and the
default capture rate, and a warning is logged (at most once a minute; the store is retried after a back-off so
a dead endpoint does not cost every request a timeout).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from evalgate.contracts.flags import (
    DEFAULT_CAPTURE_RATE,
    DEFAULT_VARIANT,
    FLAG_CAPTURE_RATE,
    FLAG_SHADOW,
    FLAG_SHADOW_RATE,
    FLAG_VARIANT,
    FlagDocument,
)
from evalgate.contracts.records import COHORT_KEY, cohort_of

STORE_MAX_AGE_S = 30
STORE_RETRY_S = 30.0
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class FlagDecision:
    variant: str
    model_id: str
    prompt_id: str
    capture_rate: float
    shadow: bool
    shadow_rate: float
    source: Literal["appconfig", "defaults"]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    cohort: int | None = None


class FlagResolver:
    """Resolves the flags for one request. Never raises: any store or document problem → safe defaults."""

    def __init__(
        self,
        defaults: FlagDecision,
        feature_flags: Any | None = None,
        logger: logging.Logger | Any | None = None,
        *,
        retry_after_s: float = STORE_RETRY_S,
        warn_every_s: float = WARN_EVERY_S,
        clock: Any = time.monotonic,
    ) -> None:
        self.defaults = replace(defaults, source="defaults")
        self.feature_flags = feature_flags
        self.logger = logger or logging.getLogger(__name__)
        self.retry_after_s = retry_after_s
        self.warn_every_s = warn_every_s
        self._clock = clock
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._last_warned: float | None = None
        self._parsed: tuple[Any, FlagDocument] | None = None
        self.failures = 0

    def _warn(self, message: str, **extra: Any) -> None:
        now = self._clock()
        with self._lock:
            if self._last_warned is not None and now - self._last_warned < self.warn_every_s:
                return
            self._last_warned = now
        self.logger.warning(message, extra=extra)

    def _document(self) -> FlagDocument | None:
        """The validated document, or None (after logging why) when the defaults must be used."""
        if self.feature_flags is None:
            return None
        now = self._clock()
        if now < self._retry_at:
            return None
        try:
            raw = self.feature_flags.get_configuration()
            cached = self._parsed
            if cached is not None and cached[0] is raw:
                return cached[1]
            doc = FlagDocument.model_validate(raw)
        except Exception as exc:
            self.failures += 1
            self._retry_at = now + self.retry_after_s
            self._warn(
                "feature flag store unavailable or invalid; serving safe defaults",
                error=f"{type(exc).__name__}: {exc}"[:500],
                retry_in_s=self.retry_after_s,
                defaults={"model_id": self.defaults.model_id, "prompt_id": self.defaults.prompt_id},
            )
            return None
        self._parsed = (raw, doc)
        return doc

    def resolve(self, subject: str | None) -> FlagDecision:
        cohort = cohort_of(subject) if subject else None
        doc = self._document()
        if doc is None:
            return replace(self.defaults, cohort=cohort)
        ff: Any = self.feature_flags
        d = self.defaults
        ctx: dict[str, Any] = {COHORT_KEY: cohort} if cohort is not None else {}
        try:
            name = str(ff.evaluate(name=FLAG_VARIANT, context=ctx, default=d.variant))
            spec = doc.variant_specs.get(name)
            if spec is None and name != d.variant:
                self._warn("flag variant not defined; using the deployed default", variant=name)
                name = d.variant
            shadow = bool(ff.evaluate(name=FLAG_SHADOW, context=ctx, default=d.shadow))
            shadow_rate = _rate(ff.evaluate(name=FLAG_SHADOW_RATE, context=ctx, default=d.shadow_rate), d.shadow_rate)
            capture = _rate(ff.evaluate(name=FLAG_CAPTURE_RATE, context=ctx, default=d.capture_rate), d.capture_rate)
        except Exception as exc:
            self._warn("feature flag evaluation failed; serving safe defaults", error=f"{type(exc).__name__}: {exc}")
            return replace(d, cohort=cohort)
        return FlagDecision(
            variant=name,
            model_id=spec.model_id if spec else d.model_id,
            prompt_id=spec.prompt_id if spec else d.prompt_id,
            max_tokens=spec.max_tokens if spec else None,
            temperature=spec.temperature if spec else None,
            top_p=spec.top_p if spec else None,
            capture_rate=capture,
            shadow=shadow,
            shadow_rate=shadow_rate,
            source="appconfig",
            cohort=cohort,
        )


def _rate(value: Any, fallback: float) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return fallback
    return rate if 0.0 <= rate <= 1.0 else fallback


def build_resolver(
    model_id: str,
    prompt_id: str,
    logger: Any | None = None,
    env: Mapping[str, str] | None = None,
    appconfig_client: Any | None = None,
) -> FlagResolver:
    """A resolver over AppConfig when ``APPCONFIG_APPLICATION/ENVIRONMENT/PROFILE`` are set, else defaults only."""
    env = os.environ if env is None else env
    defaults = FlagDecision(
        variant=DEFAULT_VARIANT,
        model_id=model_id,
        prompt_id=prompt_id,
        capture_rate=DEFAULT_CAPTURE_RATE,
        shadow=False,
        shadow_rate=0.0,
        source="defaults",
    )
    app, envname, profile = (
        env.get(k, "") for k in ("APPCONFIG_APPLICATION", "APPCONFIG_ENVIRONMENT", "APPCONFIG_PROFILE")
    )
    if not (app and envname and profile):
        return FlagResolver(defaults, None, logger)
    from aws_lambda_powertools.utilities.feature_flags import AppConfigStore, FeatureFlags

    client = appconfig_client
    if client is None:
        from evalgate.adapters.aws import ClientSettings, make_client

        # A flag read must never stall a request: short timeouts, one retry, then the safe defaults.
        client = make_client(
            "appconfigdata",
            ClientSettings.from_env(connect_timeout=1.0, read_timeout=2.0, max_attempts=2, retry_mode="standard"),
        )
    store = AppConfigStore(
        environment=envname, application=app, name=profile, max_age=STORE_MAX_AGE_S, boto3_client=client, logger=logger
    )
    return FlagResolver(defaults, FeatureFlags(store=store, logger=logger), logger)
