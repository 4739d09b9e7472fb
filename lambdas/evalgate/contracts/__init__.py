"""Wire contracts: what one part writes and another reads, defined once for both.

Metric names and dimensions (``telemetry``); the records and rules a writer and its reader share across a
process boundary (``records``: cohort, sampling, direct invocation, the judged live answer); the gate's verdict
event (``events``); the feature-flag document the stacks deploy and a service reads (``flags``); the service
contract: what the product sends a service and reads back, and the records a service queues (``service``).
Floor 1: imports only ``evalgate.core`` (errors, models' size limits, the prompt id and guardrail version rules)
and pydantic; no AWS client.
"""
