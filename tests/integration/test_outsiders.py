"""The service played by an outsider who has only its public URL: nothing they send moves a release metric.

Handler in-process with HTTP API v2 events, the signing key in (moto) Secrets Manager, the vote ledger in
(moto) DynamoDB. "Metric unchanged" = the invocation printed no EMF blob carrying FeedbackScore or
ConversionRate, the only metrics /feedback writes (and the business metrics the rollback alarms read).
"""

# ruff: noqa: F811  (the tests request the imported ``env`` fixture by its name)
from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from evalgate.adapters.signing import SYNTHETIC_HEADER, Attribution, SecretKeySource, issue_request_id, synthetic_header

from .test_handler_service import MODEL, Ctx, body_of, drain, emf_lines, env, http_event  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")
REFUSED = "request_id: not a request id this service issued within the feedback window"


def business_metrics(out: str) -> list[float]:
    values: list[float] = []
    for doc in emf_lines(out):
        for name in ("FeedbackScore", "ConversionRate"):
            values += doc.get(name, [])
    return values


def answer(h: Any, question: str = "Can I return a gift card?") -> dict[str, Any]:
    r = h.handler(http_event("/ask", {"question": question}), Ctx())
    assert r["statusCode"] == 200
    return body_of(r)


def vote(h: Any, request_id: str, **kind: Any) -> dict[str, Any]:
    return h.handler(http_event("/feedback", {"request_id": request_id, **kind}), Ctx())  # type: ignore[no-any-return]


def service_keys() -> Any:
    source = SecretKeySource.from_env()
    assert source is not None
    return source()


def refused_without_a_metric(h: Any, capsys: Any, request_id: str) -> None:
    capsys.readouterr()
    for kind in ({"rating": "down"}, {"converted": False}):
        r = vote(h, request_id, **kind)
        assert r["statusCode"] == 400
        assert body_of(r) == {"error": REFUSED}  # the same words for every refusal: nothing about the key
    assert business_metrics(capsys.readouterr().out) == []


def test_a_forged_id_in_the_old_unsigned_format_is_refused(env: dict[str, Any], capsys: Any) -> None:
    token = base64.urlsafe_b64encode(json.dumps(["12", MODEL, "support/v1"]).encode()).decode().rstrip("=")
    refused_without_a_metric(env["h"], capsys, "a" * 32 + "." + token)


def test_a_forged_id_with_a_made_up_signature_is_refused(env: dict[str, Any], capsys: Any) -> None:
    token = base64.urlsafe_b64encode(json.dumps(["12", MODEL, "support/v1", int(time.time())]).encode()).decode()
    fake_sig = base64.urlsafe_b64encode(b"\x00" * 32).decode().rstrip("=")
    refused_without_a_metric(env["h"], capsys, "b" * 32 + "." + token.rstrip("=") + "." + fake_sig)


def test_a_tampered_signature_or_attribution_is_refused(env: dict[str, Any], capsys: Any) -> None:
    h = env["h"]
    rid = answer(h)["request_id"]
    unique, token, sig = rid.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    refused_without_a_metric(h, capsys, f"{unique}.{token}.{flipped}")
    claims = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    claims[0] = "42"  # steer the vote to another version, keeping the genuine signature
    moved = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
    refused_without_a_metric(h, capsys, f"{unique}.{moved}.{sig}")
    refused_without_a_metric(h, capsys, f"{'c' * 32}.{token}.{sig}")  # a signature moved to another id


def test_an_expired_id_is_refused(env: dict[str, Any], capsys: Any) -> None:
    old = issue_request_id(service_keys(), Attribution("12", MODEL, "support/v1"), now=time.time() - 3700)
    refused_without_a_metric(env["h"], capsys, old)  # genuinely signed, but older than the 1 h default window
    future = issue_request_id(service_keys(), Attribution("12", MODEL, "support/v1"), now=time.time() + 3600)
    refused_without_a_metric(env["h"], capsys, future)


def test_the_feedback_window_is_configurable(env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    h = env["h"]
    monkeypatch.setenv("FEEDBACK_WINDOW_SECONDS", "7200")
    monkeypatch.setattr(h, "_service", None)
    rid = issue_request_id(service_keys(), Attribution("12", MODEL, "support/v1"), now=time.time() - 3700)
    assert vote(h, rid, rating="up")["statusCode"] == 202


def test_a_replayed_vote_is_acknowledged_and_not_counted(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    rid = answer(h)["request_id"]
    capsys.readouterr()
    assert vote(h, rid, rating="down")["statusCode"] == 202
    assert vote(h, rid, converted=False)["statusCode"] == 202  # another kind of feedback: its own vote
    assert sorted(business_metrics(capsys.readouterr().out)) == [0.0, 0.0]
    for _ in range(3):
        again = vote(h, rid, rating="down")
        assert again["statusCode"] == 200 and body_of(again)["status"] == "already recorded"
    monkeypatch.setattr(h, "_service", None)  # a new environment: the ledger is in DynamoDB, not in memory
    assert body_of(vote(h, rid, rating="up"))["status"] == "already recorded"
    assert business_metrics(capsys.readouterr().out) == []
    items = env["ddb"].scan(TableName="feedback")["Items"]
    assert len(items) == 2 and all(int(i["expires_at"]["N"]) > time.time() + 3600 for i in items)


def test_the_synthetic_header_from_an_outside_caller_does_not_hide_traffic(
    env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    from store_assistant import flags

    monkeypatch.setattr(flags, "DEFAULT_CAPTURE_RATE", 1.0)
    body = json.dumps({"question": "Do you ship to Canada?"})
    real = synthetic_header(service_keys(), body)[SYNTHETIC_HEADER]
    attempts = [
        {"user-agent": "evalgate/1.0"},  # the old marker
        {SYNTHETIC_HEADER: "1"},
        {SYNTHETIC_HEADER: f"{int(time.time())}.{base64.urlsafe_b64encode(b'x' * 32).decode()}"},
        {SYNTHETIC_HEADER: f"{int(real.split('.')[0]) - 1}.{real.split('.')[1]}"},  # a genuine signature, moved
    ]
    for headers in attempts:
        assert h.handler(http_event("/ask", body, headers=headers), Ctx())["statusCode"] == 200
    other = json.dumps({"question": "What is your returns policy?"})  # a seen header reused on another body
    assert h.handler(http_event("/ask", other, headers={SYNTHETIC_HEADER: real}), Ctx())["statusCode"] == 200
    stale = synthetic_header(service_keys(), body, now=time.time() - 900)
    assert h.handler(http_event("/ask", body, headers=stale), Ctx())["statusCode"] == 200
    assert h.get_service().capture.flush(5)
    captured: list[dict[str, Any]] = []
    while batch := drain(env["sqs"], env["capture_url"]):
        captured += batch
    assert len(captured) == len(attempts) + 2  # every one of them reached the online judge


def test_rotation_keeps_issued_ids_valid_during_the_grace_period_only(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    before = answer(h)["request_id"]
    env["sm"].put_secret_value(SecretId="evalgate-test/request-signing", SecretString="r" * 48)  # rotate
    monkeypatch.setattr(h, "_service", None)  # an environment that reads the rotated secret
    after = answer(h)["request_id"]
    assert after.split(".")[2] != before.split(".")[2]
    capsys.readouterr()
    assert vote(h, before, rating="up")["statusCode"] == 202  # signed with AWSPREVIOUS, within the grace period
    assert vote(h, after, rating="up")["statusCode"] == 202  # signed with AWSCURRENT
    assert business_metrics(capsys.readouterr().out) == [1.0, 1.0]

    monkeypatch.setenv("EVALGATE_SIGNING_GRACE_SECONDS", "0")  # grace over: the previous key no longer verifies
    monkeypatch.setattr(h, "_service", None)
    refused_without_a_metric(h, capsys, before)


def test_without_the_key_or_the_ledger_feedback_fails_closed(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    rid = answer(h)["request_id"]
    monkeypatch.setenv("FEEDBACK_TABLE", "no-such-table")
    monkeypatch.setattr(h, "_service", None)
    capsys.readouterr()
    r = vote(h, rid, rating="down")
    assert r["statusCode"] == 503 and r["headers"]["retry-after"]
    monkeypatch.setenv("FEEDBACK_TABLE", "feedback")
    monkeypatch.setenv("EVALGATE_SIGNING_SECRET", "no-such-secret")
    monkeypatch.setattr(h, "_service", None)
    unsigned = answer(h)  # users are still answered; the id just cannot be rated
    assert unsigned["request_id"].endswith(".")
    assert vote(h, rid, rating="down")["statusCode"] == 503
    assert business_metrics(capsys.readouterr().out) == []
    assert "no-such-secret" not in json.dumps(body_of(r))


def test_an_environment_with_a_stale_key_cache_rereads_the_secret_but_forgeries_cannot_make_it_repeat(
    env: dict[str, Any], capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = env["h"]
    answer(h)
    stale = h.get_service()  # has the key in its cache (5 min)
    monkeypatch.setattr(stale.keys, "_read_at", stale.keys._read_at - 60)  # ... read a minute ago
    reads: list[str] = []
    stale.keys._get_provider().client.meta.events.register(
        "before-call.secrets-manager.GetSecretValue", lambda **kw: reads.append("read")
    )
    env["sm"].put_secret_value(SecretId="evalgate-test/request-signing", SecretString="n" * 48)  # rotate
    monkeypatch.setattr(h, "_service", None)
    fresh_id = answer(h)["request_id"]  # issued by an environment that read the new key
    monkeypatch.setattr(h, "_service", stale)
    capsys.readouterr()
    assert vote(h, fresh_id, rating="up")["statusCode"] == 202  # the stale environment re-read the secret
    assert business_metrics(capsys.readouterr().out) == [1.0]
    assert reads == ["read", "read"]  # AWSCURRENT and AWSPREVIOUS, once
    token = base64.urlsafe_b64encode(json.dumps(["12", MODEL, "support/v1", int(time.time())]).encode()).decode()
    for i in range(5):
        refused_without_a_metric(h, capsys, f"{i:032x}.{token.rstrip('=')}.{'A' * 43}")
    assert reads == ["read", "read"]  # forged ids do not make it call Secrets Manager again
