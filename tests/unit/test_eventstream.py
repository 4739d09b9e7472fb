"""The fake's event-stream frames, read back by botocore's own parser and by the ConverseStream output parser."""

from __future__ import annotations

import io

import botocore.session
import pytest
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer
from botocore.exceptions import EventStreamError
from botocore.parsers import EventStreamJSONParser

from tests.fakes import eventstream


def test_frames_decode_with_botocore_and_keep_headers_and_payload() -> None:
    buf = EventStreamBuffer()
    buf.add_data(eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}))
    buf.add_data(eventstream.exception("throttlingException", "slow down"))
    first, second = list(buf)
    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert first.payload == b'{"contentBlockIndex": 0, "delta": {"text": "Hi"}}'
    assert second.headers[":message-type"] == "exception" and second.headers[":exception-type"] == "throttlingException"


def test_a_corrupted_frame_fails_botocores_checksum() -> None:
    frame = bytearray(eventstream.event("messageStart", {"role": "assistant"}))
    frame[-6] ^= 0xFF  # a payload byte
    buf = EventStreamBuffer()
    buf.add_data(bytes(frame))
    with pytest.raises(ChecksumMismatch):
        list(buf)


class _Raw:
    """What botocore's EventStream reads from: an urllib3-like body with ``stream()``."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def stream(self, amt: int = 1024) -> object:
        while chunk := self._data.read(7):  # odd chunk sizes: frames arrive split across reads
            yield chunk


def _converse_stream(data: bytes) -> EventStream:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").output_shape.members["stream"]
    return EventStream(_Raw(data), shape, EventStreamJSONParser(), "ConverseStream")


def test_converse_stream_events_parse_into_the_modeled_shapes() -> None:
    data = b"".join(
        [
            eventstream.event("messageStart", {"role": "assistant"}),
            eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Refunds take "}}),
            eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "5 days."}}),
            eventstream.event("contentBlockStop", {"contentBlockIndex": 0}),
            eventstream.event("messageStop", {"stopReason": "end_turn"}),
            eventstream.event(
                "metadata",
                {"usage": {"inputTokens": 9, "outputTokens": 4, "totalTokens": 13}, "metrics": {"latencyMs": 120}},
            ),
        ]
    )
    events = list(_converse_stream(data))
    assert events[0] == {"messageStart": {"role": "assistant"}}
    assert [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e] == [
        "Refunds take ",
        "5 days.",
    ]
    assert events[4] == {"messageStop": {"stopReason": "end_turn"}}
    assert events[5]["metadata"]["usage"]["outputTokens"] == 4


def test_an_exception_frame_raises_the_modeled_error() -> None:
    data = eventstream.event("messageStart", {"role": "assistant"}) + eventstream.exception(
        "throttlingException", "Too many tokens"
    )
    stream = iter(_converse_stream(data))
    assert next(stream) == {"messageStart": {"role": "assistant"}}
    with pytest.raises(EventStreamError) as err:
        next(stream)
    assert err.value.response["Error"] == {"Code": "throttlingException", "Message": "Too many tokens"}
