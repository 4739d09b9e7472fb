"""Runs an evaluation through the ports: the runner (``Runner`` takes a frozen ``RunOptions`` and its
collaborators), the judge and scoring, cache and cost, tiers (the tier table) and shards, guardrail suites and
specs, judge calibration and trust, load tests, Bedrock evaluation jobs, curation of the golden set, and
``factories``: the one place candidates, judges, embedders and the cost meter are built, for the CLI, the
deployment hooks and the online judge alike. Floor 3: imports ``contracts``, ``core``, ``adapters`` and
``reports``.
"""
