"""Wiring of the service stack: the new version's alarms, the canary, AppConfig, alerts, capture and shadow."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Match

from .conftest import PROD, REGION, STAGING, Synth, as_list

ROLLBACK_METRICS = {"QualityScore", "Hallucination", "TimeToFirstToken", "Errors", "FeedbackScore"}


def _one(synth: Synth, stack: str, type_: str) -> tuple[str, dict[str, Any]]:
    found = synth.resources(stack, type_)
    assert len(found) == 1, f"expected one {type_} in {stack}, found {sorted(found)}"
    return next(iter(found.items()))


def _function(synth: Synth, stack: str, handler: str) -> tuple[str, dict[str, Any]]:
    for logical_id, res in synth.resources(stack, "AWS::Lambda::Function").items():
        if res["Properties"]["Handler"] == handler:
            return logical_id, res
    raise AssertionError(f"no function with handler {handler} in {stack}")


def _service_version(synth: Synth, stack: str) -> str:
    logical_id, _ = _one(synth, stack, "AWS::Lambda::Version")
    return logical_id


def _metric_name(alarm: dict[str, Any]) -> str:
    """The alarm's metric; for a metric-math alarm, the metric its inputs read."""
    if "MetricName" in alarm:
        return str(alarm["MetricName"])
    return str(next(m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m))


def _alarms(synth: Synth, stack: str, namespace: str = "EvalGate/Service") -> dict[str, dict[str, Any]]:
    """Alarms on the service's metrics (``AWS/Lambda``: the live canary judge's own health alarms); a metric-math
    alarm whose inputs all read one metric also gets that metric's Namespace, MetricName and Dimensions."""
    out = {}
    for k, v in synth.resources(stack, "AWS::CloudWatch::Alarm").items():
        props = dict(v["Properties"])
        inputs = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        if inputs and all(m == inputs[0] for m in inputs):
            props.update({key: inputs[0][key] for key in ("Namespace", "MetricName", "Dimensions")})
        if props.get("Namespace") == namespace:
            out[k] = props
    return out


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_every_alarm_watches_only_the_new_version(synth: Synth, stack: str) -> None:
    version = _service_version(synth, stack)
    alarms = _alarms(synth, stack)
    # the minimum-sample alarm and the live canary verdict exist only in canary mode (Prod here; Staging is
    # all-at-once)
    expected = ROLLBACK_METRICS | ({"JudgedCount", "CanaryVerdict"} if stack == PROD else set())
    assert {a["MetricName"] for a in alarms.values()} == expected
    for name, alarm in alarms.items():
        assert alarm["Namespace"] == "EvalGate/Service", name
        # exactly the {FunctionVersion} dimension set the handlers publish, valued with the NEW version
        assert alarm["Dimensions"] == [{"Name": "FunctionVersion", "Value": {"Fn::GetAtt": [version, "Version"]}}], name


def test_min_sample_alarm_breaches_on_missing_data(synth: Synth) -> None:
    s = synth.built.settings
    synth.template(PROD).has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "JudgedCount",
            "Statistic": "Sum",
            "ComparisonOperator": "LessThanThreshold",
            "Threshold": s.min_judged_samples,
            "Period": s.canary_interval_minutes * 60,
            "TreatMissingData": "breaching",
        },
    )
    others = [a for a in _alarms(synth, PROD).values() if a["MetricName"] != "JudgedCount"]
    assert all(a["TreatMissingData"] == "notBreaching" for a in others)


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_alarms_and_dashboard_name_only_metrics_the_runtime_publishes(synth: Synth, stack: str) -> None:
    """The metric-name contract is evalgate.contracts.telemetry: an alarm on an unpublished name never fires."""
    from evalgate.contracts import telemetry as tm

    names = {a["MetricName"] for a in _alarms(synth, stack).values()}
    assert names <= set(tm.UNITS), names - set(tm.UNITS)
    (dash,) = synth.resources(stack, "AWS::CloudWatch::Dashboard").values()
    graphed = set(re.findall(r'MetricName=\\*"(\w+)', json.dumps(dash["Properties"]["DashboardBody"])))
    assert graphed <= set(tm.UNITS) and {tm.TIME_TO_FIRST_TOKEN, tm.LATENCY} <= graphed


def test_alarm_thresholds_come_from_settings(synth: Synth) -> None:
    t = synth.built.settings.alarm_thresholds
    by_metric = {a["MetricName"]: a for a in _alarms(synth, PROD).values()}
    assert by_metric["QualityScore"]["Threshold"] == t.quality_min
    assert by_metric["QualityScore"]["ComparisonOperator"] == "LessThanThreshold"
    assert by_metric["Hallucination"]["Statistic"] == "Average"  # 0/1 per judged answer: average = rate
    assert by_metric["Hallucination"]["Threshold"] == t.hallucination_max
    assert by_metric["TimeToFirstToken"]["ExtendedStatistic"] == "p95"
    assert by_metric["TimeToFirstToken"]["Threshold"] == synth.built.settings.ttft_slo_ms
    assert "Latency" not in by_metric  # total time is judged against the previous version by the canary analysis
    assert by_metric["Errors"]["Statistic"] == "Average"
    assert by_metric["FeedbackScore"]["Threshold"] == t.feedback_min


def test_feedback_gates_only_past_a_minimum_of_distinct_answers(synth: Synth) -> None:
    t = synth.built.settings.alarm_thresholds
    fb = next(a for a in _alarms(synth, PROD).values() if a["MetricName"] == "FeedbackScore")
    by_id = {m["Id"]: m for m in fb["Metrics"]}
    expression = next(m for m in fb["Metrics"] if "Expression" in m)
    assert expression["Expression"] == f"IF(answers >= {t.feedback_min_answers}, score, 1)"
    assert expression.get("ReturnData", True) is True
    assert by_id["score"]["MetricStat"]["Stat"] == "Average" and by_id["answers"]["MetricStat"]["Stat"] == "SampleCount"
    assert all(by_id[i]["MetricStat"]["Period"] == t.period_minutes * 60 for i in ("score", "answers"))
    assert fb["ComparisonOperator"] == "LessThanThreshold" and fb["TreatMissingData"] == "notBreaching"
    assert f"at least {t.feedback_min_answers} distinct rated answers" in fb["AlarmDescription"]


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_deployment_group_rolls_back_on_alarms_failure_and_stop(synth: Synth, stack: str) -> None:
    _, group = _one(synth, stack, "AWS::CodeDeploy::DeploymentGroup")
    props = group["Properties"]
    listed = {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]}
    rollback = {k for k, a in _alarms(synth, stack).items() if a["MetricName"] in ROLLBACK_METRICS | {"CanaryVerdict"}}
    rollback |= set(_alarms(synth, stack, "AWS/Lambda"))  # the live canary judge's errors and heartbeat
    assert props["AlarmConfiguration"]["Enabled"] is True
    assert listed == rollback
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    assert set(props["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_REQUEST",
        "DEPLOYMENT_STOP_ON_ALARM",
    }


def _hooks(template: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """The live alias's CodeDeploy update policy and the handlers of the template's functions."""
    aliases = {v["Properties"]["Name"]: v for v in template["Resources"].values() if v["Type"] == "AWS::Lambda::Alias"}
    handlers = {
        v["Properties"]["Handler"] for v in template["Resources"].values() if v["Type"] == "AWS::Lambda::Function"
    }
    return aliases["live"]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"], handlers


def test_a_canary_gets_the_pre_traffic_smoke_and_the_live_sample_analysis(synth: Synth) -> None:
    assert synth.built.prod_mode == "canary"
    pre, _ = _function(synth, PROD, "handlers.pre_traffic_hook.handler")
    post, post_fn = _function(synth, PROD, "handlers.canary_analysis.handler")
    group, _ = _one(synth, PROD, "AWS::CodeDeploy::DeploymentGroup")
    update, _ = _hooks(synth.templates[PROD])
    assert update["BeforeAllowTrafficHook"] == {"Ref": pre}
    assert update["AfterAllowTrafficHook"] == {"Ref": post}
    assert update["DeploymentGroupName"] == {"Ref": group}
    # the canary analysis reads the min-sample alarm (an unjudged canary fails closed) after a grace for late
    # judgements (capture queue + judge + metric ingestion)
    env = post_fn["Properties"]["Environment"]["Variables"]
    min_alarm = next(k for k, a in _alarms(synth, PROD).items() if a["MetricName"] == "JudgedCount")
    assert env["MIN_SAMPLES_ALARM"] == {"Ref": min_alarm}
    assert env["SAMPLE_GRACE_SECONDS"] == str(synth.built.settings.sample_grace_seconds)


def _all_at_once_templates(synth: Synth) -> dict[str, dict[str, Any]]:
    """Staging (always all-at-once) and Prod synthesized for an infrastructure-only change (all-at-once)."""
    from aws_cdk import App, Stack

    from stacks.service_stack import ServiceStack, ServiceStackProps

    prod = ServiceStack(
        App(context={"aws:cdk:bundling-stacks": []}),
        "ProdInfraOnly",
        ServiceStackProps(
            settings=synth.built.settings,
            stage_name="Prod",
            deployment_mode="all-at-once",
        ),
    )
    return {
        "Staging": synth.templates[STAGING],
        "Prod (infrastructure-only)": Stack.of(prod).resolve(
            prod.node.root.synth().get_stack_by_name(prod.stack_name).template
        ),
    }


def test_all_at_once_deployments_never_get_a_check_that_needs_live_traffic(synth: Synth) -> None:
    for name, template in _all_at_once_templates(synth).items():
        update, handlers = _hooks(template)
        # the smoke set on the new version needs no traffic and stays; nothing waits for judged live answers,
        # which an all-at-once deployment cannot have when AfterAllowTraffic runs
        assert "BeforeAllowTrafficHook" in update, name
        assert "AfterAllowTrafficHook" not in update, name
        assert "handlers.canary_analysis.handler" not in handlers, name
        assert "handlers.pre_traffic_hook.handler" in handlers, name
        # nor an alarm that would sit in ALARM (missing data breaches) with nothing reading it
        metrics = {
            _metric_name(r["Properties"])
            for r in template["Resources"].values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
        }
        assert metrics == ROLLBACK_METRICS, name
        groups = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodeDeploy::DeploymentGroup"]
        assert [g["Properties"]["DeploymentConfigName"] for g in groups] == ["CodeDeployDefault.LambdaAllAtOnce"]


def test_pre_traffic_hook_targets_the_new_version_only(synth: Synth) -> None:
    version = _service_version(synth, PROD)
    _, pre = _function(synth, PROD, "handlers.pre_traffic_hook.handler")
    env = pre["Properties"]["Environment"]["Variables"]
    assert env["TARGET_VERSION"] == {"Fn::GetAtt": [version, "Version"]}
    role = pre["Properties"]["Role"]["Fn::GetAtt"][0]
    invoke = [st for st in _policies_of(synth, PROD, role) if "lambda:InvokeFunction" in as_list(st["Action"])]
    scored = [st for st in invoke if st["Sid"] == "InvokeNewVersionOnly"]
    assert scored and all(st["Resource"] == {"Ref": version} for st in scored)
    # the smoke prompts are also timed on the previous version, through the alias that still serves it
    (timed,) = [st for st in invoke if st["Sid"] == "TimePreviousVersion"]
    function = next(
        k
        for k, v in synth.resources(PROD, "AWS::Lambda::Function").items()
        if v["Properties"]["Handler"] == "store_assistant.handler.handler"
    )
    assert timed["Resource"] == {"Fn::Join": ["", [{"Fn::GetAtt": [function, "Arn"]}, ":live"]]}
    assert env["BASELINE_QUALIFIER"] == "live"


def test_hooks_carry_the_latency_budget_from_the_settings(synth: Synth) -> None:
    s = synth.built.settings
    _, pre = _function(synth, PROD, "handlers.pre_traffic_hook.handler")
    _, post = _function(synth, PROD, "handlers.canary_analysis.handler")
    assert pre["Properties"]["Environment"]["Variables"]["TTFT_SLO_MS"] == str(s.ttft_slo_ms)
    pre_env = pre["Properties"]["Environment"]["Variables"]
    assert (pre_env["TOTAL_REGRESSION_MS"], pre_env["TOTAL_REGRESSION_PCT"]) == (
        str(s.total_regression_ms),
        f"{s.total_regression_pct:g}",
    )
    env = post["Properties"]["Environment"]["Variables"]
    assert (env["TOTAL_REGRESSION_MS"], env["TOTAL_REGRESSION_PCT"]) == (
        str(s.total_regression_ms),
        f"{s.total_regression_pct:g}",
    )


def _policies_of(synth: Synth, stack: str, role: str) -> list[dict[str, Any]]:
    out = []
    for res in synth.resources(stack, "AWS::IAM::Policy").values():
        if {"Ref": role} in res["Properties"].get("Roles", []):
            out += res["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_prod_uses_the_custom_canary_and_staging_all_at_once(synth: Synth) -> None:
    s = synth.built.settings
    assert synth.built.prod_mode == "canary"  # cdk.json: deploymentMode auto, no diff -> fail safe
    synth.template(PROD).has_resource_properties(
        "AWS::CodeDeploy::DeploymentConfig",
        {
            "ComputePlatform": "Lambda",
            "TrafficRoutingConfig": {
                "Type": "TimeBasedCanary",
                "TimeBasedCanary": {"CanaryPercentage": s.canary_percent, "CanaryInterval": s.canary_interval_minutes},
            },
        },
    )
    synth.template(STAGING).resource_count_is("AWS::CodeDeploy::DeploymentConfig", 0)
    _, group = _one(synth, STAGING, "AWS::CodeDeploy::DeploymentGroup")
    assert group["Properties"]["DeploymentConfigName"] == "CodeDeployDefault.LambdaAllAtOnce"


def test_topic_is_encrypted_ssl_only_with_the_email_subscription(synth: Synth) -> None:
    t = synth.template(PROD)
    topic, _ = _one(synth, PROD, "AWS::SNS::Topic")
    t.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    t.has_resource_properties(
        "AWS::SNS::Subscription",
        {
            "Protocol": "email",
            "Endpoint": synth.built.settings.notification_email,
            "TopicArn": {"Ref": topic},
        },
    )
    t.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_appconfig_environment_monitors_are_the_quality_alarms(synth: Synth) -> None:
    _, env = _one(synth, PROD, "AWS::AppConfig::Environment")
    monitored = {m["AlarmArn"]["Fn::GetAtt"][0] for m in env["Properties"]["Monitors"]}
    rollback = {k for k, a in _alarms(synth, PROD).items() if a["MetricName"] in ROLLBACK_METRICS}
    assert monitored == rollback
    assert all("AlarmRoleArn" in m for m in env["Properties"]["Monitors"])
    t = synth.template(PROD)
    t.has_resource_properties(
        "AWS::AppConfig::DeploymentStrategy",
        {
            "GrowthType": "LINEAR",
            "FinalBakeTimeInMinutes": Match.any_value(),
        },
    )
    t.has_resource_properties(
        "AWS::AppConfig::ConfigurationProfile",
        {
            "Name": "flags",
            "Type": "AWS.Freeform",
            "Validators": [Match.object_like({"Type": "JSON_SCHEMA"})],
        },
    )
    t.resource_count_is("AWS::AppConfig::Deployment", 1)


def test_flag_document_is_the_validated_one(synth: Synth) -> None:
    import json

    _, version = _one(synth, PROD, "AWS::AppConfig::HostedConfigurationVersion")
    doc = json.loads(version["Properties"]["Content"])
    assert doc == synth.built.settings.flags.to_document()
    assert doc["variants"]["boolean_type"] is False
    assert doc["variant"]["default"] in doc["variants"]["default"]


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_appconfig_sends_its_rollback_events_to_eventbridge(synth: Synth, stack: str) -> None:
    """Without the AWS-authored EventBridge extension AppConfig emits no deployment events: the FlagsRolledBack
    rule could never fire (and no custom extension mails raw JSON to the topic instead of the notifier)."""
    app, _ = _one(synth, stack, "AWS::AppConfig::Application")
    _, assoc = _one(synth, stack, "AWS::AppConfig::ExtensionAssociation")
    arn, ref = assoc["Properties"]["ResourceIdentifier"]["Fn::Join"][1]
    assert arn.endswith(":application/") and ref == {"Ref": app}
    assert assoc["Properties"]["ExtensionIdentifier"] == (
        f"arn:aws:appconfig:{REGION}::extension/AWS.AppConfig.DeploymentNotificationsToEventBridge/1"
    )
    synth.template(stack).resource_count_is("AWS::AppConfig::Extension", 0)


def test_event_rules_route_rollbacks_to_the_notifier(synth: Synth) -> None:
    notifier, _ = _function(synth, PROD, "handlers.notifier.handler")
    app, _ = _one(synth, PROD, "AWS::CodeDeploy::Application")
    group, _ = _one(synth, PROD, "AWS::CodeDeploy::DeploymentGroup")
    rules = [r["Properties"] for r in synth.resources(PROD, "AWS::Events::Rule").values()]
    codedeploy = next(r for r in rules if r["EventPattern"]["source"] == ["aws.codedeploy"])
    assert codedeploy["EventPattern"]["detail"] == {
        "state": ["FAILURE", "STOP"],
        "application": [{"Ref": app}],
        "deploymentGroup": [{"Ref": group}],
    }
    appconfig = next(r for r in rules if r["EventPattern"]["source"] == ["aws.appconfig"])
    assert appconfig["EventPattern"]["detail-type"] == ["On Deployment Rollback"]
    for rule in (codedeploy, appconfig):
        target = rule["Targets"][0]
        assert target["Arn"] == {"Fn::GetAtt": [notifier, "Arn"]}
        assert "DeadLetterConfig" in target and target["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_service_function_runtime_layers_alias_and_api(synth: Synth) -> None:
    _, fn = _function(synth, PROD, "store_assistant.handler.handler")
    props = fn["Properties"]
    assert props["Runtime"] == "python3.13" and props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    powertools, deps = props["Layers"]  # Powertools first, the deps layer last (tests/infra/test_powertools_pin.py)
    assert synth.templates[PROD]["Parameters"][powertools["Ref"]]["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert synth.resources(PROD, "AWS::Lambda::LayerVersion")[deps["Ref"]]
    alias = next(k for k, v in synth.resources(PROD, "AWS::Lambda::Alias").items() if v["Properties"]["Name"] == "live")
    synth.template(PROD).has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {"Ref": alias},
        },
    )
    synth.template(PROD).has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AccessLogSettings": Match.object_like({"DestinationArn": Match.any_value()}),
            "DefaultRouteSettings": Match.object_like({"ThrottlingRateLimit": Match.any_value()}),
        },
    )
    outputs = synth.templates[PROD]["Outputs"]
    assert any(k.startswith("ServiceEndpoint") for k in outputs)


CONTRACT_ENV = {
    "store_assistant.handler.handler": {
        "PROMPT_ID",
        "MODEL_ID",
        "GUARDRAIL_ID",
        "GUARDRAIL_VERSION",
        "CAPTURE_QUEUE_URL",
        "SHADOW_QUEUE_URL",
        "APPCONFIG_APPLICATION",
        "APPCONFIG_ENVIRONMENT",
        "APPCONFIG_PROFILE",
        "CANARY_TOKEN",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "EVALGATE_PROMPTS_DIR",
        "EVALGATE_KNOWLEDGE_DIR",
        "POWERTOOLS_TRACE_DISABLED",  # the X-Ray SDK would double the service's cold import (bench/README.md)
    },
    "handlers.online_judge.handler": {
        "JUDGE_MODEL_ID",
        "POWERTOOLS_METRICS_NAMESPACE",
        "EVALGATE_KNOWLEDGE_DIR",
        "CANARY_TOKEN",
        "IDEMPOTENCY_TABLE",
    },
    "handlers.pre_traffic_hook.handler": {
        "TARGET_FUNCTION_NAME",
        "TARGET_VERSION",
        "SMOKE_CASES",
        "JUDGE_MODEL_ID",
        "EMBEDDINGS_MODEL_ID",
        "TTFT_SLO_MS",
        "BASELINE_QUALIFIER",
        "TOTAL_REGRESSION_MS",
        "TOTAL_REGRESSION_PCT",
        "IDEMPOTENCY_TABLE",
    },
    "handlers.canary_analysis.handler": {
        "TARGET_FUNCTION_NAME",
        "TARGET_VERSION",
        "POWERTOOLS_METRICS_NAMESPACE",
        "BAKE_MINUTES",
        "MIN_SAMPLES",
        "TOTAL_REGRESSION_MS",
        "TOTAL_REGRESSION_PCT",
        "IDEMPOTENCY_TABLE",
    },
    "handlers.canary_verdict.handler": {
        "CODEDEPLOY_APPLICATION",
        "CANARY_INTERVAL_MINUTES",
        "MIN_SAMPLES",
    },
    "handlers.notifier.handler": {"TOPIC_ARN", "IDEMPOTENCY_TABLE", "POWERTOOLS_METRICS_NAMESPACE"},
    "handlers.shadow_worker.handler": {
        "SHADOW_FUNCTION_NAME",
        "SHADOW_QUALIFIER",
        "SHADOW_BUCKET",
        "SHADOW_PREFIX",
        "IDEMPOTENCY_TABLE",
    },
}


@pytest.mark.parametrize("handler", sorted(CONTRACT_ENV))
def test_handlers_get_the_contract_environment(synth: Synth, handler: str) -> None:
    _, fn = _function(synth, PROD, handler)
    env = fn["Properties"]["Environment"]["Variables"]
    assert CONTRACT_ENV[handler] <= set(env), CONTRACT_ENV[handler] - set(env)
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "EvalGate/Service"


def test_queues_are_encrypted_with_dlqs_and_batch_failures_reported(synth: Synth) -> None:
    queues = synth.resources(PROD, "AWS::SQS::Queue")
    assert all("KmsMasterKeyId" in q["Properties"] for q in queues.values())
    with_dlq = [q for q in queues.values() if "RedrivePolicy" in q["Properties"]]
    assert len(with_dlq) == 2  # capture and shadow
    mappings = list(synth.resources(PROD, "AWS::Lambda::EventSourceMapping").values())
    assert len(mappings) == 2
    assert all(m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
    policies = synth.resources(PROD, "AWS::SQS::QueuePolicy").values()
    assert all(
        any(
            st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for st in p["Properties"]["PolicyDocument"]["Statement"]
        )
        for p in policies
    )


def test_shadow_alias_and_worker(synth: Synth) -> None:
    aliases = {v["Properties"]["Name"]: k for k, v in synth.resources(PROD, "AWS::Lambda::Alias").items()}
    assert set(aliases) == {"live", "shadow"}
    _, worker = _function(synth, PROD, "handlers.shadow_worker.handler")
    assert worker["Properties"]["Environment"]["Variables"]["SHADOW_QUALIFIER"] == "shadow"
    role = worker["Properties"]["Role"]["Fn::GetAtt"][0]
    invoke = [st for st in _policies_of(synth, PROD, role) if st["Action"] == "lambda:InvokeFunction"]
    assert invoke[0]["Resource"] == {"Ref": aliases["shadow"]}
    # the worker reads where the alias points, to skip requests the candidate answered itself
    read = [st for st in _policies_of(synth, PROD, role) if st["Action"] == "lambda:GetAlias"]
    assert read and read[0]["Resource"] == {"Ref": aliases["shadow"]}
    # shadow = the candidate (the version this deployment publishes); live moves only through CodeDeploy
    resources = synth.templates[PROD]["Resources"]
    version = _service_version(synth, PROD)
    assert resources[aliases["shadow"]]["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version, "Version"]}
    assert "UpdatePolicy" not in resources[aliases["shadow"]]
    assert "CodeDeployLambdaAliasUpdate" in resources[aliases["live"]]["UpdatePolicy"]


def test_data_bucket_is_private_encrypted_ssl_only_with_lifecycle(synth: Synth) -> None:
    buckets = synth.resources(PROD, "AWS::S3::Bucket")
    data = [b["Properties"] for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(data) == 1
    bucket = data[0]
    sse = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert sse["SSEAlgorithm"] == "aws:kms"
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert any("ExpirationInDays" in r for r in bucket["LifecycleConfiguration"]["Rules"])
    for policy in synth.resources(PROD, "AWS::S3::BucketPolicy").values():
        assert any(
            st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for st in policy["Properties"]["PolicyDocument"]["Statement"]
        )


def test_dashboard_graphs_quality_per_version(synth: Synth) -> None:
    _, dash = _one(synth, PROD, "AWS::CloudWatch::Dashboard")
    body = str(dash["Properties"]["DashboardBody"])
    for metric in ("QualityScore", "Hallucination", "Latency", "JudgedCount", "FeedbackScore"):
        assert f'MetricName=\\\\"{metric}\\\\"' in body or f'MetricName=\\"{metric}\\"' in body, metric
    assert "{EvalGate/Service,FunctionVersion}" in body


IDEMPOTENT_HANDLERS = [
    "handlers.online_judge.handler",
    "handlers.shadow_worker.handler",
    "handlers.pre_traffic_hook.handler",
    "handlers.canary_analysis.handler",
    "handlers.notifier.handler",
]


@pytest.mark.parametrize("handler", IDEMPOTENT_HANDLERS)
def test_retried_handlers_get_an_idempotency_table_with_ttl_and_item_access_only(synth: Synth, handler: str) -> None:
    from stacks.constructs.idempotency import ITEM_ACTIONS

    from .conftest import statements

    template = synth.templates[PROD]
    _, fn = _function(synth, PROD, handler)
    ref = fn["Properties"]["Environment"]["Variables"]["IDEMPOTENCY_TABLE"]
    table_id = ref["Ref"]
    table = template["Resources"][table_id]
    assert table["Type"] == "AWS::DynamoDB::GlobalTable"
    assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert table["Properties"]["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    replica = table["Properties"]["Replicas"][0]
    assert replica["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    grants = [
        st
        for policy_id, st in statements(template)
        if st.get("Sid") == "IdempotencyRecords"
        and role_id in [r["Ref"] for r in template["Resources"][policy_id]["Properties"].get("Roles", [])]
    ]
    assert len(grants) == 1
    assert sorted(as_list(grants[0]["Action"])) == sorted(ITEM_ACTIONS)
    assert grants[0]["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}  # this table only, no index, no wildcard


def test_notifier_dead_letters_what_it_failed_to_send(synth: Synth) -> None:
    notifier_id, _ = _function(synth, PROD, "handlers.notifier.handler")
    configs = [
        c["Properties"]
        for c in synth.resources(PROD, "AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": notifier_id}
    ]
    assert len(configs) == 1 and configs[0]["MaximumRetryAttempts"] == 2
    target = configs[0]["DestinationConfig"]["OnFailure"]["Destination"]
    queue_id = target["Fn::GetAtt"][0]
    assert synth.templates[PROD]["Resources"][queue_id]["Type"] == "AWS::SQS::Queue"


def test_live_canary_verdict_can_stop_the_canary_before_promotion(synth: Synth) -> None:
    s = synth.built.settings
    judge, fn = _function(synth, PROD, "handlers.canary_verdict.handler")
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["CANARY_INTERVAL_MINUTES"] == str(s.canary_interval_minutes)
    assert env["MIN_SAMPLES"] == str(s.min_judged_samples)
    assert fn["Properties"]["Timeout"] < 60  # shorter than its schedule
    rules = [
        r["Properties"]
        for r in synth.resources(PROD, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression")
    ]
    assert any(
        r["ScheduleExpression"] == "rate(1 minute)" and r["Targets"][0]["Arn"] == {"Fn::GetAtt": [judge, "Arn"]}
        for r in rules
    )
    alarms = _alarms(synth, PROD)
    verdict = next(k for k, a in alarms.items() if a["MetricName"] == "CanaryVerdict")
    assert alarms[verdict]["Statistic"] == "Maximum" and alarms[verdict]["Threshold"] == 1
    assert alarms[verdict]["Period"] == 60 and alarms[verdict]["TreatMissingData"] == "notBreaching"
    own = _alarms(synth, PROD, "AWS/Lambda")
    assert all(a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": judge}}] for a in own.values())
    silent = next(a for a in own.values() if a["MetricName"] == "Invocations")
    assert silent["TreatMissingData"] == "breaching" and silent["ComparisonOperator"] == "LessThanThreshold"
    _, group = _one(synth, PROD, "AWS::CodeDeploy::DeploymentGroup")
    listed = {a["Name"]["Ref"] for a in group["Properties"]["AlarmConfiguration"]["Alarms"]}
    assert {verdict, *own} <= listed
    # staging deploys all at once: there is no canary step to judge
    assert not [
        r
        for r in synth.resources(STAGING, "AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == "handlers.canary_verdict.handler"
    ]
