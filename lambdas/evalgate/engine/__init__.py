"""Runs an evaluation through the ports: the runner, the judge and scoring, cache and cost, tiers and shards,
guardrail suites and specs, judge calibration and trust, load tests, Bedrock evaluation jobs, curation of the
golden set. Floor 3: imports ``contracts``, ``core``, ``adapters`` and ``reports``.
"""
