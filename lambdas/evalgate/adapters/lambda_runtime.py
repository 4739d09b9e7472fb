"""What every Lambda entry point shares (the product's handlers and a service's own).

Publishing ``evalgate.contracts.telemetry.Telemetry`` as CloudWatch EMF through Powertools Metrics, with the
dimensions set per invocation (never only at import, so a value can't leak from one request into the
next), and the ``service`` dimension left out so alarms can name the exact dimension set; and the Tracer.

Idempotency (SQS and Lambda's async invocations deliver at least once): ``idempotent`` wraps one unit of work
with Powertools Idempotency on the DynamoDB table named by ``IDEMPOTENCY_TABLE`` (key ``id``, TTL attribute
``expiration``), keyed by a JMESPath into the work's data (a capture's request id, a hook's execution id, an
event's id). The first delivery runs the work and stores its result; a redelivery gets the stored result without
running it; a delivery that arrives while the first is still running raises ``IdempotencyAlreadyInProgressError``.

Tracing: Powertools' ``Tracer()`` imports the X-Ray SDK even when tracing is disabled (about as long as
importing boto3). When tracing is off (``POWERTOOLS_TRACE_DISABLED``, or outside Lambda) ``new_tracer`` gives
the Tracer a no-op provider instead, so a function that does not trace does not pay for the SDK.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from evalgate.contracts import telemetry as tm

# An invocation that publishes nothing (a rejected request) is normal here, not a mistake worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


class _NoopSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoopTracingProvider(BaseProvider):
    @contextlib.contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Generator[BaseSegment, None, None]:
        yield _NoopSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: Any = None, **kwargs: Any) -> Any:
        yield _NoopSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass


def tracing_enabled() -> bool:
    """Powertools' rule: on in Lambda (not SAM local) unless ``POWERTOOLS_TRACE_DISABLED`` is truthy."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in ("1", "true", "yes", "on"):
        return False
    return bool(os.environ.get("LAMBDA_TASK_ROOT")) and not os.environ.get("AWS_SAM_LOCAL")


def new_tracer() -> Tracer:
    if tracing_enabled():
        return Tracer()
    # disabled=False on purpose: "disabled" would make Powertools import the SDK just to switch it off.
    return Tracer(provider=NoopTracingProvider(), disabled=False, auto_patch=False)


def new_metrics() -> Metrics:
    # service="" keeps Powertools from adding a `service` dimension to every metric.
    return Metrics(namespace=tm.namespace(), service="")


def publish(metrics: Any, telemetry: tm.Telemetry | None) -> None:
    """Add one telemetry group to ``metrics`` (flushed by ``log_metrics`` at the end of the invocation)."""
    if telemetry is None or not telemetry.values:
        return
    sets = telemetry.dimensions.sets()
    for name, value in sets[0].items():
        metrics.add_dimension(name=name, value=value)
    for extra in sets[1:]:
        metrics.add_dimensions(**extra)
    for name, values in telemetry.values.items():
        for v in values:
            metrics.add_metric(name=name, unit=tm.UNITS.get(name, "None"), value=v)


def publish_now(groups: Iterable[tm.Telemetry]) -> int:
    """Publish several groups with different dimensions right away (one EMF blob each). Returns blobs written."""
    written = 0
    for group in tm.group(list(groups)):
        if not group.values:
            continue
        emf = EphemeralMetrics(namespace=tm.namespace(), service="")
        publish(emf, group)
        emf.flush_metrics()
        written += 1
    return written


def version_dimensions(model_id: str | None = None, prompt_version: str | None = None) -> tm.Dimensions:
    """Dimensions of the executing version (for metrics about this invocation itself)."""
    return tm.Dimensions(tm.executing_version(), model_id, prompt_version)


F = TypeVar("F", bound=Callable[..., Any])
_persistence: dict[str, Any] = {}


def persistence_store(key: str, expires_s: int) -> Any:
    """Powertools' DynamoDB persistence layer on ``IDEMPOTENCY_TABLE``, reused while warm. One per key and
    expiry: a persistence layer keeps the first configuration it is given (its JMESPath key and expiry)."""
    table = os.environ.get("IDEMPOTENCY_TABLE", "").strip()
    if not table:
        raise RuntimeError("IDEMPOTENCY_TABLE is not set: this handler deduplicates redelivered events in DynamoDB")
    slot = f"{table}|{key}|{expires_s}"
    if slot not in _persistence:
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        from evalgate.adapters.aws import ClientSettings, make_client

        client = make_client("dynamodb", ClientSettings.from_env(connect_timeout=2.0, read_timeout=5.0, max_attempts=3))
        _persistence[slot] = DynamoDBPersistenceLayer(table_name=table, boto3_client=client)
    return _persistence[slot]


def idempotent(fn: F, *, key: str, expires_s: int, context: Any) -> F:
    """``fn(data=...)`` run at most once per value of the JMESPath ``key`` in ``data`` within ``expires_s``.

    ``fn`` must return JSON-serialisable data (what a redelivery gets back). An exception deletes the in-progress
    record, so a retry runs the work again; the in-progress record also expires with the Lambda's remaining time.
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function

    config = IdempotencyConfig(
        event_key_jmespath=key, expires_after_seconds=expires_s, raise_on_no_idempotency_key=True
    )
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        config.register_lambda_context(context)
    store = persistence_store(key, expires_s)
    wrapped: F = idempotent_function(data_keyword_argument="data", config=config, persistence_store=store)(fn)
    return wrapped


def is_sqs_batch(event: Any) -> bool:
    """An SQS event: a non-empty ``Records`` list of objects with a string ``messageId`` and ``body`` (what
    partial batch responses need to name a failed record). Anything else is answered with an error, never raised
    into retries."""
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        isinstance(records, list)
        and bool(records)
        and all(
            isinstance(r, dict) and isinstance(r.get("messageId"), str) and isinstance(r.get("body"), str)
            for r in records
        )
    )
