"""The feature-flag document: what the stacks deploy to AppConfig and a service reads back.

The Powertools FeatureFlags schema (features with a default and rules of conditions) constrained to what the
traffic ramp uses: the prompt/model ``variant`` per cohort (``COHORT_KEY`` modulo range rules), the ``shadow``
switch and the shadow and capture sample rates. ``validate_flag_document`` is the one check, run by the stack
before it deploys a document and by the service when it loads one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from evalgate.contracts.records import COHORT_KEY
from evalgate.core.errors import InputError, Problem, format_validation_error
from evalgate.core.prompts import PROMPT_ID_PATTERN

FLAG_VARIANT = "variant"
FLAG_VARIANTS = "variants"
FLAG_SHADOW = "shadow"
FLAG_SHADOW_RATE = "shadow_sample_rate"
FLAG_CAPTURE_RATE = "capture_sample_rate"
DEFAULT_VARIANT = "default"
DEFAULT_CAPTURE_RATE = 0.1


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
                    raise ValueError(format_validation_error(exc, prefix=f"variants.default.{name}.")[0]) from None
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
        problems += [Problem(source, None, m) for m in format_validation_error(exc, root="(document)")]
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
