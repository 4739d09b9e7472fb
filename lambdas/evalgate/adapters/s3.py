"""Reading JSONL objects under an S3 prefix (judged records, shadow pairs): one paginated listing for all readers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → (bucket, prefix)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def iter_s3_jsonl(
    client: Any, bucket: str, prefix: str, keep: Callable[[str], bool] = lambda _key: True
) -> Iterable[tuple[str, int, str]]:
    """(``s3://bucket/key``, line number, line) for every non-blank line of every ``.jsonl`` object kept by ``keep``."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith(".jsonl") or not keep(key):
                continue
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8", errors="replace")
            for n, line in enumerate(body.splitlines(), start=1):
                if line.strip():
                    yield f"s3://{bucket}/{key}", n, line
