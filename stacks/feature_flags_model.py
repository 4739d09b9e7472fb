"""The AppConfig feature-flag document, modelled and validated at synth time.

The service reads the flags with Powertools ``FeatureFlags`` over an ``AppConfigStore`` (see
``lambdas/store_assistant/flags.py``), so the rendered document uses the Powertools rule schema: non-boolean features
(``boolean_type: false``) and ``MODULO_RANGE`` rules on ``cohort``, a 64-bit hash of the user or session id, so
a user keeps the same variant on every request. Settings come from the ``featureFlags`` context object::

    {"default_variant": "control",
     "variants": {"control":   {"model_id": "us.anthropic...", "prompt_version": "support/v1"},
                  "candidate": {"model_id": "us.anthropic...", "prompt_version": "support/v2"}},
     "cohorts": [{"variant": "candidate", "start": 0, "end": 9}],          # 10 % of users
     "shadow": {"enabled": true, "sample_rate": 0.05},
     "capture": {"sample_rate": 0.2},
     "extra_model_ids": ["us.anthropic..."]}                              # models only a variant uses

Invalid content stops synth: unknown or badly named variants, overlapping cohorts, out-of-range rates, a
variant model the service role may not invoke or a prompt that is not in ``prompts/`` (checked in settings),
and finally the runtime's own validator (``evalgate.contracts.flags.validate_flag_document``: Powertools' schema +
the service's model of the document).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evalgate.contracts.records import COHORT_KEY

MODULO_BASE = 100
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
# Bedrock model ids ("anthropic.claude-...:0"), inference-profile ids ("us.anthropic...") or a bedrock ARN.
MODEL_ID_PATTERN = re.compile(
    r"^(arn:aws[a-z-]*:bedrock:[a-z0-9-]*:\d{0,12}:[a-z-]+/[A-Za-z0-9.:/_-]+|[a-z0-9-]+\.[A-Za-z0-9.:_-]+)$"
)
_MODEL = MODEL_ID_PATTERN
# prompts/<name>/<version>/, e.g. "support/v1", "support/v2-concise" (evalgate.contracts.flags.VariantSpec.prompt_id)
PROMPT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$")
_PROMPT = PROMPT_ID_PATTERN

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Bucket = Annotated[int, Field(ge=0, le=MODULO_BASE - 1)]


class FlagContentError(ValueError):
    """The rendered flag document failed the runtime validator."""


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str
    prompt_version: str

    @field_validator("model_id")
    @classmethod
    def _model(cls, v: str) -> str:
        if not _MODEL.match(v):
            raise ValueError("not a Bedrock model id, inference profile id or bedrock ARN")
        return v

    @field_validator("prompt_version")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not _PROMPT.match(v):
            raise ValueError("must look like 'support/v1' (prompts/<name>/<version>/)")
        return v


class Cohort(BaseModel):
    """Users whose ``cohort % 100`` falls in [start, end] get ``variant``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str
    start: Bucket
    end: Bucket

    @model_validator(mode="after")
    def _range(self) -> Cohort:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) must not be greater than end ({self.end})")
        return self


class Shadow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    sample_rate: Rate = 0.05


class Capture(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: Rate = 0.25


class FeatureFlagsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_variant: str = "control"
    variants: dict[str, Variant] = Field(min_length=1)
    cohorts: list[Cohort] = Field(default_factory=list)
    shadow: Shadow = Field(default_factory=Shadow)
    capture: Capture = Field(default_factory=Capture)
    extra_model_ids: list[str] = Field(default_factory=list)

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict[str, Variant]) -> dict[str, Variant]:
        for name in v:
            if not _NAME.match(name):
                raise ValueError(f"variant name {name!r} must match {_NAME.pattern}")
            if name == "default":
                raise ValueError("'default' is reserved (the service's deployed MODEL_ID/PROMPT_ID)")
        return v

    @field_validator("extra_model_ids")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for m in v:
            if not _MODEL.match(m):
                raise ValueError(f"{m!r} is not a Bedrock model id")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> FeatureFlagsConfig:
        if self.default_variant not in self.variants:
            raise ValueError(
                f"default_variant {self.default_variant!r} is not one of the variants {sorted(self.variants)}"
            )
        taken: list[tuple[int, int, str]] = []
        for c in self.cohorts:
            if c.variant not in self.variants:
                raise ValueError(f"cohort variant {c.variant!r} is not one of the variants {sorted(self.variants)}")
            for s, e, other in taken:
                if c.start <= e and s <= c.end:
                    raise ValueError(f"cohort {c.variant} [{c.start}, {c.end}] overlaps cohort {other} [{s}, {e}]")
            taken.append((c.start, c.end, c.variant))
        if self.shadow.enabled and self.shadow.sample_rate == 0.0:
            raise ValueError("shadow.sample_rate must be > 0 when shadow.enabled is true")
        return self

    @classmethod
    def default(cls, model_id: str, prompt_version: str) -> FeatureFlagsConfig:
        return cls(variants={"control": Variant(model_id=model_id, prompt_version=prompt_version)})

    def to_document(self) -> dict[str, Any]:
        """Render the Powertools FeatureFlags document that AppConfig serves to the service."""
        rules: dict[str, Any] = {}
        for c in self.cohorts:
            rules[f"{c.variant} cohorts {c.start}-{c.end}"] = {
                "when_match": c.variant,
                "conditions": [
                    {
                        "action": "MODULO_RANGE",
                        "key": COHORT_KEY,
                        "value": {"BASE": MODULO_BASE, "START": c.start, "END": c.end},
                    }
                ],
            }
        variant: dict[str, Any] = {"default": self.default_variant, "boolean_type": False}
        if rules:
            variant["rules"] = rules
        return {
            "variant": variant,
            "variants": {
                "default": {
                    name: {"model_id": v.model_id, "prompt_id": v.prompt_version} for name, v in self.variants.items()
                },
                "boolean_type": False,
            },
            "shadow": {"default": self.shadow.enabled},
            "shadow_sample_rate": {"default": self.shadow.sample_rate, "boolean_type": False},
            "capture_sample_rate": {"default": self.capture.sample_rate, "boolean_type": False},
        }


def validate_document(doc: dict[str, Any]) -> None:
    """Run the runtime's own validator (``evalgate.contracts.flags``: Powertools' schema + the variant model) on
    the rendered document, so the stack deploys only what the Lambda will accept."""
    from evalgate.contracts.flags import validate_flag_document

    try:
        validate_flag_document(doc, "featureFlags")
    except Exception as exc:  # evalgate.core.errors.InputError lists every problem
        raise FlagContentError(f"featureFlags: the rendered AppConfig document is invalid: {exc}") from None
