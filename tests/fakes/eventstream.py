"""A small encoder for the AWS event-stream wire format (``application/vnd.amazon.eventstream``).

botocore ships only the decoder (``botocore.eventstream``); this writes the frames it reads. One message:

    prelude   total length (uint32 BE) · headers length (uint32 BE) · CRC32 of those 8 bytes
    headers   per header: name length (uint8) · name · value type (7 = string) · length (uint16 BE) · value
    payload   bytes (here: a JSON document)
    CRC32 of everything before it

Bedrock's ConverseStream sends events with ``:message-type event``, ``:event-type <member>`` and
``:content-type application/json``; a modeled error mid-stream is ``:message-type exception`` with
``:exception-type <member>`` (e.g. ``throttlingException``). tests/unit/test_eventstream.py checks every
frame written here with botocore's own parser.
"""

from __future__ import annotations

import binascii
import json
import struct
from typing import Any

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event(event_type: str, body: dict[str, Any]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(body).encode())


def exception(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_message(headers, json.dumps({"message": message}).encode())
