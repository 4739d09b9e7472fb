"""evalgate load against loopback fakes whose latency distribution we control: the reported p95 time to first
token is the known one (the tolerance is the gap between the distribution's modes, not the speed of this
machine), total answer time is gated against a baseline run, the offered rate does not drop when responses are
slow (open loop), and throttles and errors are counted."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from evalgate.adapters.http_endpoint import HttpCandidate
from evalgate.cli import main
from evalgate.core.config import load_config
from evalgate.core.dataset import load_golden
from evalgate.core.latency import LatencyBudget
from evalgate.engine.load import LoadGenerator, LoadPlan, summarise
from tests.fakes.bedrock_fake import BedrockFake
from tests.fakes.http_service_fake import HttpServiceFake, Reply

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(ROOT / "golden", ["regression"])
CONFIG = load_config(ROOT / "golden" / "gate.toml")
FAST, SLOW = 0.100, 0.600  # seconds to the first token
TAIL = 0.050  # seconds from the first token to the end of the answer


def ok(total: float, ttft: float = 0.0) -> Reply:
    """An answer that took ``total`` s, its first token at ``ttft`` s (reported in the answer document)."""
    doc = {
        "answer": "ok",
        "usage": {"inputTokens": 3, "outputTokens": 1},
        "latency": {"ttft_ms": ttft * 1000, "total_ms": total * 1000},
    }
    return Reply(200, doc, delay=total)


def mixture(n: int, slow_share: float, seed: int = 5) -> list[Reply]:
    """Exactly ``slow_share`` of the replies slow to their first token, in a random order."""
    slow = round(n * slow_share)
    replies = [ok(SLOW + TAIL, SLOW)] * slow + [ok(FAST + TAIL, FAST)] * (n - slow)
    random.Random(seed).shuffle(replies)
    return replies


def load(*args: str) -> int:
    return main(["load", "--golden", str(ROOT / "golden"), "--arrival", "fixed", *args])


def test_reported_p95_time_to_first_token_is_the_known_one_and_gates_the_slo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    n = 100
    with HttpServiceFake() as svc:
        svc.script(*mixture(n, 0.10))
        code = load(
            "--target",
            f"http:{svc.url}/ask",
            "--rps",
            "40",
            "--duration",
            "2.5",
            "--ttft-slo-ms",
            "450",
            "--late-tolerance-ms",  # a busy test machine may start a request late; this test is about TTFT
            "1000",
            "--out",
            str(tmp_path),
        )
        assert svc.count == n
    data = json.loads((tmp_path / "results.json").read_text())
    aggs = {a["metric"]: a for a in data["aggregates"]}
    # 90% first token at 100 ms, 10% at 600 ms (the service reports them; the client adds its own wait): p50
    # lies in the fast mode and p95 in the slow one. Loopback overhead only adds, so each must sit at or above
    # its mode and below the next one.
    assert FAST * 1000 <= aggs["p50_ttft_ms"]["value"] < SLOW * 1000
    assert SLOW * 1000 <= aggs["p95_ttft_ms"]["value"] < (SLOW + FAST) * 1000 + 400
    assert aggs["p95_ttft_ms"]["ci_low"] >= FAST * 1000  # the interval is in the right region too
    assert aggs["p95_latency_ms"]["value"] >= (SLOW + TAIL) * 1000  # the total is measured and reported
    assert code == 1 and data["verdict"]["verdict"] == "FAIL"
    assert "p95 time to first token" in data["verdict"]["reasons"][0]
    assert "above the SLO of 450 ms" in data["verdict"]["reasons"][0]
    assert data["load"]["sent"] == data["load"]["ok"] == n and data["load"]["dropped_late"] == 0
    assert data["load"]["latency"].startswith("from each request's scheduled send time")
    for name in ("junit.xml", "summary.md", "report.html", "requests.jsonl"):
        assert (tmp_path / name).stat().st_size > 0
    assert 'name="load.p95_ttft_ms"' in (tmp_path / "junit.xml").read_text()
    assert (tmp_path / "summary.md").read_text().splitlines()[0].count("FAIL")
    assert len((tmp_path / "requests.jsonl").read_text().splitlines()) == n
    assert "100 scheduled, 100 sent, 100 ok" in capsys.readouterr().out

    with HttpServiceFake() as svc:  # the same distribution passes a 1.5 s SLO
        svc.script(*mixture(n, 0.10))
        code = load(
            "--target",
            f"http:{svc.url}/ask",
            "--rps",
            "40",
            "--duration",
            "2.5",
            "--ttft-slo-ms",
            "1500",
            "--late-tolerance-ms",  # a busy test machine may start a request late; this test is about TTFT
            "1000",
            "--out",
            str(tmp_path / "pass"),
        )
    assert code == 0


def test_total_answer_time_is_gated_against_a_baseline_load_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    n = 45

    def run(total: float, out: str, *extra: str) -> int:
        with HttpServiceFake() as svc:
            svc.script(*[ok(total, 0.02)] * n)
            return load(
                "--target",
                f"http:{svc.url}/ask",
                "--rps",
                "30",
                "--duration",
                "1.5",
                "--out",
                str(tmp_path / out),
                *extra,
            )

    assert run(0.10, "before") == 0  # no baseline: the total is reported, not gated
    baseline = str(tmp_path / "before" / "results.json")
    before = json.loads((tmp_path / "before" / "results.json").read_text())
    base_p95 = next(a["value"] for a in before["aggregates"] if a["metric"] == "p95_latency_ms")
    # +350 ms on every answer: above both +250 ms and +10% of the baseline
    assert run(0.45, "slower", "--baseline", baseline) == 1
    slower = json.loads((tmp_path / "slower" / "results.json").read_text())
    p95 = next(a for a in slower["aggregates"] if a["metric"] == "p95_latency_ms")
    assert p95["status"] == "fail" and p95["threshold"] == pytest.approx(base_p95 + min(250, base_p95 * 0.10))
    assert slower["verdict"]["reasons"][0].startswith("p95 total answer time")
    assert slower["load"]["baseline_run"] == before["run_id"]
    # ...and the same regression passes with a tolerance wide enough for it
    assert run(0.45, "tolerated", "--baseline", baseline, "--regression-ms", "5000", "--regression-pct", "1000") == 0
    capsys.readouterr()
    assert run(0.10, "bad", "--baseline", str(tmp_path / "nowhere.json")) == 2
    assert "--baseline load run's results.json not found" in capsys.readouterr().err


def test_open_loop_slow_responses_do_not_lower_the_offered_rate():
    cases = GOLDEN.cases
    rate, duration, latency = 20.0, 2.0, 0.5
    plan = LoadPlan(
        rate=rate,
        duration_s=duration,
        arrival="fixed",
        budget=LatencyBudget(ttft_slo_ms=450),
        timeout_s=5,
        late_tolerance_s=1.0,  # a busy test machine may start a request late; 1 s is still far below a closed loop
        workers=64,
        seed=3,
    )
    with HttpServiceFake(latency=latency) as svc:
        gen = LoadGenerator(HttpCandidate(f"{svc.url}/ask"), GOLDEN, cases, plan)
        recs = gen.run()
        assert svc.count == 40  # every scheduled request was sent, none waited for an earlier response
    assert all(r.status == "ok" for r in recs)
    # Little's law: at 20 rps with 0.5 s responses about 10 requests are in flight; a closed loop of one
    # client would have had 1 and sent 4 requests in 2 s.
    assert gen.max_in_flight >= 6
    starts = sorted(r.started_s for r in recs if r.started_s is not None)
    assert starts[-1] - starts[0] < duration  # all sent within the schedule, not stretched by the latency
    result = summarise(recs, plan, CONFIG, gen.target, cases, datetime.now(UTC), gen.max_in_flight)
    assert result.load is not None and result.load["achieved_send_rps"] > rate * 0.7


def test_requests_that_cannot_start_on_time_are_dropped_and_reported():
    plan = LoadPlan(
        rate=20,
        duration_s=1.5,
        arrival="fixed",
        budget=LatencyBudget(ttft_slo_ms=5000),
        timeout_s=5,
        late_tolerance_s=0.1,
        workers=1,
        seed=3,
    )
    with HttpServiceFake(latency=0.3) as svc:
        gen = LoadGenerator(HttpCandidate(f"{svc.url}/ask"), GOLDEN, GOLDEN.cases, plan)
        recs = gen.run()
        sent = svc.count
    dropped = [r for r in recs if r.status == "dropped"]
    assert len(recs) == 30 and len(dropped) >= 15 and sent == 30 - len(dropped)
    assert all("could not start within 100 ms" in r.error for r in dropped)
    result = summarise(recs, plan, CONFIG, gen.target, GOLDEN.cases, datetime.now(UTC))
    assert result.verdict.verdict == "ERROR"
    assert any("could not start within 100 ms of their schedule" in r for r in result.verdict.reasons)


def test_throttles_are_counted_and_fail_errors_are_an_error(tmp_path: Path):
    n = 60
    replies = [ok(0.01)] * n
    for i in (4, 19, 33, 41, 58):
        replies[i] = Reply(429, {"message": "slow down"}, headers={"Retry-After": "1"})
    with HttpServiceFake() as svc:
        svc.script(*replies)
        code = load(
            "--target",
            f"http:{svc.url}/ask",
            "--rps",
            "30",
            "--duration",
            "2",
            "--late-tolerance-ms",
            "1000",
            "--out",
            str(tmp_path / "t"),
        )
        served = svc.count  # replies go out in arrival order; on a busy machine a late request is dropped, not sent
    throttled = sum(1 for i in (4, 19, 33, 41, 58) if i < served)
    data = json.loads((tmp_path / "t" / "results.json").read_text())
    assert served >= 59 and throttled >= 4
    assert data["load"]["throttled"] == throttled and data["load"]["errors"] == 0
    assert data["load"]["ok"] == served - throttled
    assert code == 1 and f"throttled {throttled} of 60 requests" in data["verdict"]["reasons"][0]

    replies = [ok(0.01)] * n
    for i in range(0, n, 10):
        replies[i] = Reply(500, {"message": "internal error"})
    with HttpServiceFake() as svc:
        svc.script(*replies)
        code = load(
            "--target",
            f"http:{svc.url}/ask",
            "--rps",
            "30",
            "--duration",
            "2",
            "--late-tolerance-ms",
            "1000",
            "--out",
            str(tmp_path / "e"),
        )
        served = svc.count
    errors = sum(1 for i in range(0, n, 10) if i < served)
    data = json.loads((tmp_path / "e" / "results.json").read_text())
    assert code == 4 and data["load"]["errors"] == errors >= 5
    assert data["verdict"]["reasons"][0].startswith(f"{errors} of 60 requests failed")


def test_bedrock_target_sees_throttles_without_retries(bedrock_fake: BedrockFake, tmp_path: Path):
    bedrock_fake.latency = 0.02
    bedrock_fake.throttle(3, operation="converse-stream")
    code = load(
        "--target",
        "bedrock",
        "--peak-rps",
        "10",
        "--factor",
        "2",
        "--duration",
        "1.5",
        "--ttft-slo-ms",
        "2000",
        "--out",
        str(tmp_path),
    )
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["load"]["offered_rps"] == 20 and data["load"]["peak_rps"] == 10 and data["load"]["factor"] == 2
    assert data["load"]["scheduled"] == 30 and bedrock_fake.count(operation="converse-stream") == 30  # no retries
    assert data["load"]["throttled"] == 3
    assert code == 1  # 10% throttled at 2x peak: not enough capacity


def test_bedrock_target_gates_the_streamed_time_to_first_token(bedrock_fake: BedrockFake, tmp_path: Path):
    """Every first text delta comes 0.3 s after the response headers: p95 TTFT cannot be under 300 ms."""
    bedrock_fake.first_token_delay = 0.3
    code = load(
        "--target", "bedrock", "--rps", "20", "--duration", "1.5", "--ttft-slo-ms", "250", "--out", str(tmp_path)
    )
    data = json.loads((tmp_path / "results.json").read_text())
    p95 = next(a for a in data["aggregates"] if a["metric"] == "p95_ttft_ms")
    assert code == 1 and p95["value"] >= 300 and p95["n"] == 30
    assert data["verdict"]["reasons"][0].startswith("p95 time to first token")
    lines = [json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert all(x["ttft_ms"] >= 300 and x["latency_ms"] >= x["ttft_ms"] for x in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "http://x"], "give --rps, or --peak-rps"),
        (["--target", "http:http://127.0.0.1:9/ask", "--rps", "1000", "--duration", "60"], "the limit is 20000"),
        (["--target", "http:http://127.0.0.1:9/ask", "--rps", "1", "--duration", "5000"], "above the limit of 900s"),
        (["--target", "ftp:x", "--rps", "1", "--duration", "30"], "unknown target 'ftp:x'"),
        (["--target", "http:ftp://x", "--rps", "1", "--duration", "30"], "endpoint URL must be http(s)"),
    ],
)
def test_bad_load_inputs_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert load(*args, "--out", str(tmp_path)) == 2
    assert message in capsys.readouterr().err


def test_a_non_positive_slo_is_a_usage_error_naming_the_range(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    with pytest.raises(SystemExit) as exc:
        load("--target", "bedrock", "--rps", "1", "--duration", "30", "--ttft-slo-ms", "0", "--out", str(tmp_path))
    assert exc.value.code == 2 and "--ttft-slo-ms: must be a number > 0 (got '0')" in capsys.readouterr().err
