"""The canary's minimum-sample check waits for late judgements instead of failing on ingestion delay."""

from __future__ import annotations

import pytest

from evalgate.core.errors import InputError
from evalgate.release import deploy_hooks as hooks


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class LateAlarm:
    """The JudgedCount alarm: INSUFFICIENT_DATA until the judged datapoints arrive, then OK."""

    def __init__(self, ok_after_reads: int | None) -> None:
        self.reads = 0
        self.ok_after_reads = ok_after_reads

    def alarm_state(self, name: str) -> str:
        self.reads += 1
        if self.ok_after_reads is not None and self.reads > self.ok_after_reads:
            return "OK"
        return "INSUFFICIENT_DATA"


def test_late_judgements_turn_the_alarm_ok_within_the_grace() -> None:
    clock, alarm = Clock(), LateAlarm(ok_after_reads=3)
    state = hooks.wait_for_ok(lambda: alarm.alarm_state("x"), 240, sleep=clock.sleep, clock=clock, poll_s=30)
    assert state == "OK" and clock.slept == [30, 30, 30]


def test_without_grace_the_check_reads_once_and_never_waits_past_the_grace_or_the_deadline() -> None:
    clock, alarm = Clock(), LateAlarm(ok_after_reads=None)
    assert hooks.wait_for_ok(lambda: alarm.alarm_state("x"), 0, sleep=clock.sleep, clock=clock) == "INSUFFICIENT_DATA"
    assert alarm.reads == 1 and clock.slept == []
    clock, alarm = Clock(), LateAlarm(ok_after_reads=None)
    hooks.wait_for_ok(lambda: alarm.alarm_state("x"), 240, sleep=clock.sleep, clock=clock, poll_s=30)
    assert sum(clock.slept) <= 240 and len(clock.slept) == 8
    clock, alarm = Clock(), LateAlarm(ok_after_reads=None)
    deadline = clock.now + 100  # the hook's own budget is shorter than the grace: it must still report in time
    hooks.wait_for_ok(lambda: alarm.alarm_state("x"), 240, deadline=deadline, sleep=clock.sleep, clock=clock, poll_s=30)
    assert clock.now <= deadline - hooks.REPORT_RESERVE_S


def test_the_canary_fails_closed_when_the_samples_never_arrive_and_says_how_long_it_waited() -> None:
    clock, alarm = Clock(), LateAlarm(ok_after_reads=None)
    settings = hooks.CanarySettings(
        target_version="7",
        baseline_version="6",
        min_samples=20,
        min_samples_alarm="evalgate-prod-judged-count-low",
        sample_grace_s=120,
    )
    out = hooks.canary_analysis(settings, "d-ABC123", fetcher=alarm, sleep=clock.sleep, clock=clock, poll_s=30)
    assert out.status == "Failed"
    assert "INSUFFICIENT_DATA" in out.reason and "after waiting up to 120 s" in out.reason
    assert alarm.reads == 5


def test_grace_is_read_from_the_environment() -> None:
    env = {"MIN_SAMPLES_ALARM": "a", "SAMPLE_GRACE_SECONDS": "240"}
    assert hooks.CanarySettings.from_env(env).sample_grace_s == 240
    assert hooks.CanarySettings.from_env({"SAMPLE_GRACE_SECONDS": "0"}).sample_grace_s == 0
    assert hooks.CanarySettings.from_env({}).sample_grace_s == 0
    with pytest.raises(InputError, match="SAMPLE_GRACE_SECONDS"):
        hooks.CanarySettings.from_env({"SAMPLE_GRACE_SECONDS": "-5"})
