"""Canary power: known answers for the normal approximations, the never-fires checks and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from math import comb

import pytest

from evalgate.cli import main
from evalgate.core.latency import LatencyBudget
from evalgate.release.canary import CanaryConfig
from evalgate.release.canary_power import (
    DEFAULT_EFFECTS,
    CanaryTraffic,
    Effect,
    detect,
    family_size,
    never_fires,
)
from evalgate.release.canary_profile import Profile

CFG = replace(CanaryConfig(), min_judged=10)
TRAFFIC = CanaryTraffic(peak_rps=2, canary_percent=10, interval_minutes=10, capture_rate=0.25)


def by_label(detections: list) -> dict[str, object]:
    return {d.effect.label: d for d in detections}


def test_traffic_arithmetic_matches_the_configured_canary() -> None:
    # 2 rps x 60 x 10% = 12 canary requests a minute, 3 judged a minute per arm, verdict 3 min before the shift
    assert TRAFFIC.canary_per_min == pytest.approx(12) and TRAFFIC.judged_per_min == pytest.approx(3)
    assert TRAFFIC.window_minutes == 7
    # four metrics always; conversion joins (84 outcomes per arm >= 30), feedback does not (5% rated: 4)
    assert family_size(TRAFFIC, Profile(), CFG) == 5


def test_two_proportion_power_known_answer() -> None:
    # 1000 judged answers per arm (100 min x 12 requests x 10/12 captured); at this traffic feedback and
    # conversion are judged too, so the family has 6 metrics. 2% -> 6%, one-sided alpha 0.05/6 (z = 2.394),
    # tolerance 0.02: se0 = sqrt(.04*.96*2/1000) = 0.008764, bar = max(0.02, 2.394*se0) = 0.020982;
    # se1 = sqrt(.06*.94/1000 + .02*.98/1000) = 0.008718 -> power = 1 - Phi((0.020982 - 0.04)/0.008718) = 0.9854
    t = CanaryTraffic(peak_rps=2, canary_percent=10, interval_minutes=3 + 100, capture_rate=10 / 12)
    (d,) = detect(t, Profile(), CFG, [Effect("h", "Hallucination", 0.04)])
    assert d.n_canary == 1000 and d.family == 6 and d.power == pytest.approx(0.9854, abs=0.0005)


def test_the_default_canary_says_what_it_cannot_detect() -> None:
    found = by_label(detect(TRAFFIC, Profile(), CFG))
    assert set(found) == {e.label for e in DEFAULT_EFFECTS}
    conv = found["conversion -0.5 point (abort rule)"]
    assert not conv.detectable and conv.scale_for_80 > 100  # type: ignore[attr-defined]
    hall = found["hallucination 2% -> 6%"]
    assert not hall.detectable and hall.n_canary == 21  # type: ignore[attr-defined]
    # more traffic makes the same regression detectable
    busy = replace(TRAFFIC, peak_rps=2 * hall.scale_for_80 * 1.05)  # type: ignore[attr-defined]
    assert by_label(detect(busy, Profile(), CFG))["hallucination 2% -> 6%"].detectable  # type: ignore[attr-defined]


def test_a_regression_within_tolerance_is_never_a_rollback() -> None:
    (d,) = detect(TRAFFIC, Profile(), CFG, [Effect("tiny", "QualityScore", 0.02)])
    assert d.scale_for_80 is None and "by design not a rollback" in d.notes[0]


def test_never_fires_names_each_impossible_rule() -> None:
    assert never_fires(TRAFFIC, Profile(), CFG) == []
    short = never_fires(replace(TRAFFIC, interval_minutes=5), Profile(), CFG)
    assert len(short) == 1 and "leaving 2 one-minute periods (< 3 needed)" in short[0]
    # 4 periods per arm: Mann-Whitney's smallest one-sided p is 1/C(8,4) = 1/70 > 0.05/5
    four = never_fires(replace(TRAFFIC, interval_minutes=7, peak_rps=20), Profile(), CFG)
    assert any(m.startswith("QualityScore: even the worst possible canary gives p = 0.0143") for m in four)
    assert 1 / comb(8, 4) == pytest.approx(0.0143, abs=1e-4)
    # a tolerance above a regression is not "never fires": the power report says that regression is tolerated
    loose = replace(CFG, latency_budget=LatencyBudget(regression_ms=250, regression_pct=10))
    assert never_fires(TRAFFIC, Profile(), loose) == []
    (lat,) = detect(TRAFFIC, Profile(), loose, [Effect("+120 ms", "Latency", 120.0)])
    # +10% of the mean per-period answer time (2000 ms x exp(0.35^2 / 2) = 2126.3 ms) is 212.6 ms < 250 ms
    assert lat.scale_for_80 is None  # no traffic makes a tolerated regression a rollback
    assert lat.notes == ["within the rule's tolerance (212.6): by design not a rollback (only noise fires it)"]
    # 21 judged answers expected per arm: a floor of 20 would fail about half of the healthy canaries closed
    tight = never_fires(TRAFFIC, Profile(), replace(CFG, min_judged=20))
    assert any(m.startswith("QualityScore: ~21 observations per arm") and "% of healthy canaries" in m for m in tight)


def test_cli_reads_cdk_json_and_refuses_impossible_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canary-power", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["window_minutes"] == 7 and data["never_fires"] == []
    assert {d["effect"]["label"] for d in data["detections"]} == {e.label for e in DEFAULT_EFFECTS}
    assert main(["canary-power", "--interval-minutes", "5"]) == 2
    out = capsys.readouterr().out
    assert "REFUSED: canaryIntervalMinutes 5" in out and "power" in out
