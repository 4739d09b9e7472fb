"""A run that needs no model must not pay for heavy imports: the CLI's run path (a judged one too: its judge
calibration check, freshness warnings) imports neither torch nor scipy, nor numpy before its first calls are out
(the runner loads it while they are in flight), and building the Bedrock adapters does not build a boto3 client
until a call is made."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


END_ONLY = """
import sys
from evalgate import cli
from evalgate.cli import run, canary
cli._parser()
from evalgate.engine import runner, judge_calibration, judge_trust
from evalgate.adapters import aws
aws.make_client("bedrock-runtime")
late = ("evalgate.reports", "evalgate.engine.curate", "evalgate.release.canary_power", "boto3", "s3transfer")
print(",".join(m for m in late if m in sys.modules) or "none")
"""


def test_what_only_the_end_of_a_run_needs_is_not_loaded_before_its_calls():
    """The report writers and the golden set's freshness check load while the first calls are in flight
    (cli/run.py ``_Meanwhile``); the canary-power parser reads its defaults without the power model; a model
    client comes from a botocore session, without loading boto3 (S3's clients still do, for its transfers)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'lambdas'}{os.pathsep}{ROOT}", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-c", END_ONLY], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["none"]


def test_the_console_process_starts_up_without_the_collector_and_runs_its_calls_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import gc

    from evalgate import cli
    from evalgate.core import dataset
    from evalgate.engine import runner

    seen: dict[str, bool] = {}
    load_golden, run_evaluation = dataset.load_golden, runner.run_evaluation

    def loading(*a: object, **k: object) -> object:
        seen["start-up"] = gc.isenabled()
        return load_golden(*a, **k)  # type: ignore[arg-type]

    def running(*a: object, **k: object) -> object:
        seen["calls"] = gc.isenabled()
        return run_evaluation(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(dataset, "load_golden", loading)
    monkeypatch.setattr(runner, "run_evaluation", running)
    monkeypatch.chdir(ROOT)
    argv = ["evalgate", "run", "--tier", "offline", "--candidate", "replay:golden/responses/baseline.jsonl"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(tmp_path / "out"), "--no-cache", "--no-progress"])

    class Exited(Exception):
        pass

    def exit_(code: int) -> None:  # the console ends the process without teardown (os._exit)
        seen["flushed"] = True
        raise Exited(code)

    monkeypatch.setattr(cli.os, "_exit", exit_)
    assert gc.isenabled()
    try:
        with pytest.raises(Exited) as ended:
            cli.console()
        assert ended.value.args == (0,) and seen.pop("flushed")
        assert seen == {"start-up": False, "calls": True}  # paused while loading, collecting once the calls start
        assert gc.isenabled() and gc.get_freeze_count() > 0  # start-up's objects went to the permanent generation
    finally:
        gc.unfreeze()
        gc.enable()
    seen.clear()
    assert cli.main([*argv[1:], "--out", str(tmp_path / "lib"), "--no-cache", "--no-progress"]) == 0
    assert seen == {"start-up": True, "calls": True}  # called as a library, the collector is left alone
