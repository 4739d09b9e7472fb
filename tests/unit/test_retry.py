"""The one retry policy (evalgate.core.retry), driven by a fake clock: sleeping advances the clock, nothing waits."""

from __future__ import annotations

import random
import threading

import pytest

from evalgate.core.errors import BudgetExceeded, ProviderError, ThrottledError, TransientError
from evalgate.core.retry import FOLLOW_UP, GENERATE, GaveUp, RetryPolicy, retryable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def policy(clock: FakeClock, **kw: object) -> RetryPolicy:
    kw.setdefault("rng", random.Random(7))
    return RetryPolicy(clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


def scripted(clock: FakeClock, outcomes: list[object], latency: float = 0.2):
    """A call that takes ``latency`` on the fake clock and raises or returns the next outcome."""
    calls: list[float] = []

    def fn() -> object:
        calls.append(clock.now)
        clock.now += latency
        out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    return fn, calls


def test_throttles_cut_concurrency_at_most_once_per_latency_window():
    clock = FakeClock()
    p = policy(clock, max_concurrency=16, floor=2)
    fn, _ = scripted(clock, ["ok"] * 5, latency=0.2)
    for _ in range(5):  # the latency window becomes ~0.2 s
        p.call(fn, model="m")
    assert p.limit == 16
    lim = p._limiter
    assert lim.on_throttle() is True and p.limit == 11  # 16 * 0.7
    for _ in range(10):  # a burst within the same window is one signal
        clock.now += 0.01
        assert lim.on_throttle() is False
    assert p.limit == 11 and lim.decreases == 1
    clock.now += 0.2  # next window: one more cut
    assert lim.on_throttle() is True and p.limit == 7 and lim.decreases == 2


def test_concurrency_never_drops_below_the_floor_and_recovers_on_success():
    clock = FakeClock()
    p = policy(clock, max_concurrency=16, floor=6)
    for _ in range(20):
        clock.now += 5.0
        p._limiter.on_throttle()
    assert p.limit == 6 and p.snapshot()["concurrency"]["lowest"] == 6
    fn, _ = scripted(clock, ["ok"] * 200)
    for _ in range(200):
        p.call(fn, model="m")
    assert p.limit == 16  # additive increase back to the maximum
    assert RetryPolicy(16).floor == 8  # default floor: half the maximum


def test_retry_after_is_honoured_and_backoff_is_full_jitter_exponential():
    clock = FakeClock()
    p = policy(clock, base_delay=0.1, max_delay=10.0)
    fn, calls = scripted(clock, [ThrottledError("429", retry_after=3.0), ThrottledError("429"), "done"], latency=0.0)
    assert p.call(fn, model="m") == "done"
    assert clock.sleeps[0] >= 3.0  # never sooner than the service asked
    assert 0 <= clock.sleeps[1] < 0.2  # second retry: uniform in [0, base * 2)
    assert len(calls) == 3
    f = p.snapshot()["models"]["m"]
    assert (f["calls"], f["throttles"], f["retries"], f["gave_up"]) == (3, 2, 2, 0)
    caps = [p.backoff(n, None) for n in range(12) for _ in range(50)]
    assert max(caps) <= 10.0 and min(caps) >= 0.0


def test_transient_errors_are_retried_without_cutting_concurrency():
    clock = FakeClock()
    p = policy(clock, max_concurrency=8)
    fn, calls = scripted(clock, [TransientError("HTTP 500"), TransientError("read timeout"), "ok"])
    assert p.call(fn, model="m") == "ok" and len(calls) == 3
    assert p.limit == 8 and p._limiter.decreases == 0
    assert p.snapshot()["models"]["m"]["transient_errors"] == 2


def test_a_call_is_given_up_only_when_the_time_budget_would_be_crossed():
    clock = FakeClock()
    p = policy(clock, time_budget=60.0, max_delay=4.0)
    fn, calls = scripted(clock, [ThrottledError("ThrottlingException")] * 10_000, latency=0.5)
    with pytest.raises(GaveUp) as info:
        p.call(fn, model="anthropic.judge")
    # It kept retrying until the next back-off would end past the deadline, not after a fixed count.
    assert len(calls) > 20
    assert clock.now <= p.deadline  # never slept past the budget
    assert clock.now + 4.0 > p.deadline  # and stopped only within one back-off of it
    assert info.value.model == "anthropic.judge" and info.value.attempts == len(calls)
    assert p.gave_up() == [
        "anthropic.judge: gave up on 1 call(s): the time budget (60 s) would be crossed: ThrottlingException"
    ]


def test_not_retryable_errors_give_up_at_once_and_budget_refusals_propagate():
    clock = FakeClock()
    p = policy(clock)
    fn, calls = scripted(clock, [ProviderError("ValidationException (HTTP 400)")])
    with pytest.raises(GaveUp, match="not retryable: ValidationException"):
        p.call(fn, model="m")
    assert len(calls) == 1 and clock.sleeps == []
    fn, calls = scripted(clock, [BudgetExceeded("--max-cost reached")])
    with pytest.raises(BudgetExceeded):
        p.call(fn, model="m")
    assert len(calls) == 1
    assert p.snapshot()["models"]["m"]["gave_up"] == 1


def test_waiting_callers_take_a_freed_slot_in_priority_order():
    clock = FakeClock()
    p = RetryPolicy(1, clock=clock, sleep=clock.sleep)
    order: list[str] = []
    release = threading.Event()
    holder = threading.Thread(target=p.call, args=(release.wait,), kwargs={"model": "m"})
    holder.start()
    while p._limiter.active == 0:
        threading.Event().wait(0.001)
    threads = []
    for name, prio in (("gen-1", GENERATE), ("gen-2", GENERATE), ("judge", FOLLOW_UP)):
        kwargs = {"model": "m", "priority": prio}
        t = threading.Thread(target=p.call, args=(lambda n=name: order.append(n),), kwargs=kwargs)
        t.start()
        threads.append(t)
        while len(p._limiter.waiting) < len(threads):
            threading.Event().wait(0.001)
    release.set()
    for t in [holder, *threads]:
        t.join(5)
    assert order == ["judge", "gen-1", "gen-2"]


def test_in_flight_counts_calls_holding_a_slot_not_those_sleeping_in_back_off():
    clock = FakeClock()
    seen: list[int] = []
    policies: list[RetryPolicy] = []

    def sleep(seconds: float) -> None:
        seen.append(policies[0].in_flight)
        clock.sleep(seconds)

    p = RetryPolicy(clock=clock, sleep=sleep, rng=random.Random(7))
    policies.append(p)
    outcomes: list[object] = [ThrottledError("429"), "ok"]

    def fn() -> object:
        seen.append(p.in_flight)
        out = outcomes.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    assert p.call(fn, model="m") == "ok"
    assert seen == [1, 0, 1] and p.in_flight == 0


def test_an_expired_deadline_gives_up_without_calling():
    clock = FakeClock()
    p = policy(clock, deadline=clock.now - 1)
    fn, calls = scripted(clock, ["ok"])
    with pytest.raises(GaveUp):
        p.call(fn, model="m")
    assert calls == [] and p.expired()


def test_aws_errors_are_classified_for_the_policy_with_retry_after():
    from botocore.exceptions import ClientError, ReadTimeoutError

    from evalgate.adapters.aws import map_aws_error

    def client_error(code: str, status: int, headers: dict[str, str] | None = None, **extra: object) -> ClientError:
        response = {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}
        response["ResponseMetadata"]["HTTPHeaders"] = headers or {}
        return ClientError({**response, **extra}, "Converse")  # type: ignore[arg-type]

    throttled = map_aws_error(client_error("ThrottlingException", 429, {"retry-after": "2"}), "m")
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 2.0
    lambda_busy = map_aws_error(client_error("TooManyRequestsException", 429, retryAfterSeconds="3"), "fn")
    assert isinstance(lambda_busy, ThrottledError) and lambda_busy.retry_after == 3.0
    for code, status in (("InternalServerException", 500), ("ModelTimeoutException", 408), ("Weird", 502)):
        assert isinstance(map_aws_error(client_error(code, status), "m"), TransientError), code
    assert isinstance(map_aws_error(ReadTimeoutError(endpoint_url="http://x"), "m"), TransientError)
    denied = map_aws_error(client_error("ValidationException", 400), "m")
    assert type(denied) is ProviderError and not retryable(denied)


def test_what_a_waiting_user_is_told_comes_from_the_same_error_map():
    from botocore.exceptions import ClientError, EndpointConnectionError

    from evalgate.adapters.aws import NOT_READY_CODES, THROTTLING_CODES, map_aws_error, user_facing_kind

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Converse")

    for code in THROTTLING_CODES:  # a capacity refusal to the retry policy; busy or not ready to a user
        assert isinstance(map_aws_error(client_error(code, 429), "m"), ThrottledError), code
        assert user_facing_kind(client_error(code, 429)) == ("unavailable" if code in NOT_READY_CODES else "throttled")
    assert user_facing_kind(client_error("SlowDown", 503)) == "unavailable"
    assert user_facing_kind(client_error("ModelTimeoutException", 408)) == "unavailable"
    quota = client_error("ServiceQuotaExceededException", 400)
    assert user_facing_kind(quota) == "failed"
    assert user_facing_kind(quota, frozenset({"ServiceQuotaExceededException"})) == "throttled"
    unreachable = EndpointConnectionError(endpoint_url="http://x")
    assert type(map_aws_error(unreachable, "m")) is ProviderError and user_facing_kind(unreachable) == "unavailable"
    assert user_facing_kind(client_error("AccessDeniedException", 403)) == "failed"
