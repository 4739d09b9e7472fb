"""The notifier: one email that explains a rollback, a failed pipeline or a gate that needs review.

Events (EventBridge):

- ``aws.codedeploy`` "CodeDeploy Deployment State-change Notification", state FAILURE or STOP;
- ``aws.appconfig`` deployment rollback ("On Deployment Rollback", extension type ``OnDeploymentRolledBack``);
- ``aws.codepipeline`` "CodePipeline Pipeline Execution State Change", state FAILED;
- ``evalgate`` "EvalGate Verdict" with verdict REVIEW (see ``gate_event_detail``).

Three rooms: ``events`` parses the envelope and each kind's detail, ``lookups`` reads AWS (best effort: what
could not be read is said in the email, never a reason to send none), ``compose`` writes the email (what was
deployed, which alarm or metric, the observed value against its threshold with the sample size, the worst judged
examples, console links). This module sends it.

Idempotent per EventBridge event id: ``notify`` takes a ``once`` wrapper (the handler's Powertools Idempotency
on DynamoDB) around composing and sending; a redelivered event gets the stored outcome and sends nothing. A
failure before the email went out leaves no record, so the retry can send it. An event it cannot use (not an
EventBridge event, a detail without its kind's shape) raises ``NotifyEventError``: the handler logs and drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from evalgate.release.notify.compose import compose as compose_email
from evalgate.release.notify.events import parse_event
from evalgate.release.notify.lookups import Lookup


@dataclass
class NotifyResult:
    status: Literal["sent", "duplicate", "ignored"]
    subject: str = ""
    message_id: str = ""
    body: str = ""


Send = Callable[..., dict[str, Any]]


def notify(
    event: Any,
    *,
    lookup: Lookup,
    sns: Any,
    topic_arn: str,
    default_region: str,
    once: Callable[[Send], Send] | None = None,
) -> NotifyResult:
    """Compose and publish the email for one event; with ``once``, at most once per event id (``data.id``)."""
    ev = parse_event(event)
    bodies: list[str] = []  # filled only when this invocation composed the email (not on a redelivery)

    def send(data: dict[str, Any]) -> dict[str, Any]:
        email = compose_email(ev, lookup, default_region)
        bodies.append(email.body if email is not None else "")
        if email is None:
            return {"status": "ignored"}
        subject = sns_subject(email.subject)
        message_id = sns.publish(TopicArn=topic_arn, Subject=subject, Message=email.body)["MessageId"]
        return {"status": "sent", "subject": subject, "message_id": message_id}

    out = (once(send) if once is not None else send)(data={"id": ev.id})
    if not bodies:
        return NotifyResult("duplicate", str(out.get("subject") or ""), str(out.get("message_id") or ""))
    return NotifyResult(out["status"], out.get("subject", ""), out.get("message_id", ""), bodies[0])


def sns_subject(text: str) -> str:
    """SNS email subjects: printable ASCII, one line, at most 100 characters."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in " ".join(text.split()))
    return clean if len(clean) <= 100 else clean[:97] + "..."
