"""Guardrails as code: the file is validated against AWS's contract, a change to it is a runtime change, and the
pipeline's run makes a candidate guardrail from it, checks the suites with it and deletes it — against stand-ins
of Bedrock's control plane (CreateGuardrail...) and runtime (ApplyGuardrail, Converse for the judge)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from botocore.validate import validate_parameters

from evalgate.cli import main
from evalgate.core.errors import InputError, ProviderError
from evalgate.engine.guardrail_spec import CandidateGuardrail, load_guardrail_spec
from tests.fakes.bedrock_fake import DUMMY_CREDENTIALS, BedrockFake
from tests.fakes.guardrail_control_fake import GuardrailControlFake
from tests.fakes.guardrail_runtime_fake import GuardrailFake

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "guardrails" / "store-assistant.toml"


def variant(tmp_path: Path, old: str, new: str, name: str = "g.toml") -> Path:
    text = SHIPPED.read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1))
    return path


# ------------------------------------------------------------------------------------------------ the file


def test_the_shipped_guardrail_is_a_valid_create_guardrail_request():
    spec = load_guardrail_spec(SHIPPED)
    import botocore.session

    shape = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateGuardrail").input_shape
    validate_parameters(spec.request(), shape)
    req = spec.request()
    assert {t["name"] for t in req["topicPolicyConfig"]["topicsConfig"]} == {
        "Legal advice",
        "Medical advice",
        "Other customers data",
    }
    assert {"type": "CREDIT_DEBIT_CARD_NUMBER", "action": "ANONYMIZE"} in req["sensitiveInformationPolicyConfig"][
        "piiEntitiesConfig"
    ]
    assert {"type": "PROMPT_ATTACK", "inputStrength": "HIGH", "outputStrength": "NONE"} in req["contentPolicyConfig"][
        "filtersConfig"
    ]
    props = spec.cfn_properties()
    assert props["ContextualGroundingPolicyConfig"] == {
        "FiltersConfig": [{"Type": "GROUNDING", "Threshold": 0.75}, {"Type": "RELEVANCE", "Threshold": 0.5}]
    }


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            'type = "PASSWORD"',
            'type = "PASSWRD"',
            ":58: pii[3].type: 'PASSWRD' is not one of AWS's values (did you mean PASSWORD?)",
        ),
        (
            'name = "Medical advice"',
            'name = "Medical advice\'s"',
            ':18: topics[1].name: "Medical advice\'s" does not match',
        ),
        (
            'PROMPT_ATTACK = { input = "HIGH", output = "NONE" }',
            'PROMPT_ATTACK = { input = "HIGH", output = "LOW" }',
            ":39: content_filters.PROMPT_ATTACK.output: must be NONE",
        ),
        (
            "relevance = 0.5",
            "relevance = 0.5\nrelevence = 0.4",
            ":64: grounding.relevence: Extra inputs are not permitted",
        ),
        ("relevance = 0.5", "relevance = 1.5", ":63: grounding.relevance: Input should be less than or equal to 0.99"),
        ('name = "store-assistant"', 'name = "store assistant"', ":4: name: 'store assistant' does not match"),
        ("[words]", "[words\n", ": not valid TOML"),
    ],
)
def test_every_problem_names_the_file_line_and_field(tmp_path: Path, old: str, new: str, expected: str):
    path = variant(tmp_path, old, new)
    with pytest.raises(InputError) as exc:
        load_guardrail_spec(path)
    assert f"{path}{expected}" in str(exc.value)


def test_a_guardrail_needs_a_policy_and_bytes_are_checked(tmp_path: Path):
    (tmp_path / "empty.toml").write_text('name = "x"\nblocked_input_message = "no"\nblocked_output_message = "no"\n')
    with pytest.raises(InputError, match="needs at least one policy"):
        load_guardrail_spec(tmp_path / "empty.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfename")
    with pytest.raises(InputError, match=r"bin\.toml:1: file is UTF-16"):
        load_guardrail_spec(tmp_path / "bin.toml")
    with pytest.raises(InputError, match="is a folder"):
        load_guardrail_spec(tmp_path)


def test_the_fingerprint_follows_every_setting(tmp_path: Path):
    base = load_guardrail_spec(SHIPPED).fingerprint()
    assert load_guardrail_spec(SHIPPED).fingerprint() == base
    assert load_guardrail_spec(variant(tmp_path, "grounding = 0.75", "grounding = 0.8")).fingerprint() != base
    changed = variant(tmp_path, 'VIOLENCE = { input = "MEDIUM"', 'VIOLENCE = { input = "HIGH"', "v.toml")
    assert load_guardrail_spec(changed).fingerprint() != base


def test_validate_checks_the_guardrail_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    folder = tmp_path / "guardrails"
    folder.mkdir()
    variant(folder, 'type = "PASSWORD"', 'type = "PASSWRD"', "store.toml")
    assert main(["validate", "--golden", str(ROOT / "golden"), "--guardrails", str(folder)]) == 2
    assert "store.toml:58: pii[3].type" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ candidate


def test_candidate_guardrail_is_created_versioned_and_deleted():
    spec = load_guardrail_spec(SHIPPED)
    client = boto3.client("bedrock", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "create_guardrail",
            {
                "guardrailId": "gr-c",
                "guardrailArn": "arn:aws:bedrock:us-east-1:1:guardrail/gr-c",
                "version": "DRAFT",
                "createdAt": "2026-12-05T10:00:00Z",
            },
            {**spec.request(f"evalgate-candidate-{spec.fingerprint()[:16]}"), "tags": ANY, "clientRequestToken": ANY},
        )
        stub.add_response(
            "create_guardrail_version",
            {"guardrailId": "gr-c", "version": "1"},
            {"guardrailIdentifier": "gr-c", "description": ANY},
        )
        stub.add_response("delete_guardrail", {}, {"guardrailIdentifier": "gr-c"})
        with CandidateGuardrail(spec, client) as (gid, version):
            assert (gid, version) == ("gr-c", "1")
        stub.assert_no_pending_responses()


def test_a_candidate_that_cannot_be_versioned_is_deleted_and_the_run_errors():
    spec = load_guardrail_spec(SHIPPED)
    client = boto3.client("bedrock", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response(
            "create_guardrail",
            {
                "guardrailId": "gr-c",
                "guardrailArn": "arn:aws:bedrock:us-east-1:1:guardrail/gr-c",
                "version": "DRAFT",
                "createdAt": "2026-12-05T10:00:00Z",
            },
        )
        stub.add_client_error("create_guardrail_version", "ServiceQuotaExceededException", "too many versions")
        stub.add_response("delete_guardrail", {}, {"guardrailIdentifier": "gr-c"})
        with pytest.raises(ProviderError, match="creating the candidate guardrail"), CandidateGuardrail(spec, client):
            pass
        stub.assert_no_pending_responses()


# ------------------------------------------------------------------------------------------------ end to end


def run_with(config: Path, control: GuardrailControlFake, out: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    def decide(source: str, text: str) -> bool:
        """Block an input that contains a word of the candidate guardrail's word list (as Bedrock would)."""
        words = [
            w["text"].lower()
            for cfg in control.guardrails.values()
            for w in cfg.get("wordPolicyConfig", {}).get("wordsConfig", [])
        ]
        return source == "INPUT" and any(w in text.lower() for w in words)

    with BedrockFake() as bedrock, GuardrailFake(decide, bedrock=bedrock, policy=control.config) as runtime:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", runtime.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", control.url)
        for k, v in DUMMY_CREDENTIALS.items():
            monkeypatch.setenv(k, v)
        code = main(
            [
                "run",
                "--tier",
                "full",
                "--suite",
                "guardrail",
                "--candidate",
                f"replay:{ROOT}/golden/responses/baseline.jsonl",
                "--guardrail-config",
                str(config),
                "--no-cache",
                "--no-progress",
                "--out",
                str(out),
            ]
        )
        calls = list(runtime.calls)
    data = json.loads((out / "results.json").read_text())
    data["_code"], data["_calls"] = code, calls
    return data


def over_refusal(data: dict[str, Any]) -> dict[str, Any]:
    return next(a for a in data["aggregates"] if a["metric"] == "over_refusal_rate")


def test_a_guardrail_change_is_checked_against_the_new_guardrail_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calibrated_judges: Path
):
    with GuardrailControlFake() as control:
        shipped = run_with(SHIPPED, control, tmp_path / "shipped", monkeypatch)
        # the change: a word list that also catches safe look-alikes ("kill an order", "shoot a video", "destroy")
        broad = variant(
            tmp_path,
            'words = ["Brightpath Credit account number"]',
            'words = ["Brightpath Credit account number", "kill", "shoot", "destroy"]',
        )
        changed = run_with(broad, control, tmp_path / "changed", monkeypatch)
    first, second = list(control.guardrails)
    assert control.deleted == [first, second]  # every candidate is removed after its run
    assert {c.guardrail for c in shipped["_calls"]} == {first} and {c.guardrail for c in changed["_calls"]} == {second}
    assert shipped["guardrail"]["config"] == load_guardrail_spec(SHIPPED).fingerprint()
    # its contextual grounding policy scores every judged answer that cites knowledge (11 safe look-alikes)
    grounded = [c for c in shipped["cases"] if "guardrail_grounding" in c["metrics"]]
    assert len(grounded) == 11 and all(c["metrics"]["guardrail_grounding"]["value"] is not None for c in grounded)
    assert all(c["metrics"]["guardrail_relevance"]["details"]["threshold"] == 0.5 for c in grounded)
    # (the stand-in judge fails the quality metrics of both runs; what differs is the guardrail's own gate)
    assert over_refusal(shipped)["value"] == 0.0 and over_refusal(shipped)["status"] != "fail"
    assert not any("over_refusal_rate" in r for r in shipped["verdict"]["reasons"])
    assert over_refusal(changed)["status"] == "fail" and over_refusal(changed)["value"] == pytest.approx(3 / 11)
    assert changed["_code"] == 1 and any("over_refusal_rate" in r for r in changed["verdict"]["reasons"])


def test_offline_tier_says_guardrail_checks_need_bedrock(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(
        [
            "run",
            "--suite",
            "guardrail",
            "--candidate",
            f"replay:{ROOT}/golden/responses/baseline.jsonl",
            "--guardrail-config",
            str(SHIPPED),
            "--no-cache",
            "--no-progress",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "guardrail (ApplyGuardrail): needs Bedrock; tier offline calls no AWS service" in out
    # the file has a contextual grounding policy: its scores are named as not run, not silently absent
    for metric in ("guardrail_grounding", "guardrail_relevance"):
        assert f"{metric}: the guardrail's contextual grounding check needs Bedrock" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert {"guardrail_grounding", "guardrail_relevance"} <= {n["metric"] for n in data["not_run"]}


def test_a_broken_guardrail_file_stops_the_run_before_any_call(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = variant(tmp_path, 'type = "PASSWORD"', 'type = "PASSWRD"')
    code = main(
        [
            "run",
            "--candidate",
            f"replay:{ROOT}/golden/responses/baseline.jsonl",
            "--guardrail-config",
            str(bad),
            "--no-progress",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and f"{bad}:58: pii[3].type" in capsys.readouterr().err
