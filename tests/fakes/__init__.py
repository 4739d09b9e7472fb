"""Loopback fakes for tests and benchmarks: bedrock-runtime (``bedrock_fake``) and a staging HTTP endpoint
(``http_service_fake``). They bind to 127.0.0.1 only."""

from .bedrock_fake import BedrockFake, Delay, Embedding, Error, FakeRequest, Raw, Text, ToolUse, hang
from .http_service_fake import HttpServiceFake, ReceivedRequest, Reply

__all__ = [
    "BedrockFake",
    "Delay",
    "Embedding",
    "Error",
    "FakeRequest",
    "HttpServiceFake",
    "Raw",
    "ReceivedRequest",
    "Reply",
    "Text",
    "ToolUse",
    "hang",
]
