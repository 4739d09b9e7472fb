"""The evaluation bucket's layout: the keys the gate step writes and reads, the pull-request build reads, and the
stacks scope IAM and lifecycle rules to. Pure (the promote build installs only boto3 and this package).
"""

from __future__ import annotations

RUNS_PREFIX = "runs/"  # runs/<pipeline execution id>/: each run's reports; shards under .../shards/<k>.json
BASELINE_PREFIX = "baselines/approved/"  # the last APPROVED run: the next run's baseline
BASELINE_KEY = BASELINE_PREFIX + "results.json"
BASELINE_COMMIT_KEY = BASELINE_PREFIX + "commit.txt"
CALIBRATION_PREFIX = "baselines/calibration/"  # judge calibration records, kept beside the approved baselines
LOAD_BASELINE_KEY = "baselines/load/results.json"  # the last passing load test
CACHE_PREFIX = "cache/"
CACHE_KEY = CACHE_PREFIX + "evalgate-cache.sqlite"  # the main gate's evaluation cache
HISTORY_PREFIX = "history/"  # the static history site (evalgate history) over runs/
PR_CACHE_PREFIX = "pr-cache/"  # pr-cache/<number>/: each pull request's own cache (never the main one)
PR_RUNS_PREFIX = "pr-runs/"  # pr-runs/<number>/<commit>/: each pull request's reports


def run_prefix(execution_id: str) -> str:
    return f"{RUNS_PREFIX}{execution_id}/"


def shard_results_key(execution_id: str, index: int) -> str:
    return f"{run_prefix(execution_id)}shards/{index}.json"


def shard_cache_key(k: int, n: int) -> str:
    """Each shard build's own cache (shards run at once; one SQLite object would be overwritten)."""
    return f"{CACHE_PREFIX}evalgate-cache-shard-{k}-of-{n}.sqlite"
