"""Bedrock evaluation jobs end to end: the dataset goes to S3 (moto), jobs are created and polled one at a time
(botocore Stubber on the bedrock control plane: moto does not implement evaluation jobs), recorded output
JSONL in Bedrock's S3 layout is parsed, mapped onto evalgate metrics and gated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from evalgate.adapters.replay import ReplayCandidate
from evalgate.core.config import GateConfig, load_config
from evalgate.core.dataset import load_golden
from evalgate.core.errors import ProviderError
from evalgate.engine.evaljobs import EvaluationJobJudge
from evalgate.engine.runner import run_evaluation

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = load_golden(ROOT / "golden", ["regression"])
CASES = GOLDEN.cases[:6]
ROLE = "arn:aws:iam::123456789012:role/evalgate-eval"
JUDGE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
BUCKET = "evalgate-evals"


def arn(job_id: str) -> str:
    return f"arn:aws:bedrock:us-east-1:123456789012:evaluation-job/{job_id}"


def job_description(name: str, status: str, failures: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "jobName": name,
        "status": status,
        "jobArn": arn(name[-6:]),
        "roleArn": ROLE,
        "jobType": "Automated",
        "applicationType": "ModelEvaluation",
        "evaluationConfig": {
            "automated": {
                "datasetMetricConfigs": [
                    {
                        "taskType": "General",
                        "dataset": {"name": f"{name}-dataset"},
                        "metricNames": ["Builtin.Faithfulness"],
                    }
                ]
            }
        },
        "inferenceConfig": {
            "models": [{"precomputedInferenceSource": {"inferenceSourceIdentifier": "evalgate-candidate"}}]
        },
        "outputDataConfig": {"s3Uri": f"s3://{BUCKET}/jobs/{name}/output/"},
        "creationTime": "2025-06-01T00:00:00Z",
    }
    if failures:
        out["failureMessages"] = failures
    return out


@pytest.fixture
def config() -> GateConfig:
    cfg = load_config(ROOT / "golden" / "gate.toml")
    cfg.evaluation_job.role_arn = ROLE
    cfg.evaluation_job.s3_uri = f"s3://{BUCKET}/jobs"
    cfg.evaluation_job.evaluator_model = JUDGE
    cfg.evaluation_job.max_prompts = 4  # 6 answers -> two jobs, one after the other
    cfg.evaluation_job.poll_initial_s = 10
    cfg.evaluation_job.poll_max_s = 40
    cfg.thresholds.similarity = None  # no embedder here: the judge path is under test
    return cfg


class FakeBedrockWriter:
    """Plays Bedrock's part on S3: when the job runs (during a poll), write its output JSONL in the documented
    layout <output>/<job name>/<job id>/models/<source>/taskTypes/General/datasets/<dataset>/<uuid>_output.jsonl."""

    def __init__(self, s3: Any, score: Any, drop: int = 0) -> None:
        self.s3 = s3
        self.score = score
        self.drop = drop
        self.sleeps: list[float] = []
        self.written: list[str] = []

    def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/").get("Contents", [])]
        for key in keys:
            if not key.endswith("/dataset.jsonl"):
                continue
            name = key.split("/")[1]
            out_prefix = f"jobs/{name}/output/{name}/{name[-6:]}/models/evalgate-candidate/taskTypes/General/"
            if any(k.startswith(out_prefix) for k in keys):
                continue
            body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
            lines = []
            records = [json.loads(line) for line in body.splitlines() if line.strip()]
            for rec in records[self.drop :]:
                answer = rec["modelResponses"][0]["response"]
                lines.append(
                    json.dumps(
                        {
                            "automatedEvaluationResult": {
                                "scores": [
                                    {
                                        "metricName": "Builtin.Faithfulness",
                                        "result": self.score(answer),
                                        "evaluatorDetails": [{"modelIdentifier": JUDGE, "explanation": "checked"}],
                                    },
                                    {
                                        "metricName": "Builtin.Relevance",
                                        "result": 1.0,
                                        "evaluatorDetails": [{"modelIdentifier": JUDGE, "explanation": "on topic"}],
                                    },
                                    {
                                        "metricName": "Builtin.Correctness",
                                        "result": 0.5,
                                        "evaluatorDetails": [{"modelIdentifier": JUDGE, "explanation": "partly"}],
                                    },
                                ]
                            },
                            "inputRecord": {k: v for k, v in rec.items() if k != "modelResponses"},
                            "modelResponses": rec["modelResponses"],
                        }
                    )
                )
            out_key = f"{out_prefix}datasets/{name}-dataset/1a2b3c_output.jsonl"
            self.s3.put_object(Bucket=BUCKET, Key=out_key, Body="\n".join(lines).encode())
            self.s3.put_object(Bucket=BUCKET, Key=f"jobs/{name}/output/{name}/{name[-6:]}/manifest.json", Body=b"{}")
            self.written.append(out_key)


def stub_job(stub: Stubber, name: str, polls: list[str], busy_first: bool = False, failures: list[str] | None = None):
    if busy_first:
        stub.add_response(
            "list_evaluation_jobs",
            {
                "jobSummaries": [
                    {
                        "jobArn": arn("other1"),
                        "jobName": "someone-elses-job",
                        "status": "InProgress",
                        "creationTime": "2025-06-01T00:00:00Z",
                        "jobType": "Automated",
                        "evaluationTaskTypes": ["General"],
                    }
                ]
            },
            {"statusEquals": "InProgress", "maxResults": 10},
        )
    # an empty result has no jobSummaries at all (the API model gives the list a minimum length of 1)
    stub.add_response("list_evaluation_jobs", {}, {"statusEquals": "InProgress", "maxResults": 10})
    stub.add_response(
        "create_evaluation_job",
        {"jobArn": arn(name[-6:])},
        {
            "jobName": name,
            "jobDescription": ANY,
            "roleArn": ROLE,
            "applicationType": "ModelEvaluation",
            "evaluationConfig": {
                "automated": {
                    "datasetMetricConfigs": [
                        {
                            "taskType": "General",
                            "dataset": {
                                "name": f"{name}-dataset",
                                "datasetLocation": {"s3Uri": f"s3://{BUCKET}/jobs/{name}/dataset.jsonl"},
                            },
                            "metricNames": ["Builtin.Faithfulness", "Builtin.Relevance", "Builtin.Correctness"],
                        }
                    ],
                    "evaluatorModelConfig": {"bedrockEvaluatorModels": [{"modelIdentifier": JUDGE}]},
                }
            },
            "inferenceConfig": {
                "models": [{"precomputedInferenceSource": {"inferenceSourceIdentifier": "evalgate-candidate"}}]
            },
            "outputDataConfig": {"s3Uri": f"s3://{BUCKET}/jobs/{name}/output/"},
        },
    )
    for status in polls:
        stub.add_response(
            "get_evaluation_job",
            job_description(name, status, failures if status == "Failed" else None),
            {"jobIdentifier": arn(name[-6:])},
        )


def run_with_jobs(config: GateConfig, writer_score: Any, script: Any, drop: int = 0):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        bedrock = boto3.client("bedrock", region_name="us-east-1")
        writer = FakeBedrockWriter(s3, writer_score, drop)
        judge = EvaluationJobJudge(config, run_id="t1", bedrock=bedrock, s3=s3, sleep=writer, clock=lambda: 0.0)
        with Stubber(bedrock) as stub:
            script(stub)
            result = run_evaluation(
                golden=GOLDEN,
                cases=CASES,
                candidate=ReplayCandidate(ROOT / "golden" / "responses" / "baseline.jsonl"),
                config=config,
                tier="release",
                judge=None,
                embedder=None,
                batch_judge=judge,
            )
            stub.assert_no_pending_responses()
        datasets = {
            o["Key"]: s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read().decode()
            for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="jobs/")["Contents"]
            if o["Key"].endswith("dataset.jsonl")
        }
    return result, judge, writer, datasets


def test_two_jobs_one_at_a_time_scores_mapped_and_gated(config: GateConfig):
    def script(stub: Stubber) -> None:
        stub_job(stub, "evalgate-t1-1", ["InProgress", "InProgress", "Completed"], busy_first=True)
        stub_job(stub, "evalgate-t1-2", ["InProgress", "Completed"])

    result, judge, writer, datasets = run_with_jobs(config, lambda answer: 0.9, script)
    assert [j["name"] for j in judge.jobs] == ["evalgate-t1-1", "evalgate-t1-2"]
    assert [j["prompts"] for j in judge.jobs] == [4, 2] and all(j["status"] == "Completed" for j in judge.jobs)
    assert [j["output_records"] for j in judge.jobs] == [4, 2]
    assert result.evaluation_jobs == judge.jobs
    # waited for the busy slot, then backed off exponentially while the job ran: 10, 10, 20 then 10
    assert writer.sleeps == [10, 10, 20, 10]
    records = [json.loads(line) for text in datasets.values() for line in text.splitlines()]
    assert len(records) == 6 and all(len(r["modelResponses"]) == 1 for r in records)
    for c in result.cases:
        f = c.metrics["faithfulness"]
        assert f.value == 0.9 and f.details["source"] == "bedrock-evaluation-job" and f.details["judge"] == JUDGE
        assert c.value("relevance") == 1.0 and c.value("bedrock_correctness") == 0.5
    faith = next(a for a in result.aggregates if a.metric == "faithfulness" and a.suite == "regression")
    assert faith.value == pytest.approx(0.9) and faith.status == "pass"


def test_low_job_scores_fail_the_gate(config: GateConfig):
    def script(stub: Stubber) -> None:
        stub_job(stub, "evalgate-t1-1", ["InProgress", "Completed"])
        stub_job(stub, "evalgate-t1-2", ["InProgress", "Completed"])

    result, *_ = run_with_jobs(config, lambda answer: 0.4, script)
    assert result.verdict.verdict == "FAIL"
    assert any(r.startswith("regression.faithfulness = 0.400") for r in result.verdict.reasons)


def test_records_the_job_did_not_score_are_unscored(config: GateConfig):
    def script(stub: Stubber) -> None:
        stub_job(stub, "evalgate-t1-1", ["InProgress", "Completed"])
        stub_job(stub, "evalgate-t1-2", ["InProgress", "Completed"])

    result, *_ = run_with_jobs(config, lambda answer: 0.95, script, drop=1)
    missing = [c for c in result.cases if c.metrics["faithfulness"].unscored]
    assert len(missing) == 2  # the first record of each job
    assert all("returned no score" in c.metrics["faithfulness"].reason for c in missing)
    assert result.verdict.verdict == "ERROR"  # 2 of 6 unscored is over the budget


def test_a_failed_job_is_an_error_naming_the_job(config: GateConfig):
    def script(stub: Stubber) -> None:
        stub_job(stub, "evalgate-t1-1", ["Failed"], failures=["AccessDenied on s3://evalgate-evals/jobs"])

    result, judge, _, _ = run_with_jobs(config, lambda a: 1.0, script)
    assert result.verdict.verdict == "ERROR"
    assert result.verdict.reasons[0] == (
        "batch judge failed: evaluation job evalgate-t1-1 ended Failed: AccessDenied on s3://evalgate-evals/jobs"
    )
    assert judge.jobs[0]["status"] == "Failed"


def test_busy_slot_times_out_with_the_job_in_the_way(config: GateConfig):
    config.evaluation_job.timeout_s = 25
    clock = iter(range(0, 10_000, 10))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        bedrock = boto3.client("bedrock", region_name="us-east-1")
        judge = EvaluationJobJudge(
            config, run_id="t2", bedrock=bedrock, s3=s3, sleep=lambda s: None, clock=lambda: float(next(clock))
        )
        busy = {
            "jobSummaries": [
                {
                    "jobArn": arn("other1"),
                    "jobName": "nightly-eval",
                    "status": "InProgress",
                    "creationTime": "2025-06-01T00:00:00Z",
                    "jobType": "Automated",
                    "evaluationTaskTypes": ["General"],
                }
            ]
        }
        with Stubber(bedrock) as stub:
            for _ in range(3):
                stub.add_response("list_evaluation_jobs", busy)
            items = [(c, g, GOLDEN.knowledge_for(c)) for c in CASES[:2] for g in [_gen(c.id)]]
            with pytest.raises(ProviderError, match="still busy after 25s \\(in progress: nightly-eval\\)"):
                judge(items)


def _gen(case_id: str) -> Any:
    from evalgate.core.models import Generation

    return Generation(case_id=case_id, output="Within 30 days.")
