"""Property-based checks (hypothesis): whatever bytes, shapes and sizes the loaders and event parsers get, the only
exception that escapes is the documented one (``InputError`` for files, the parser's own error type for events),
and its message names the file (and line) or the field.

Example counts are modest so the suite stays fast on two cores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalgate.adapters.replay import ReplayCandidate
from evalgate.core.config import load_config
from evalgate.core.dataset import load_cases, load_knowledge, parse_json_model
from evalgate.core.errors import InputError
from evalgate.core.inputs import JsonProblem, loads, read_text
from evalgate.core.results import RunResult, load_result
from evalgate.release import deploy_hooks, online, shadow, shadow_report
from evalgate.release.notify import notify
from evalgate.release.notify.events import NotifyEventError
from evalgate.release.notify.lookups import Lookup
from store_assistant.service import AskRequest, HttpOutcome, http_body, parse_json_body

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# Bytes that look like the real thing often enough to get past the first check: JSON fragments, TOML-ish lines,
# byte-order marks, invalid UTF-8, deep brackets.
fragments = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"id": "c-1"',
        b'"prompt": "hi"',
        b",",
        b"\n",
        b"\xef\xbb\xbf",
        b"\xff\xfe",
        b"\xe9",
        b"\x00",
        b"[thresholds]\n",
        b"similarity = 0.8\n",
        b"x = true\n",
        b"## a.b: T\n",
        b"[" * 300,
        b"1e999999",
        b"NaN",
    ]
)
bytes_like_inputs = st.lists(fragments | st.binary(max_size=40), max_size=12).map(b"".join)


def write(tmp: Path, name: str, raw: bytes) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    return path


def named(exc: InputError, name: str) -> None:
    assert exc.problems, "an InputError must carry at least one problem"
    for p in exc.problems:
        assert name in p.file and p.message, str(p)


# ------------------------------------------------------------------------------------------------ loaders


@FAST
@given(raw=bytes_like_inputs)
def test_read_text_and_loads_raise_only_their_errors(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, "any.txt", raw)
    try:
        text = read_text(path)
    except InputError as exc:
        named(exc, "any.txt")
        return
    try:
        loads(text)
    except JsonProblem as exc:
        assert str(exc)


@FAST
@given(raw=bytes_like_inputs)
def test_case_files_report_problems_never_raise(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, "cases.jsonl", raw)
    _cases, _lines, problems = load_cases(path, "regression")
    for p in problems:
        assert p.file.endswith("cases.jsonl") and p.message
        assert p.line is None or p.line >= 1


@FAST
@given(records=st.lists(json_values, max_size=5))
def test_case_files_of_any_json_shape(tmp_path: Path, records: list[Any]) -> None:
    path = write(tmp_path, "cases.jsonl", "\n".join(json.dumps(r) for r in records).encode())
    cases, _lines, problems = load_cases(path, "regression")
    assert len(cases) + len(problems) >= 1  # every file says something: cases, or why not


@FAST
@given(raw=bytes_like_inputs)
def test_knowledge_files_report_problems_never_raise(tmp_path: Path, raw: bytes) -> None:
    folder = tmp_path / "knowledge"
    write(folder, "k.md", raw)
    _entries, problems = load_knowledge(folder)
    assert all(p.file and p.message for p in problems)


@FAST
@given(raw=bytes_like_inputs)
def test_gate_config_raises_only_input_errors(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path, "gate.toml", raw)
    try:
        load_config(path)
    except InputError as exc:
        named(exc, "gate.toml")


toml_tables = st.dictionaries(
    st.sampled_from(["thresholds", "gate", "suites", "models", "pricing", "cost", "guardrail", "tiers", "thresholdz"]),
    st.dictionaries(st.text(min_size=1, max_size=12), json_scalars, max_size=3),
    max_size=4,
)


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    out = []
    for table, values in tables.items():
        out.append(f"[{table}]")
        for k, v in values.items():
            if v is None:
                continue
            out.append(f"{json.dumps(k)} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}")
    return "\n".join(out) + "\n"


@FAST
@given(tables=toml_tables)
def test_gate_config_of_any_table_shape(tmp_path: Path, tables: dict[str, dict[str, Any]]) -> None:
    path = write(tmp_path, "gate.toml", to_toml(tables).encode())
    try:
        load_config(path)
    except InputError as exc:
        named(exc, "gate.toml")


@FAST
@given(raw=bytes_like_inputs, suffix=st.sampled_from([".jsonl", ".json"]))
def test_replay_files_raise_only_input_errors(tmp_path: Path, raw: bytes, suffix: str) -> None:
    path = write(tmp_path, f"answers{suffix}", raw)
    try:
        ReplayCandidate(path)
    except InputError as exc:
        named(exc, "answers")


@FAST
@given(doc=json_values)
def test_results_json_of_any_shape_is_an_input_error(tmp_path: Path, doc: Any) -> None:
    path = write(tmp_path, "results.json", json.dumps(doc).encode())
    try:
        result = load_result(path, "baseline")
    except InputError as exc:
        named(exc, "results.json")
    else:
        assert isinstance(result, RunResult)


@FAST
@given(raw=bytes_like_inputs)
def test_shadow_pairs_report_problems_never_raise(tmp_path: Path, raw: bytes) -> None:
    write(tmp_path / "pairs", "p.jsonl", raw)
    pairs, problems = shadow_report.read_pairs(tmp_path / "pairs")
    assert all("p.jsonl" in p for p in problems)
    assert len({p.request_id for p in pairs}) == len(pairs)


# ------------------------------------------------------------------------------------------------ event parsers

events = json_values | st.dictionaries(
    st.sampled_from(
        ["Records", "DeploymentId", "LifecycleEventHookExecutionId", "id", "source", "detail-type", "detail"]
    ),
    json_values,
    max_size=6,
)
bodies = st.text(max_size=200) | bytes_like_inputs.map(lambda b: b.decode("latin-1")) | json_values.map(json.dumps)


@FAST
@given(body=bodies)
def test_capture_records_parse_or_raise_bad_capture(body: str) -> None:
    try:
        online.parse_capture(body)
    except online.BadCaptureRecord as exc:
        assert str(exc).startswith("capture record")


@FAST
@given(body=bodies)
def test_shadow_messages_parse_or_raise_bad_message(body: str) -> None:
    try:
        shadow.parse_message(body)
    except shadow.BadShadowMessage as exc:
        assert str(exc).startswith("shadow message")


@FAST
@given(event=events)
def test_hook_events_parse_or_raise_hook_event_error(event: Any) -> None:
    try:
        hook = deploy_hooks.parse_hook_event(event)
    except deploy_hooks.HookEventError as exc:
        assert "CodeDeploy lifecycle hook event" in str(exc)
    else:
        assert hook.DeploymentId.startswith("d-") and hook.LifecycleEventHookExecutionId


class _NoLookups(Lookup):
    def __init__(self) -> None:
        super().__init__(client=self._refuse)

    @staticmethod
    def _refuse(service: str) -> Any:
        raise RuntimeError("lookups are best effort")


class _Sns:
    def publish(self, **kw: Any) -> dict[str, str]:
        return {"MessageId": "m-1"}


gate_events = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=8),
        "source": st.just("evalgate"),
        "detail-type": st.just("EvalGate Verdict"),
        "detail": st.dictionaries(
            st.sampled_from(["verdict", "run_id", "tier", "candidate", "reasons", "aggregates", "cases", "links"]),
            json_values | st.sampled_from(["REVIEW", "PASS"]),
            max_size=6,
        ),
    }
)


@FAST
@given(event=events | gate_events)
def test_notifier_events_send_or_raise_notify_event_error(event: Any) -> None:
    try:
        result = notify(event, lookup=_NoLookups(), sns=_Sns(), topic_arn="t", default_region="us-east-1")
    except NotifyEventError as exc:
        assert "event" in str(exc)
    else:
        assert result.status in ("sent", "ignored")


@FAST
@given(body=st.binary(max_size=300) | bodies.map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_request_bodies_are_an_answer_or_a_4xx(body: bytes) -> None:
    parsed = parse_json_body(body, AskRequest)
    if isinstance(parsed, HttpOutcome):
        assert 400 <= parsed.status < 500 and parsed.body["error"]
    else:
        assert isinstance(parsed, AskRequest)


@FAST
@given(body=st.text(max_size=200) | st.none(), b64=st.booleans())
def test_raw_http_bodies_decode_or_are_a_4xx(body: str | None, b64: bool) -> None:
    out = http_body(body, b64)
    assert isinstance(out, bytes) or 400 <= out.status < 500


@pytest.mark.parametrize(
    ("body", "b64", "status", "fragment"),
    [
        ("%%%not-base64%%%", True, 400, "not valid base64"),
        ("x" * 400_000, False, 413, "the limit"),
        ("eA==" * 100_000, True, 413, "the limit"),
    ],
)
def test_http_body_limits(body: str, b64: bool, status: int, fragment: str) -> None:
    out = http_body(body, b64)
    assert isinstance(out, HttpOutcome) and out.status == status and fragment in out.body["error"]


def test_json_model_parser_names_what_and_depth() -> None:
    with pytest.raises(ValueError, match="capture record: JSON nested deeper than 200 levels"):
        parse_json_model("[" * 100_000 + "]" * 100_000, online.CaptureRecord, "capture record")
