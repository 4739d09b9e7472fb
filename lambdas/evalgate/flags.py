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

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from evalgate.errors import InputError, Problem
from evalgate.prompts import PROMPT_ID_PATTERN

FLAG_VARIANT = "variant"
FLAG_VARIANTS = "variants"
FLAG_SHADOW = "shadow"
FLAG_SHADOW_RATE = "shadow_sample_rate"
FLAG_CAPTURE_RATE = "capture_sample_rate"
COHORT_KEY = "cohort"

DEFAULT_VARIANT = "default"
DEFAULT_CAPTURE_RATE = 0.1
STORE_MAX_AGE_S = 30
STORE_RETRY_S = 30.0
WARN_EVERY_S = 60.0


class VariantSpec(BaseModel):
    """What a variant changes. Inference parameters left out keep the service defaults."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    model_id: Annotated[str, Field(min_length=1)]
    prompt_id: Annotated[str, Field(pattern=PROMPT_ID_PATTERN)]
    max_tokens: Annotated[int, Field(ge=1, le=8192)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None  # instead of temperature, never with it

    @model_validator(mode="after")
    def _one_sampling_parameter(self) -> VariantSpec:
        if self.temperature is not None and self.top_p is not None:
            raise ValueError("set temperature or top_p, not both: newer Claude models reject both")
        return self


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    action: Annotated[str, Field(min_length=1)]
    key: Annotated[str, Field(min_length=1)]
    value: Any


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    when_match: Any
    conditions: Annotated[list[Condition], Field(min_length=1)]


class Feature(BaseModel):
    """One Powertools feature; the value types per flag are checked by ``FlagDocument``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    default: Any
    boolean_type: bool = True
    rules: dict[str, Rule] = Field(default_factory=dict)

    def values(self) -> list[Any]:
        return [self.default, *(r.when_match for r in self.rules.values())]


def _is_rate(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= float(v) <= 1.0


class FlagDocument(BaseModel):
    """The service's flags. Other features may exist in the same document (they are ignored here).

    (Plain, not generic, models: parametrised pydantic generics are built at import and cost the service's
    cold start; the per-flag value types are checked in the validator instead.)
    """

    model_config = ConfigDict(extra="allow", defer_build=True)

    variant: Feature | None = None
    variants: Feature | None = None
    shadow: Feature | None = None
    shadow_sample_rate: Feature | None = None
    capture_sample_rate: Feature | None = None
    _variant_specs: dict[str, VariantSpec] = PrivateAttr(default_factory=dict)

    @property
    def variant_specs(self) -> dict[str, VariantSpec]:
        return self._variant_specs

    @model_validator(mode="after")
    def _consistent(self) -> FlagDocument:
        for name in (FLAG_VARIANT, FLAG_VARIANTS, FLAG_SHADOW_RATE, FLAG_CAPTURE_RATE):
            feature = getattr(self, name)
            if feature is not None and feature.boolean_type:
                raise ValueError(f'{name}: a non-boolean feature needs "boolean_type": false')
        if self.shadow is not None:
            if not self.shadow.boolean_type:
                raise ValueError("shadow: must be a boolean feature")
            if not all(isinstance(v, bool) for v in self.shadow.values()):
                raise ValueError("shadow: values must be true or false")
        for name in (FLAG_SHADOW_RATE, FLAG_CAPTURE_RATE):
            feature = getattr(self, name)
            if feature is not None and not all(_is_rate(v) for v in feature.values()):
                raise ValueError(f"{name}.default and rule values must be numbers between 0 and 1")
        if self.variants is not None:
            if self.variants.rules or not isinstance(self.variants.default, dict):
                raise ValueError("variants: the default must be an object of name -> {model_id, prompt_id}, no rules")
            for name, spec in self.variants.default.items():
                try:
                    self._variant_specs[str(name)] = VariantSpec.model_validate(spec)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    raise ValueError(f"variants.default.{name}.{where}: {first['msg']}") from None
        if self.variant is not None:
            known = set(self._variant_specs)
            for v in self.variant.values():
                if not isinstance(v, str):
                    raise ValueError("variant: values must be variant names (strings)")
                if v != DEFAULT_VARIANT and v not in known:
                    raise ValueError(f"variant: '{v}' is not defined in variants (known: {', '.join(sorted(known))})")
        return self


def validate_flag_document(doc: Mapping[str, Any], source: str = "flags") -> FlagDocument:
    """Validate a flag document with the Powertools schema and this service's model; raise ``InputError``.

    Usable at synth time (the stack deploys only a document that passes) and at run time.
    """
    from aws_lambda_powertools.utilities.feature_flags.exceptions import SchemaValidationError
    from aws_lambda_powertools.utilities.feature_flags.schema import SchemaValidator

    problems: list[Problem] = []
    try:
        SchemaValidator(schema=dict(doc)).validate()
    except SchemaValidationError as exc:
        problems.append(Problem(source, None, f"feature flag schema: {exc}"))
    try:
        parsed = FlagDocument.model_validate(dict(doc))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(document)"
            problems.append(Problem(source, None, f"{loc}: {err['msg'].removeprefix('Value error, ')}"))
        raise InputError(problems) from None
    if problems:
        raise InputError(problems)
    return parsed


def default_flag_document(
    model_id: str,
    prompt_id: str,
    *,
    capture_rate: float = DEFAULT_CAPTURE_RATE,
    candidate: VariantSpec | None = None,
    candidate_percent: int = 0,
    shadow: bool = False,
    shadow_rate: float = 0.0,
) -> dict[str, Any]:
    """A valid starting document: everyone on ``control`` unless ``candidate_percent`` of cohorts get ``candidate``."""
    variants: dict[str, Any] = {"control": {"model_id": model_id, "prompt_id": prompt_id}}
    variant: dict[str, Any] = {"default": "control", "boolean_type": False}
    if candidate is not None:
        variants["candidate"] = candidate.model_dump(exclude_none=True)
        if candidate_percent > 0:
            variant["rules"] = {
                f"candidate {candidate_percent}%": {
                    "when_match": "candidate",
                    "conditions": [
                        {
                            "action": "MODULO_RANGE",
                            "key": COHORT_KEY,
                            "value": {"BASE": 100, "START": 0, "END": min(candidate_percent, 100) - 1},
                        }
                    ],
                }
            }
    doc = {
        FLAG_VARIANT: variant,
        FLAG_VARIANTS: {"default": variants, "boolean_type": False},
        FLAG_SHADOW: {"default": shadow},
        FLAG_SHADOW_RATE: {"default": shadow_rate, "boolean_type": False},
        FLAG_CAPTURE_RATE: {"default": capture_rate, "boolean_type": False},
    }
    validate_flag_document(doc, "default_flag_document")
    return doc


def cohort_of(subject: str) -> int:
    """Sticky 64-bit bucket of a user/session id (stable across processes, unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(subject.encode("utf-8")).digest()[:8], "big")


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
        from evalgate.providers.aws import ClientSettings, make_client

        # A flag read must never stall a request: short timeouts, one retry, then the safe defaults.
        client = make_client(
            "appconfigdata",
            ClientSettings.from_env(connect_timeout=1.0, read_timeout=2.0, max_attempts=2, retry_mode="standard"),
        )
    store = AppConfigStore(
        environment=envname, application=app, name=profile, max_age=STORE_MAX_AGE_S, boto3_client=client, logger=logger
    )
    return FlagResolver(defaults, FeatureFlags(store=store, logger=logger), logger)
