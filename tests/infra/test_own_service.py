"""Gate your own service: the stacks, unchanged, ship whichever service cdk.json names.

The example FAQ desk (tests/example_service: its own code root, handler, prompts and golden set) is named in the
settings; the synthesized app has exactly the demo's resources, with the service function's handler, prompt,
code asset and the pre-traffic hook's golden set following the settings.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from evalgate.engine.change_type import deployed_functions
from stacks.constructs.lambda_bundle import AssetBundler
from stacks.settings import SettingsError, load_settings

from .conftest import PIPELINE, PROD, STAGING, Synth, _walk, cdk_context

EXAMPLE = "tests/example_service"
HAIKU = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
OWN_SERVICE: dict[str, Any] = {
    "serviceCodeRoot": f"{EXAMPLE}/src",
    "serviceHandler": "faq_desk.handler.handler",
    "promptsDir": f"{EXAMPLE}/prompts",
    "goldenDir": f"{EXAMPLE}/golden",
    "thresholdsFile": f"{EXAMPLE}/golden/gate.toml",
    "promptVersion": "faq/v1",
    "generatorModelId": HAIKU,
    "featureFlags": {
        "default_variant": "control",
        "variants": {"control": {"model_id": HAIKU, "prompt_version": "faq/v1"}},
    },
}


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    from aws_cdk import App

    from stacks.application import build

    outdir = tmp_path_factory.mktemp("cdk.out.own")
    app = App(context=cdk_context(**OWN_SERVICE), outdir=str(outdir))
    built = build(app, nag=False)
    assembly = app.synth()
    templates = {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in _walk(assembly)}
    return Synth(app=app, built=built, outdir=outdir, templates=templates, template_files={})


def _function(template: dict[str, Any], handler: str) -> dict[str, Any]:
    [fn] = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"] == handler
    ]
    return fn


def _hook(template: dict[str, Any]) -> dict[str, Any]:
    return _function(template, "handlers.pre_traffic_hook.handler")


def _resources(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(logical id, type); a published version's id ends with a hash of its code and configuration."""
    return {
        (re.sub(r"[0-9a-f]{32}$", "", k) if v["Type"] == "AWS::Lambda::Version" else k, v["Type"])
        for k, v in template["Resources"].items()
    }


def test_the_same_stacks_build_the_same_resources_for_another_service(synth: Synth, own: Synth) -> None:
    assert set(own.templates) == set(synth.templates)
    for name, template in synth.templates.items():
        assert _resources(own.templates[name]) == _resources(template), name


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_the_service_function_runs_the_named_handler_prompt_and_code(synth: Synth, own: Synth, stack: str) -> None:
    demo = _function(synth.templates[stack], "store_assistant.handler.handler")
    fn = _function(own.templates[stack], "faq_desk.handler.handler")
    assert fn["Environment"]["Variables"]["PROMPT_ID"] == "faq/v1"
    assert fn["Environment"]["Variables"]["EVALGATE_PROMPTS_DIR"] == "/var/task/prompts"
    assert fn["Code"]["S3Key"] != demo["Code"]["S3Key"]  # another asset: the service's own code, prompts, knowledge
    hook = _hook(own.templates[stack])
    assert hook["Environment"]["Variables"]["SMOKE_CASES"] == "/var/task/golden#smoke"
    assert hook["Code"]["S3Key"] != _hook(synth.templates[stack])["Code"]["S3Key"]  # the service's golden set


def test_the_pipeline_gates_with_the_services_golden_set_and_prompt(own: Synth) -> None:
    envs = [
        {e["Name"]: e.get("Value") for e in p["Properties"]["Environment"].get("EnvironmentVariables", [])}
        for p in own.resources(PIPELINE, "AWS::CodeBuild::Project").values()
    ]
    gates = [e for e in envs if "THRESHOLDS_FILE" in e]
    assert gates
    for env in gates:  # the quality gate (and pull-request evaluation) render faq/v1 from the service's prompts
        assert env["GOLDEN_DIR"] == f"{EXAMPLE}/golden" and env["THRESHOLDS_FILE"] == f"{EXAMPLE}/golden/gate.toml"
        assert env["PROMPT_ID"] == "faq/v1" and env["EVALGATE_PROMPTS_DIR"] == f"{EXAMPLE}/prompts"


def test_the_assets_hold_the_service_its_prompts_its_knowledge_and_the_product(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    functions = deployed_functions(
        repo,
        {k: v for k, v in OWN_SERVICE.items() if k in ("serviceCodeRoot", "serviceHandler", "promptsDir", "goldenDir")},
    )
    out, hook = tmp_path / "code", tmp_path / "hook"
    AssetBundler(functions["faq_desk.handler.handler"], repo).try_bundle(str(out))
    assert (out / "faq_desk/handler.py").is_file()  # handler "faq_desk.handler.handler" at the code root
    assert (out / "evalgate/contracts/service.py").is_file()
    assert not (out / "handlers").exists() and not (out / "store_assistant").exists()  # only what it imports
    assert (out / "prompts/faq/v1/system.md").is_file() and (out / "golden/knowledge/help.md").is_file()
    assert not (out / "golden/cases.jsonl").exists()
    assert functions["handlers.online_judge.handler"].ships(f"{EXAMPLE}/golden/knowledge/help.md")
    AssetBundler(functions["handlers.pre_traffic_hook.handler"], repo).try_bundle(str(hook))
    smoke = [json.loads(line) for line in (hook / "golden/cases.jsonl").read_text().splitlines()]
    assert any("smoke" in c["tags"] for c in smoke)  # SMOKE_CASES=/var/task/golden#smoke finds the service's


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"serviceHandler": "faq_desk.handlr.handler", "serviceCodeRoot": f"{EXAMPLE}/src"},
            "serviceHandler: no module faq_desk.handlr in tests/example_service/src/ "
            "(did you mean 'faq_desk.handler'?)",
        ),
        (
            {"serviceHandler": "store_assistant.handler.handle"},
            "serviceHandler: lambdas/store_assistant/handler.py has no top-level function handle "
            "(did you mean 'handler'?)",
        ),
        ({"serviceHandler": "handler"}, "serviceHandler: must be '<module path>.<function>'"),
        ({"serviceCodeRoot": "services"}, "serviceCodeRoot: services does not exist in the repository"),
        ({"promptsDir": f"{EXAMPLE}/prompts"}, f"promptVersion: {EXAMPLE}/prompts/support/v1/ does not exist"),
        ({"serviceHandlr": "x.y"}, "serviceHandlr: unknown setting (did you mean 'serviceHandler'?)"),
    ],
)
def test_a_wrong_service_setting_stops_synth_naming_it(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(cdk_context(**overrides))
    assert message in str(info.value), str(info.value)


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_every_alarm_on_a_service_metric_reads_one_the_contract_requires(synth: Synth, stack: str) -> None:
    """What an alarm reads from the service is in ``telemetry.SERVICE_METRICS`` (checked on every service by the
    contract suite); the online judge publishes the quality metrics, and feedback is optional."""
    from evalgate.contracts import telemetry as tm

    alarms = synth.resources(stack, "AWS::CloudWatch::Alarm").values()
    metrics = [a["Properties"] for a in alarms] + [
        m["MetricStat"]["Metric"] for a in alarms for m in a["Properties"].get("Metrics", []) if "MetricStat" in m
    ]
    names = {m.get("MetricName") for m in metrics if m.get("Namespace") == tm.DEFAULT_NAMESPACE}
    by_others = {
        tm.QUALITY_SCORE,
        tm.HALLUCINATION,
        tm.JUDGED_COUNT,
        tm.UNSCORED,
        tm.INJECTION_LEAK,  # online judge
        tm.FEEDBACK_SCORE,
        tm.CANARY_VERDICT,
    }
    assert tm.ERRORS in names and tm.TIME_TO_FIRST_TOKEN in names
    assert names - {None} - by_others <= set(tm.SERVICE_METRICS), names
