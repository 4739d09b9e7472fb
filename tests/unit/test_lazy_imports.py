"""A run that needs no model must not pay for heavy imports: the CLI's run path (a judged one too: its judge
calibration check, freshness warnings) imports neither torch nor scipy, nor numpy before its first calls are out
(the runner loads it while they are in flight), and building the Bedrock adapters does not build a boto3 client
until a call is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from evalgate import cli, reports
from evalgate.engine import runner, judge, judge_calibration, judge_trust, curate
from evalgate.adapters.bedrock import BedrockJudgeModel, TitanEmbedder
judge_model, embedder = BedrockJudgeModel("j"), TitanEmbedder()
heavy = sorted(m for m in ("torch", "scipy", "numpy", "sentence_transformers", "transformers") if m in sys.modules)
print(",".join(heavy) or "none", judge_model._client._client is None and embedder._client._client is None)
"""


def test_the_run_path_starts_without_torch_scipy_or_numpy_and_builds_no_client_before_a_call():
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}{os.pathsep}{ROOT}", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["none", "True"]
