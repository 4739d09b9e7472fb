"""Time to first token vs total answer time (issue 8). Run: `.venv/bin/python bench/bench_ttft.py` (~40 s).

The service (``store_assistant.service.Service`` with the real ``BedrockChat``: boto3 ConverseStream, botocore's
event-stream parser) against the loopback Bedrock fake, which holds the first text delta ``--first-token``
seconds after the response headers and sends the rest four words per delta, ``--interval`` apart. Short and
long answers (the long one about 512 tokens, the generator's ``max_tokens``) are timed in the same run:

- TTFT accuracy: the service's measured TTFT / the stand-in's first-token delay (>= 1; the excess is what the
  service adds: retrieval, prompt rendering, the request and the parse);
- TTFT vs answer length: p50 TTFT(long) / p50 TTFT(short) (~1: the SLO does not depend on how much is said)
  against total(long) / total(short) (>> 1: a bound on the whole answer does).

These figures are about the service's own overhead and what each latency depends on. They say nothing about
how fast a real model is: bench/README.md cites published TTFT figures for that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

SHORT = "Refunds are issued within 5 business days of receiving the item."
LONG_WORDS = 512


def _quantiles(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=20)
    return {"p50_ms": round(statistics.median(values), 1), "p95_ms": round(q[18], 1)}


def run(requests: int, first_token: float, interval: float) -> dict[str, Any]:
    import os

    from evalgate.core.knowledge import load_index
    from store_assistant.flags import FlagResolver, build_resolver
    from store_assistant.service import BedrockChat, Service, ServiceSettings
    from tests.fakes.bedrock_fake import BedrockFake

    long_answer = " ".join(["word"] * LONG_WORDS)
    out: dict[str, Any] = {"first_token_delay_ms": first_token * 1000, "interval_ms": interval * 1000}
    with BedrockFake(first_token_delay=first_token, token_interval=interval) as fake:
        os.environ.update(fake.env())
        settings = ServiceSettings(function_version="1", max_tokens=1024)
        index, _ = load_index(ROOT / "golden" / "knowledge")
        flags: FlagResolver = build_resolver(settings.model_id, settings.prompt_id, None, {})
        service = Service(settings, flags, BedrockChat(), index)
        body = json.dumps({"question": "How long do refunds take to show on my card?"})
        for name, text in (("short", SHORT), ("long", long_answer)):
            fake.answer_fn = lambda req, text=text: text
            service.ask(body)  # warm-up: client creation, connection
            ttft, total = [], []
            for _ in range(requests):
                doc = service.ask(body).body
                ttft.append(doc["latency"]["ttft_ms"])
                total.append(doc["latency"]["total_ms"])
            out[name] = {"ttft": _quantiles(ttft), "total": _quantiles(total), "words": len(text.split())}
    s, lg = out["short"], out["long"]
    out["ttft_over_first_token_delay_p50"] = round(s["ttft"]["p50_ms"] / (first_token * 1000), 3)
    out["service_overhead_to_first_token_p95_ms"] = round(s["ttft"]["p95_ms"] - first_token * 1000, 1)
    out["ttft_long_over_short_p50"] = round(lg["ttft"]["p50_ms"] / s["ttft"]["p50_ms"], 3)
    out["total_long_over_short_p50"] = round(lg["total"]["p50_ms"] / s["total"]["p50_ms"], 2)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=25, help="requests per answer length")
    p.add_argument("--first-token", type=float, default=0.2, help="the stand-in's first-token delay (s)")
    p.add_argument("--interval", type=float, default=0.01, help="the stand-in's delay between later deltas (s)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ttft.json")
    args = p.parse_args()
    t = time.perf_counter()
    r = run(args.requests, args.first_token, args.interval)
    r["wall_s"] = round(time.perf_counter() - t, 1)
    print(
        f"TTFT accuracy: p50 service TTFT / first-token delay = {r['ttft_over_first_token_delay_p50']} "
        f"(p95 overhead {r['service_overhead_to_first_token_p95_ms']} ms); "
        f"{r['long']['words']}-word vs {r['short']['words']}-word answers: TTFT ratio "
        f"{r['ttft_long_over_short_p50']}, total ratio {r['total_long_over_short_p50']} ({r['wall_s']} s)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**r, "python": sys.version.split()[0]}, indent=2) + "\n")
    ok = r["ttft_over_first_token_delay_p50"] >= 1.0 and r["ttft_long_over_short_p50"] < 1.2
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
