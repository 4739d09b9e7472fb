"""evalShards > 1: the quality gate as a CodeBuild batch build (shards + merge); the Bedrock spend budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evalgate.ci.gate_step import Gate, GateEnv
from stacks.settings import SettingsError, load_settings

from .conftest import PIPELINE, Synth, _walk, as_list, cdk_context, statements
from .test_gate_step import FakeCloudWatch, FakePipeline, FakeRunner, FakeS3, FakeSns

SHARDS = 4


@pytest.fixture(scope="session")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The one extra synth: the app with ``evalShards=4`` (shared by every test here)."""
    from aws_cdk import App

    from stacks.application import build

    outdir = tmp_path_factory.mktemp("cdk.out.sharded")
    app = App(context=cdk_context(evalShards=SHARDS), outdir=str(outdir))
    built = build(app, nag=False)
    assembly = app.synth()
    files = {s.stack_name: Path(s.template_full_path) for s in _walk(assembly)}
    templates = {name: json.loads(path.read_text()) for name, path in files.items()}
    return Synth(app=app, built=built, outdir=outdir, templates=templates, template_files=files)


def _gate_action(synth: Synth) -> dict[str, Any]:
    (res,) = synth.resources(PIPELINE, "AWS::CodePipeline::Pipeline").values()
    stage = next(s for s in res["Properties"]["Stages"] if s["Name"] == "QualityGate")
    return next(a for a in stage["Actions"] if a["Name"] == "EvalGate")


def _project(synth: Synth) -> dict[str, Any]:
    ref = _gate_action(synth)["Configuration"]["ProjectName"]["Ref"]
    return synth.templates[PIPELINE]["Resources"][ref]["Properties"]


def _spec(synth: Synth) -> dict[str, Any]:
    """The batch buildspec, with CloudFormation references rendered as ``<Ref>`` placeholders."""
    spec = _project(synth)["Source"]["BuildSpec"]
    if not isinstance(spec, str):
        spec = "".join(p if isinstance(p, str) else "<ref>" for p in spec["Fn::Join"][1])
    return json.loads(spec)


def _graph(synth: Synth) -> dict[str, dict[str, Any]]:
    return {b["identifier"]: b for b in _spec(synth)["batch"]["build-graph"]}


def test_single_shard_keeps_the_plain_codebuild_step(synth: Synth) -> None:
    assert synth.built.settings.eval_shards == 1
    assert "BatchEnabled" not in _gate_action(synth)["Configuration"]
    assert "batch" not in json.dumps(_project(synth)["Source"]["BuildSpec"])


def test_gate_action_runs_a_batch_build(sharded: Synth) -> None:
    action = _gate_action(sharded)
    assert action["ActionTypeId"]["Provider"] == "CodeBuild"
    assert action["Configuration"]["BatchEnabled"] == "true"
    env = {e["name"]: e["value"] for e in json.loads(action["Configuration"]["EnvironmentVariables"])}
    assert env["PIPELINE_EXECUTION_ID"] == "#{codepipeline.PipelineExecutionId}"
    assert {"SOURCE_BRANCH", "SOURCE_COMMIT"} <= set(env)
    project = _project(sharded)
    assert "BuildBatchConfig" in project and "EncryptionKey" in project
    assert not project["Environment"].get("PrivilegedMode", False)
    (res,) = sharded.resources(PIPELINE, "AWS::CodePipeline::Pipeline").values()
    stage = next(s for s in res["Properties"]["Stages"] if s["Name"] == "QualityGate")
    approve = next(a for a in stage["Actions"] if a["Name"] == "Approve")
    assert approve["RunOrder"] == action["RunOrder"]


def test_build_graph_has_the_shards_and_a_merge_after_them(sharded: Synth) -> None:
    graph = _graph(sharded)
    shards = [f"shard_{k}" for k in range(1, SHARDS + 1)]
    assert sorted(graph) == sorted([*shards, "merge"])
    cap = sharded.built.settings.max_run_cost_usd
    for k, ident in enumerate(shards, start=1):
        variables = graph[ident]["env"]["variables"]
        assert variables["GATE_MODE"] == "shard" and variables["SHARD"] == f"{k}/{SHARDS}"
        assert variables["EVALGATE_CACHE_KEY"] == f"cache/evalgate-cache-shard-{k}-of-{SHARDS}.sqlite"
        assert float(variables["MAX_RUN_COST_USD"]) == pytest.approx(cap / SHARDS)
        assert not graph[ident].get("depend-on")
    merge = graph["merge"]
    assert sorted(merge["depend-on"]) == sorted(shards)
    assert merge["env"]["variables"] == {"GATE_MODE": "merge", "SHARD_COUNT": str(SHARDS)}
    spec = _spec(sharded)
    assert spec["phases"]["build"]["commands"] == ['python3 -m evalgate.ci "$GATE_MODE"']
    assert spec["reports"] and next(iter(spec["reports"].values()))["base-directory"] == "out/eval"


def _gate_for(
    variables: dict[str, str], tmp_path: Path, out: str, objects: dict[str, bytes] | None = None
) -> tuple[Gate, FakeRunner, FakeS3]:
    env = {
        "EVAL_BUCKET": "eval-bucket",
        "TOPIC_ARN": "arn:aws:sns:us-east-1:111111111111:alerts",
        "PIPELINE_NAME": "evalgate-pipeline",
        "GATE_STAGE": "QualityGate",
        "APPROVAL_ACTION": "Approve",
        "PIPELINE_EXECUTION_ID": "exec-42",
        "THRESHOLDS_FILE": "golden/gate.toml",
        **variables,
    }
    results = {"verdict": {"verdict": "PASS"}, "usage": {"cost_usd": 0.1}, "hallucinations": []}
    runner = FakeRunner(tmp_path / out, 0, results)
    s3 = FakeS3(objects)
    gate = Gate(
        GateEnv.from_environ(env),
        s3,
        FakeSns(),
        FakePipeline(),
        FakeCloudWatch(),
        runner=runner,
        sleep=lambda _: None,
        out_dir=tmp_path / out,
    )
    return gate, runner, s3


def test_each_shard_build_runs_its_shard_and_uploads_it(sharded: Synth, tmp_path: Path) -> None:
    graph = _graph(sharded)
    for k in range(1, SHARDS + 1):
        gate, runner, s3 = _gate_for(graph[f"shard_{k}"]["env"]["variables"], tmp_path / str(k), "out/shard")
        assert gate.shard() == 0
        (cmd,) = [c for c in runner.commands if "run" in c and "--help" not in c and "git" not in c]
        joined = " ".join(cmd)
        assert f"--shard {k}/{SHARDS}" in joined and "--max-cost 1.25" in joined
        assert f"s3://eval-bucket/cache/evalgate-cache-shard-{k}-of-{SHARDS}.sqlite" in joined
        assert f"runs/exec-42/shards/{k}.json" in s3.objects


def test_merge_build_runs_evalgate_merge_on_every_shard(
    sharded: Synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    objects = {f"runs/exec-42/shards/{k}.json": b"{}" for k in range(1, SHARDS + 1)}
    gate, runner, s3 = _gate_for(_graph(sharded)["merge"]["env"]["variables"], tmp_path, "out/eval", objects)
    assert gate.merge() == 0  # PASS: approves, reports uploaded
    (cmd,) = [c for c in runner.commands if "merge" in c]
    assert cmd[1:4] == ["-m", "evalgate", "merge"]
    assert cmd[4 : 4 + SHARDS] == [f"shards/{k}.json" for k in range(1, SHARDS + 1)]
    assert cmd[cmd.index("--config") + 1] == "golden/gate.toml" and cmd[cmd.index("--out") + 1].endswith("out/eval")
    assert "runs/exec-42/results.json" in s3.objects
    assert gate.codepipeline.results[0]["result"]["status"] == "Approved"


def test_merge_rejects_the_approval_when_a_shard_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    gate, _, _ = _gate_for({"SHARD_COUNT": "2"}, tmp_path, "out/eval", {"runs/exec-42/shards/1.json": b"{}"})
    assert gate.merge() == 4
    assert gate.codepipeline.results[0]["result"]["status"] == "Rejected"


def test_batch_project_role_is_least_privilege(sharded: Synth) -> None:
    role = _project(sharded)["ServiceRole"]["Fn::GetAtt"][0]
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for r in sharded.resources(PIPELINE, "AWS::IAM::Policy").values()
        if {"Ref": role} in r["Properties"]["Roles"]
    ]
    found = {st.get("Sid"): st for doc in policies for st in doc}
    assert {"ResolveApproval", "FindApproval", "WriteRunsAndCache", "WriteTestReports", "ShardResults"} <= set(found)
    shard_res = json.dumps(found["ShardResults"]["Resource"])
    assert "/runs/*/shards/*" in shard_res
    for _, st in statements(sharded.templates[PIPELINE]):
        assert not any(a == "*" or a.endswith(":*") for a in as_list(st["Action"])), st
    batch = [
        st for _, st in statements(sharded.templates[PIPELINE]) if "codebuild:StartBuildBatch" in as_list(st["Action"])
    ]
    assert batch, "the pipeline's action role cannot start the batch build"


def test_sharded_app_has_no_unacknowledged_nag_findings(sharded: Synth) -> None:
    from cdk_nag import AwsSolutionsChecks

    report = AwsSolutionsChecks().validate_scope(sharded.app)
    findings = [f"{v.rule_name} at {c.construct_path}" for v in report.violations for c in v.violating_constructs]
    assert findings == []


def test_sharded_pipeline_passes_cfn_lint(sharded: Synth) -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(sharded.template_files[PIPELINE], config=ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")] == []


@pytest.mark.parametrize("value", [0, 17, -1])
def test_eval_shards_out_of_range_names_the_setting(value: int) -> None:
    with pytest.raises(SettingsError, match=r"- evalShards: "):
        load_settings(cdk_context(evalShards=value))


def test_eval_shards_bad_value_stops_synth() -> None:
    from aws_cdk import App

    from stacks.application import build

    with pytest.raises(SettingsError, match="evalShards"):
        build(App(context=cdk_context(evalShards=17)), nag=False)


def test_monthly_bedrock_budget_notifies_the_topic(synth: Synth) -> None:
    resources = synth.templates[PIPELINE]["Resources"]
    topic = next(k for k, v in resources.items() if v["Type"] == "AWS::SNS::Topic")
    (budget,) = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::Budgets::Budget"]
    data = budget["Budget"]
    assert data["BudgetType"] == "COST" and data["TimeUnit"] == "MONTHLY"
    assert data["BudgetLimit"] == {"Amount": synth.built.settings.monthly_eval_budget_usd, "Unit": "USD"}
    assert "FilterExpression" in data  # which spend it sees: tests/infra/test_eval_spend_and_jobs.py
    notes = {
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"]): n
        for n in budget["NotificationsWithSubscribers"]
    }
    assert set(notes) == {("ACTUAL", 80), ("FORECASTED", 100)}
    for n in notes.values():
        assert n["Notification"]["ThresholdType"] == "PERCENTAGE"
        assert n["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic}}]
    policy = next(v["Properties"] for v in resources.values() if v["Type"] == "AWS::SNS::TopicPolicy")
    (grant,) = [
        st
        for st in policy["PolicyDocument"]["Statement"]
        if st.get("Principal") == {"Service": "budgets.amazonaws.com"}
    ]
    assert grant["Effect"] == "Allow" and grant["Action"] == "sns:Publish" and grant["Resource"] == {"Ref": topic}
    assert grant["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    key = next(
        v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::KMS::Key" and k.startswith("AlertsTopicKey")
    )
    assert any(
        st.get("Principal") == {"Service": "budgets.amazonaws.com"} and st["Condition"] == grant["Condition"]
        for st in key["KeyPolicy"]["Statement"]
    )
