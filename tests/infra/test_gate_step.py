"""The pipeline's gate script: exit code -> approval / notification / failure; baselines move only when approved."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalgate.ci.gate_step import (
    BASELINE_COMMIT_KEY,
    BASELINE_KEY,
    Gate,
    GateEnv,
    decide,
    is_release_candidate,
    main,
)


class NoSuchKey(Exception):
    pass


class FakeS3:
    class exceptions:
        NoSuchKey = NoSuchKey

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects = dict(objects or {})

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if Key not in self.objects:
            raise NoSuchKey(Key)
        return {"Body": io.BytesIO(self.objects[Key])}

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.objects[Key] = Body

    def get_paginator(self, name: str) -> Any:
        assert name == "list_objects_v2"
        objects = self.objects

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]

        return Pages()


class FakeSns:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def publish(self, TopicArn: str, Subject: str, Message: str) -> None:
        assert len(Subject) <= 100
        self.messages.append((Subject, Message))


class FakePipeline:
    def __init__(self, waiting: bool = True, in_stage: str = "exec-42") -> None:
        self.waiting = waiting
        self.in_stage = in_stage  # the execution the gate stage is running (stageStates[].latestExecution)
        self.results: list[dict[str, Any]] = []

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        latest = {"status": "InProgress", "token": "tok-1"} if self.waiting else {"status": "Succeeded"}
        return {
            "stageStates": [
                {
                    "stageName": "QualityGate",
                    "latestExecution": {"pipelineExecutionId": self.in_stage, "status": "InProgress"},
                    "actionStates": [
                        {"actionName": "EvalGate", "latestExecution": {"status": "InProgress"}},
                        {"actionName": "Approve", "latestExecution": latest},
                    ],
                }
            ]
        }

    def put_approval_result(self, **kwargs: Any) -> None:
        self.results.append(kwargs)


class FakeCloudWatch:
    def __init__(self) -> None:
        self.data: list[dict[str, Any]] = []

    def put_metric_data(self, Namespace: str, MetricData: list[dict[str, Any]]) -> None:
        self.data.append({"Namespace": Namespace, **MetricData[0]})


@dataclass
class Done:
    returncode: int
    stdout: str = ""


class FakeRunner:
    """Stands in for subprocess.run: git, ``evalgate run --help`` and ``evalgate run`` (writes reports)."""

    def __init__(
        self,
        out_dir: Path,
        exit_code: int,
        results: dict[str, Any],
        tags: str = "",
        help_text: str = "--tier {offline,smoke,full,release,auto} --max-cost --baseline-mismatch",
    ) -> None:
        self.out_dir, self.exit_code, self.results = out_dir, exit_code, results
        self.tags, self.help_text = tags, help_text
        self.commands: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(self, cmd: list[str], **kwargs: Any) -> Done:
        self.commands.append(cmd)
        self.envs.append(kwargs.get("env") or {})
        if cmd[:2] == ["git", "tag"]:
            return Done(0, self.tags)
        if "--help" in cmd:
            return Done(0, self.help_text)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "results.json").write_text(json.dumps(self.results))
        (self.out_dir / "summary.md").write_text("## EvalGate summary\nfaithfulness 0.91 (0.88-0.94)")
        (self.out_dir / "report.html").write_text("<html></html>")
        (self.out_dir / "junit.xml").write_text("<testsuites/>")
        return Done(self.exit_code)


def make(
    tmp_path: Path,
    exit_code: int,
    *,
    hallucinations: list[dict[str, Any]] | None = None,
    baseline: bool = True,
    waiting: bool = True,
    branch: str = "main",
    tags: str = "",
    help_text: str = "--tier {offline,smoke,full,release,auto} --max-cost --baseline-mismatch",
) -> tuple[Gate, FakeS3, FakeSns, FakePipeline, FakeCloudWatch, FakeRunner]:
    cfg = GateEnv(
        bucket="eval-bucket",
        topic_arn="arn:aws:sns:us-east-1:111111111111:alerts",
        pipeline="evalgate-pipeline",
        stage="QualityGate",
        approval_action="Approve",
        execution_id="exec-42",
        region="us-east-1",
        branch=branch,
        commit="0123456789abcdef",
        generator="us.anthropic.x",
        prompt="support/v1",
        max_cost="5",
    )
    s3 = FakeS3({BASELINE_KEY: b'{"run_id": "old"}', BASELINE_COMMIT_KEY: b"abc123"} if baseline else {})
    results = {"verdict": {"verdict": "PASS"}, "usage": {"cost_usd": 0.42}, "hallucinations": hallucinations or []}
    runner = FakeRunner(tmp_path / "out", exit_code, results, tags=tags, help_text=help_text)
    sns, pipeline, cw = FakeSns(), FakePipeline(waiting), FakeCloudWatch()
    gate = Gate(cfg, s3, sns, pipeline, cw, runner=runner, sleep=lambda _: None, out_dir=tmp_path / "out")
    return gate, s3, sns, pipeline, cw, runner


def test_decisions_by_exit_code() -> None:
    assert decide(0) == decide(0).__class__("PASS", "Approved", False, 0)
    assert decide(3).approval is None and decide(3).notify and decide(3).exit_code == 0
    for code in (1, 2, 4, 9):
        assert decide(code).approval == "Rejected" and decide(code).exit_code == code


def test_release_candidates() -> None:
    assert is_release_candidate("main", ["v1.2.0"], "v*", "release/*")
    assert is_release_candidate("release/2025-06", [], "v*", "release/*")
    assert not is_release_candidate("main", ["nightly"], "v*", "release/*")
    assert not is_release_candidate(None, [], "v*", "release/*")


def test_pass_approves_and_continues_without_moving_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, s3, sns, pipeline, cw, runner = make(tmp_path, 0)
    assert gate.run() == 0
    assert pipeline.results[0]["result"]["status"] == "Approved" and pipeline.results[0]["token"] == "tok-1"
    assert pipeline.results[0]["actionName"] == "Approve" and pipeline.results[0]["stageName"] == "QualityGate"
    assert sns.messages == []
    assert {f"runs/exec-42/{n}" for n in ("report.html", "summary.md", "results.json", "junit.xml")} <= set(s3.objects)
    assert s3.objects[BASELINE_KEY] == b'{"run_id": "old"}'  # promoted only after the approval step
    assert cw.data[0]["MetricName"] == "EvalCostUSD" and cw.data[0]["Value"] == 0.42
    run = next(c for c in runner.commands if "run" in c and "--help" not in c and c[0] != "git")
    assert run[run.index("--tier") + 1] == "auto"
    assert run[run.index("--candidate") + 1] == "bedrock"
    assert "--baseline" in run and "--max-cost" in run and "--cache-s3" in run
    assert run[run.index("--baseline-mismatch") + 1] == "review"  # a golden/config change goes to a person
    assert runner.envs[runner.commands.index(run)]["EVALGATE_BASE_COMMIT"] == "abc123"


def test_pass_with_hallucinations_is_published_for_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = [{"case_id": "ret-window-basic", "suite": "regression", "claims": ["returns within 60 days"]}]
    gate, _, sns, pipeline, _, _ = make(tmp_path, 0, hallucinations=found)
    assert gate.run() == 0
    ((subject, body),) = sns.messages
    assert "PASS with 1 hallucination" in subject
    assert "ret-window-basic" in body and "returns within 60 days" in body
    assert pipeline.results[0]["result"]["status"] == "Approved"


def test_review_leaves_the_approval_waiting_and_sends_the_report_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _, sns, pipeline, _, _ = make(tmp_path, 3)
    assert gate.run() == 0
    assert pipeline.results == []
    ((subject, body),) = sns.messages
    assert "REVIEW" in subject
    assert "runs/exec-42/report.html" in body and "EvalGate summary" in body and "Approve" in body


@pytest.mark.parametrize("code", [1, 4])
def test_fail_and_error_reject_the_approval_and_fail_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _, sns, pipeline, _, _ = make(tmp_path, code)
    assert gate.run() == code
    assert pipeline.results[0]["result"]["status"] == "Rejected"
    assert sns.messages == []


def test_release_tag_runs_the_release_tier_and_first_run_has_no_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _, _, _, _, runner = make(
        tmp_path, 0, baseline=False, tags="v2.0.0\n", help_text="--tier {offline,smoke,full,release}"
    )
    assert gate.run() == 0
    run = next(c for c in runner.commands if "run" in c and "--help" not in c and c[0] != "git")
    assert run[run.index("--tier") + 1] == "release"
    assert "--baseline" not in run
    assert "--max-cost" not in run  # only passed to an evalgate that knows it


def test_promote_copies_the_run_to_the_approved_baseline(tmp_path: Path) -> None:
    gate, s3, _, _, _, _ = make(tmp_path, 0)
    s3.objects["runs/exec-42/results.json"] = b'{"run_id": "new"}'
    assert gate.promote() == 0
    assert s3.objects[BASELINE_KEY] == b'{"run_id": "new"}'
    assert s3.objects[BASELINE_COMMIT_KEY] == b"0123456789abcdef"


def test_promote_without_a_run_is_an_error(tmp_path: Path) -> None:
    gate, s3, _, _, _, _ = make(tmp_path, 0)
    assert gate.promote() == 4
    assert s3.objects[BASELINE_KEY] == b'{"run_id": "old"}'


def test_missing_environment_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="EVAL_BUCKET"):
        GateEnv.from_environ({})
    assert main(["bogus"]) == 2


def test_an_evalgate_without_the_auto_tier_runs_the_full_tier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _, _, _, _, runner = make(tmp_path, 0, help_text="--tier {offline,smoke,full,release}")
    assert gate.run() == 0
    run = next(c for c in runner.commands if "run" in c and "--help" not in c and c[0] != "git")
    assert run[run.index("--tier") + 1] == "full"


def test_a_crash_rejects_the_approval_instead_of_leaving_it_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, s3, _, pipeline, _, _ = make(tmp_path, 0)

    def broken(*_: Any, **__: Any) -> None:
        raise ConnectionError("S3 unreachable")

    monkeypatch.setattr(s3, "put_object", broken)
    assert gate.run() == 4
    assert pipeline.results[0]["result"]["status"] == "Rejected"
    assert "S3 unreachable" in pipeline.results[0]["result"]["summary"]


class FakeEvents:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.entries += Entries
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}


def test_review_goes_to_the_notifier_as_an_eventbridge_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evalgate.core.results import RunResult, Verdict

    monkeypatch.chdir(tmp_path)
    gate, _, sns, pipeline, _, runner = make(tmp_path, 3)
    run = RunResult(
        run_id="r-7",
        started_at="2025-01-01T00:00:00Z",
        finished_at="2025-01-01T00:05:00Z",
        tool_version="0.1.0",
        tier="full",
        suites=["regression"],
        candidate={"model_id": "m"},
        verdict=Verdict(verdict="REVIEW", exit_code=3, reasons=["faithfulness dropped vs baseline"]),
    )
    runner.results = json.loads(run.model_dump_json())
    gate.events = FakeEvents()
    assert gate.run() == 0
    (entry,) = gate.events.entries
    assert entry["Source"] == "evalgate" and entry["DetailType"] == "EvalGate Verdict"
    detail = json.loads(entry["Detail"])
    assert detail["verdict"] == "REVIEW" and detail["pipeline"] == "evalgate-pipeline"
    assert detail["execution_id"] == "exec-42" and "runs/exec-42/report.html" in detail["report_url"]
    assert sns.messages == [] and pipeline.results == []


class CalibratingRunner(FakeRunner):
    """``evalgate calibrate --if-needed``: writes a record for the judge and exits ``calibrate_code``."""

    def __init__(self, *args: Any, calibrate_code: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calibrate_code = calibrate_code

    def __call__(self, cmd: list[str], **kwargs: Any) -> Done:
        if "calibrate" in cmd:
            self.commands.append(cmd)
            self.envs.append(kwargs.get("env") or {})
            folder = Path(cmd[cmd.index("--records") + 1])
            heavy = "--heavy" in cmd
            (folder / f"judge-{'heavy' if heavy else 'cheap'}-abc.json").write_text('{"cost": {"usd": 1.25}}')
            return Done(self.calibrate_code, "judge x: kappa 0.21 [0.1, 0.3] below the floor 0.4\n")
        return super().__call__(cmd, **kwargs)


def test_a_new_judge_is_calibrated_before_the_eval_and_its_record_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, s3, _, pipeline, cw, _ = make(tmp_path, 0)
    s3.objects["baselines/calibration/judge-cheap-abc.json"] = b"{}"  # measured by an earlier run
    runner = CalibratingRunner(
        tmp_path / "out",
        0,
        {"verdict": {"verdict": "PASS"}},
        help_text="--tier {offline,smoke,full,release,auto} --max-cost --calibration",
    )
    gate.runner = runner
    assert gate.run() == 0
    kinds = [c[3] if c[0] != "git" else "git" for c in runner.commands if "--help" not in c]
    assert kinds.index("calibrate") < kinds.index("run")  # measured before the eval uses the judge
    cal = [c for c in runner.commands if "calibrate" in c]
    assert len(cal) == 2 and all("--if-needed" in c for c in cal) and "--heavy" in cal[1]
    assert (tmp_path / ".evalgate" / "calibration" / "judge-cheap-abc.json").is_file()  # fetched from S3
    assert "baselines/calibration/judge-heavy-abc.json" in s3.objects  # the new record is kept beside baselines
    run = next(i for i, c in enumerate(runner.commands) if "run" in c and "--help" not in c and c[0] != "git")
    assert runner.envs[run]["EVALGATE_CALIBRATION_DIR"] == ".evalgate/calibration"
    assert pipeline.results[-1]["result"]["status"] == "Approved"
    assert {
        "Namespace": "EvalGate/Pipeline",
        "MetricName": "CalibrationCostUSD",
        "Value": 1.25,
        "Unit": "None",
        "Dimensions": [{"Name": "Pipeline", "Value": "evalgate-pipeline"}],
    } in cw.data  # the new record's cost


def test_a_judge_below_the_floors_stops_the_gate_with_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, s3, _, pipeline, _, _ = make(tmp_path, 0)
    runner = CalibratingRunner(
        tmp_path / "out",
        0,
        {},
        calibrate_code=1,
        help_text="--tier {offline,smoke,full,release,auto} --max-cost --calibration",
    )
    gate.runner = runner
    assert gate.run() == 1
    assert not any("run" in c and "--help" not in c and c[0] != "git" for c in runner.commands)  # no eval
    result = pipeline.results[-1]["result"]
    assert result["status"] == "Rejected" and "kappa 0.21" in result["summary"]
    # Both records are kept (the measurement is the evidence); the next run reports them without paying again.
    assert "baselines/calibration/judge-cheap-abc.json" in s3.objects


class TwoExecutionsPipeline(FakePipeline):
    """Two executions in flight: the gate stage first runs ``exec-41`` (its approval waiting with ``tok-41``),
    then, once that one leaves the stage, ``exec-42`` (the gate's own execution, approval token ``tok-42``)."""

    def __init__(self, handover_after: int | None) -> None:
        super().__init__(waiting=True, in_stage="exec-41")
        self.calls = 0
        self.handover_after = handover_after

    def get_pipeline_state(self, name: str) -> dict[str, Any]:
        self.calls += 1
        if self.handover_after is not None and self.calls > self.handover_after:
            self.in_stage = "exec-42"
        state = super().get_pipeline_state(name)
        state["stageStates"][0]["actionStates"][1]["latestExecution"]["token"] = f"tok-{self.in_stage[-2:]}"
        return state


def test_the_gate_never_resolves_another_executions_approval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gate, *_ = make(tmp_path, 0)
    other_only = TwoExecutionsPipeline(handover_after=None)
    gate.codepipeline = other_only
    assert gate.approval_token(attempts=5) is None  # exec-41's waiting approval is not ours
    assert other_only.calls == 5

    gate, *_ = make(tmp_path, 1)
    handover = TwoExecutionsPipeline(handover_after=2)
    gate.codepipeline = handover
    assert gate.run() == 1
    (rejected,) = handover.results
    assert rejected["token"] == "tok-42" and rejected["result"]["status"] == "Rejected"


def test_known_error_tickets_are_opened_by_the_gates_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    monkeypatch.chdir(tmp_path)
    help_text = "--tier {offline,smoke,full,release,auto} --max-cost --tickets {none,opscenter,github}"
    gate, *_, runner = make(tmp_path, 0, help_text=help_text)
    gate.cfg = replace(gate.cfg, extra={"tickets": "opscenter"})
    assert gate.run() == 0
    run = next(c for c in runner.commands if "run" in c and "--help" not in c and c[0] != "git")
    assert run[run.index("--tickets") + 1] == "opscenter"
    env = GateEnv.from_environ(
        {
            "EVAL_BUCKET": "b",
            "TOPIC_ARN": "t",
            "PIPELINE_NAME": "p",
            "GATE_STAGE": "g",
            "APPROVAL_ACTION": "a",
            "PIPELINE_EXECUTION_ID": "e",
            "EVALGATE_TICKETS": "github",
            "EVALGATE_GITHUB_REPO": "org/svc",
            "EVALGATE_GITHUB_TOKEN_SECRET": "tok",
        }
    )
    assert env.extra == {"tickets": "github", "github_repo": "org/svc", "github_token_secret": "tok"}
    gate2, *_, runner2 = make(tmp_path, 0)  # an evalgate that does not know --tickets is not given it
    gate2.cfg = replace(gate2.cfg, extra={"tickets": "opscenter"})
    gate2.run()
    assert "--tickets" not in next(c for c in runner2.commands if "run" in c and "--help" not in c and c[0] != "git")


def test_the_history_site_is_refreshed_after_each_run_and_linked_in_emails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _s3, sns, *_, runner = make(tmp_path, 3, help_text="--tier auto --max-cost\n  history  a static site")
    assert gate.run() == 0
    history = [c for c in runner.commands if "history" in c and "--help" not in c]
    assert history and history[0][history[0].index("--runs") + 1] == "s3://eval-bucket/runs/"
    assert history[0][history[0].index("--out") + 1] == "s3://eval-bucket/history/"
    assert "History of runs: https://us-east-1.console.aws.amazon.com/s3/object/eval-bucket" in sns.messages[0][1]
