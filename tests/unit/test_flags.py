"""Feature flags: document validation, sticky cohorts, AppConfig through Stubber, safe defaults."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.feature_flags import FeatureFlags
from aws_lambda_powertools.utilities.feature_flags.base import StoreProvider
from aws_lambda_powertools.utilities.feature_flags.exceptions import ConfigurationStoreError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from evalgate.contracts.flags import VariantSpec, default_flag_document, validate_flag_document
from evalgate.contracts.records import cohort_of
from evalgate.core.errors import InputError
from store_assistant.flags import FlagDecision, FlagResolver, build_resolver

CONTROL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
CANDIDATE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"


def doc(percent: int = 10, **kw: Any) -> dict[str, Any]:
    return default_flag_document(
        CONTROL,
        "support/v1",
        candidate=VariantSpec(model_id=CANDIDATE, prompt_id="support/v2-concise"),
        candidate_percent=percent,
        **kw,
    )


class DictStore(StoreProvider):
    """A store object injected into FeatureFlags: returns a document or raises."""

    def __init__(self, document: Any) -> None:
        self.document = document
        self.calls = 0

    @property
    def get_raw_configuration(self) -> dict[str, Any]:
        return self.get_configuration()

    def get_configuration(self) -> dict[str, Any]:
        self.calls += 1
        if isinstance(self.document, Exception):
            raise self.document
        return self.document  # type: ignore[no-any-return]


def defaults() -> FlagDecision:
    return FlagDecision(
        variant="default",
        model_id=CONTROL,
        prompt_id="support/v1",
        capture_rate=0.1,
        shadow=False,
        shadow_rate=0.0,
        source="defaults",
    )


def resolver(store: StoreProvider, **kw: Any) -> FlagResolver:
    return FlagResolver(defaults(), FeatureFlags(store=store), logging.getLogger("test-flags"), **kw)


def test_default_document_is_valid_and_round_trips() -> None:
    d = doc(25, capture_rate=0.3, shadow=True, shadow_rate=0.05)
    parsed = validate_flag_document(d)
    assert parsed.variants is not None and set(parsed.variants.default) == {"control", "candidate"}
    rule = next(iter(d["variant"]["rules"].values()))
    assert rule["conditions"][0]["value"] == {"BASE": 100, "START": 0, "END": 24}


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["variant"].update(default="nope"), "'nope' is not defined in variants"),
        (lambda d: d["capture_sample_rate"].update(default=1.5), "capture_sample_rate.default"),
        (lambda d: d["variant"].pop("boolean_type"), "boolean_type"),
        (lambda d: d["variants"]["default"]["candidate"].update(prompt_id="no slash"), "prompt_id"),
        (
            lambda d: next(iter(d["variant"]["rules"].values()))["conditions"][0].update(value={"BASE": 100}),
            "MODULO_RANGE",
        ),
    ],
)
def test_invalid_documents_are_rejected_with_the_field(mutate: Any, fragment: str) -> None:
    d = doc()
    mutate(d)
    with pytest.raises(InputError) as exc:
        validate_flag_document(d, "flags.json")
    assert fragment in str(exc.value) and "flags.json" in str(exc.value)


def test_cohorts_are_sticky_and_split_by_modulo_range() -> None:
    r = resolver(DictStore(doc(10)))
    users = [f"user-{i}" for i in range(3000)]
    first = {u: r.resolve(u) for u in users}
    again = resolver(DictStore(doc(10)))  # another Lambda instance
    assert all(again.resolve(u).variant == first[u].variant for u in users[:300])
    share = sum(d.variant == "candidate" for d in first.values()) / len(users)
    assert 0.08 < share < 0.12
    for u, d in first.items():
        expected = "candidate" if cohort_of(u) % 100 <= 9 else "control"
        assert d.variant == expected
        assert d.model_id == (CANDIDATE if expected == "candidate" else CONTROL)
        assert d.source == "appconfig"
    cand = next(d for d in first.values() if d.variant == "candidate")
    assert cand.prompt_id == "support/v2-concise"


def test_request_without_subject_gets_the_default_variant() -> None:
    d = resolver(DictStore(doc(100))).resolve(None)  # even when 100% of cohorts are on the candidate
    assert d.variant == "control" and d.cohort is None


def test_rates_and_shadow_come_from_the_document() -> None:
    d = resolver(DictStore(doc(0, capture_rate=0.5, shadow=True, shadow_rate=0.2))).resolve("u-1")
    assert (d.capture_rate, d.shadow, d.shadow_rate) == (0.5, True, 0.2)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_store_failure_serves_defaults_warns_once_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    store = DictStore(ConfigurationStoreError("Unable to get AWS AppConfig configuration file"))
    clock = Clock()
    r = resolver(store, clock=clock, retry_after_s=30, warn_every_s=60)
    with caplog.at_level(logging.WARNING, logger="test-flags"):
        for _ in range(5):
            d = r.resolve("user-1")
            assert (d.model_id, d.prompt_id, d.shadow, d.source) == (CONTROL, "support/v1", False, "defaults")
    assert store.calls == 1  # backed off: no store call per request
    assert [rec.getMessage() for rec in caplog.records].count(
        "feature flag store unavailable or invalid; serving safe defaults"
    ) == 1
    clock.t += 31
    store.document = doc(100)
    assert r.resolve("user-1").variant == "candidate"  # retried after the back-off, recovered


def test_invalid_document_in_store_serves_defaults(caplog: pytest.LogCaptureFixture) -> None:
    bad = doc()
    bad["variant"]["default"] = "ghost"
    with caplog.at_level(logging.WARNING, logger="test-flags"):
        d = resolver(DictStore(bad)).resolve("user-1")
    assert d.source == "defaults" and d.model_id == CONTROL
    assert any("serving safe defaults" in rec.getMessage() for rec in caplog.records)


def _appconfig_client(document: dict[str, Any] | None) -> tuple[Any, Stubber]:
    client = boto3.client("appconfigdata", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "start_configuration_session",
        {"InitialConfigurationToken": "token-1"},
        {
            "ApplicationIdentifier": "evalgate",
            "EnvironmentIdentifier": "prod",
            "ConfigurationProfileIdentifier": "service-flags",
        },
    )
    if document is None:
        stub.add_client_error("get_latest_configuration", "BadRequestException", "Invalid token", 400)
    else:
        raw = json.dumps(document).encode()
        stub.add_response(
            "get_latest_configuration",
            {
                "NextPollConfigurationToken": "token-2",
                "NextPollIntervalInSeconds": 60,
                "ContentType": "application/json",
                "Configuration": StreamingBody(io.BytesIO(raw), len(raw)),
            },
            {"ConfigurationToken": "token-1"},
        )
    stub.activate()
    return client, stub


ENV = {"APPCONFIG_APPLICATION": "evalgate", "APPCONFIG_ENVIRONMENT": "prod", "APPCONFIG_PROFILE": "service-flags"}


def test_appconfig_store_through_stubbed_appconfigdata() -> None:
    client, stub = _appconfig_client(doc(100))
    r = build_resolver(CONTROL, "support/v1", env=ENV, appconfig_client=client)
    d = r.resolve("user-7")
    assert (d.variant, d.model_id, d.prompt_id, d.source) == ("candidate", CANDIDATE, "support/v2-concise", "appconfig")
    r.resolve("user-8")  # served from the store's cache: no second AppConfig call
    stub.assert_no_pending_responses()


def test_appconfig_error_falls_back_to_defaults() -> None:
    client, _stub = _appconfig_client(None)
    r = build_resolver(CONTROL, "support/v1", env=ENV, appconfig_client=client)
    d = r.resolve("user-7")
    assert d.source == "defaults" and d.model_id == CONTROL and r.failures == 1


def test_no_store_configured_means_defaults_without_calls() -> None:
    r = build_resolver(CONTROL, "support/v1", env={})
    assert r.feature_flags is None
    assert r.resolve("x").source == "defaults"
