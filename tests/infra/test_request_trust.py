"""What protects the release inputs in the synthesized templates: authorizers by `apiAuth`, the signing secret,
the vote ledger, the grants, and KMS-encrypted log groups with retention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import PIPELINE, PROD, STAGING, Synth, as_list, cdk_context, statements

JWT = {
    "apiAuth": "jwt",
    "apiJwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_AbCdEfGhI",
    "apiJwtAudience": "client-a,client-b",
    "apiJwtClientSecret": "evalgate/pipeline-oauth-client",
}


def _synth_variant(tmp: Path, **context: Any) -> tuple[Any, dict[str, dict[str, Any]], dict[str, Path]]:
    from aws_cdk import App

    from stacks.application import build

    app = App(context=cdk_context(**context), outdir=str(tmp))
    build(app, nag=False)
    assembly = app.synth()
    templates, files = {}, {}
    for stage in assembly.nested_assemblies:
        for stack in stage.nested_assembly.stacks:
            files[stack.stack_name] = Path(stack.template_full_path)
            templates[stack.stack_name] = json.loads(files[stack.stack_name].read_text())
    for stack in assembly.stacks:
        files[stack.stack_name] = Path(stack.template_full_path)
        templates[stack.stack_name] = json.loads(files[stack.stack_name].read_text())
    return app, templates, files


@pytest.fixture(scope="module")
def iam_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, dict[str, Any]], dict[str, Path]]:
    return _synth_variant(tmp_path_factory.mktemp("iam"), apiAuth="iam")


@pytest.fixture(scope="module")
def jwt_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, dict[str, Any]], dict[str, Path]]:
    return _synth_variant(tmp_path_factory.mktemp("jwt"), **JWT)


def _of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == type_}


def _function(template: dict[str, Any], handler: str) -> tuple[str, dict[str, Any]]:
    return next((k, p) for k, p in _of_type(template, "AWS::Lambda::Function").items() if p["Handler"] == handler)


def _role_statements(template: dict[str, Any], role_ref: str) -> list[dict[str, Any]]:
    out = []
    for _, policy in _of_type(template, "AWS::IAM::Policy").items():
        if {"Ref": role_ref} in policy.get("Roles", []):
            out += policy["PolicyDocument"]["Statement"]
    return out


def _step_env(templates: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """Environment variables of the pipeline's CodeBuild project whose buildspec runs ``name``."""
    for props in _of_type(templates[PIPELINE], "AWS::CodeBuild::Project").values():
        spec = props["Source"].get("BuildSpec", "")
        text = spec if isinstance(spec, str) else json.dumps(spec)
        if name in text:
            return {e["Name"]: e for e in props["Environment"].get("EnvironmentVariables", [])}
    raise AssertionError(f"no CodeBuild project runs {name}")


def _step_statements(templates: dict[str, dict[str, Any]], sid: str) -> list[dict[str, Any]]:
    return [st for _, st in statements(templates[PIPELINE]) if st.get("Sid") == sid]


# ------------------------------------------------------------------------------------------------ authorizers


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_api_auth_none_leaves_routes_anonymous_and_warns_for_prod_only(synth: Synth, stack: str) -> None:
    from aws_cdk.assertions import Annotations, Match

    routes = _of_type(synth.templates[stack], "AWS::ApiGatewayV2::Route")
    assert routes and all(r.get("AuthorizationType", "NONE") == "NONE" for r in routes.values())
    stage_stack = (synth.built.pipeline.prod if stack == PROD else synth.built.pipeline.staging).stack
    warnings = Annotations.from_stack(stage_stack).find_warning("*", Match.string_like_regexp("apiAuth: 'none'"))
    if stack == PROD:
        [warning] = warnings
        text = warning.entry.data
        assert "POST /ask" in text and "POST /feedback" in text and "FeedbackScore" in text
    else:
        assert warnings == []


def test_api_auth_iam_puts_the_iam_authorizer_on_every_route(iam_app: Any) -> None:
    _, templates, _ = iam_app
    for stack in (STAGING, PROD):
        routes = _of_type(templates[stack], "AWS::ApiGatewayV2::Route")
        assert {r["RouteKey"] for r in routes.values()} == {"POST /ask", "POST /feedback", "$default"}
        assert {r["AuthorizationType"] for r in routes.values()} == {"AWS_IAM"}, stack


def test_api_auth_jwt_puts_a_jwt_authorizer_with_issuer_and_audience_on_every_route(jwt_app: Any) -> None:
    _, templates, _ = jwt_app
    for stack in (STAGING, PROD):
        [(auth_id, auth)] = _of_type(templates[stack], "AWS::ApiGatewayV2::Authorizer").items()
        assert auth["AuthorizerType"] == "JWT"
        assert auth["JwtConfiguration"] == {"Issuer": JWT["apiJwtIssuer"], "Audience": ["client-a", "client-b"]}
        assert auth["IdentitySource"] == ["$request.header.Authorization"]
        routes = _of_type(templates[stack], "AWS::ApiGatewayV2::Route")
        assert routes and all(
            r["AuthorizationType"] == "JWT" and r["AuthorizerId"] == {"Ref": auth_id} for r in routes.values()
        ), stack


def test_the_authorized_api_is_the_only_way_in_from_outside(iam_app: Any) -> None:
    """No function URL, and API Gateway may invoke the service only through this stage's HTTP API."""
    _, templates, _ = iam_app
    for stack in (STAGING, PROD):
        template = templates[stack]
        assert _of_type(template, "AWS::Lambda::Url") == {}
        [api_id] = _of_type(template, "AWS::ApiGatewayV2::Api")
        service_id, _ = _function(template, "store_assistant.handler.handler")
        targets = {service_id} | {
            k
            for k, a in _of_type(template, "AWS::Lambda::Alias").items()
            if service_id in json.dumps(a["FunctionName"])
        }
        permissions = [
            p
            for p in _of_type(template, "AWS::Lambda::Permission").values()
            if any(t in json.dumps(p["FunctionName"]) for t in targets)
        ]
        assert permissions
        for p in permissions:
            assert p["Principal"] == "apigateway.amazonaws.com"
            assert api_id in json.dumps(p["SourceArn"])


def test_strict_setting_refuses_an_anonymous_prod_api() -> None:
    from stacks.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as info:
        load_settings(cdk_context(apiAuthStrict=True))
    assert "- apiAuth: 'none' leaves the Prod API anonymous" in str(info.value)
    assert load_settings(cdk_context(apiAuthStrict=True, apiAuth="iam")).api_auth == "iam"
    with pytest.raises(SettingsError, match="apiJwtIssuer"):
        load_settings(cdk_context(apiAuth="jwt"))


def test_pipeline_checks_authenticate_and_sign_as_the_settings_say(synth: Synth, iam_app: Any, jwt_app: Any) -> None:
    for templates, mode in ((synth.templates, "none"), (iam_app[1], "iam"), (jwt_app[1], "jwt")):
        for command in ("evalgate load", "evalgate run --tier smoke"):
            env = _step_env(templates, command)
            assert env["EVALGATE_API_AUTH"]["Value"] == mode
            assert env["EVALGATE_SIGNING_SECRET"]["Value"] == "evalgate-staging/request-signing"
            if mode == "jwt":
                assert env["EVALGATE_API_CLIENT"] == {
                    "Name": "EVALGATE_API_CLIENT",
                    "Type": "SECRETS_MANAGER",
                    "Value": JWT["apiJwtClientSecret"],
                }
            else:
                assert "EVALGATE_API_CLIENT" not in env
        [sign_load, sign_smoke] = _step_statements(templates, "SignSyntheticTraffic")
        for st in (sign_load, sign_smoke):
            assert st["Action"] == "secretsmanager:GetSecretValue"
            assert st["Resource"] == (
                "arn:aws:secretsmanager:us-east-1:111111111111:secret:evalgate-staging/request-signing-??????"
            )
        client_reads = [
            st
            for _, st in statements(templates[PIPELINE])
            if st.get("Resource") == f"arn:aws:secretsmanager:us-east-1:111111111111:secret:"
            f"{JWT['apiJwtClientSecret']}-??????"
        ]
        assert len(client_reads) == (2 if mode == "jwt" else 0)  # the load test's and the smoke eval's roles
        invoke = _step_statements(templates, "CallStageApi")
        assert (len(invoke) == 2) == (mode == "iam")
        for st in invoke:
            assert st["Action"] == "execute-api:Invoke"
            assert st["Resource"] == "arn:aws:execute-api:us-east-1:111111111111:*/$default/POST/*"


def test_variants_are_cdk_nag_and_cfn_lint_clean(iam_app: Any, jwt_app: Any) -> None:
    from cdk_nag import AwsSolutionsChecks
    from cfnlint.api import ManualArgs, lint_file

    for app, _, files in (iam_app, jwt_app):
        report = AwsSolutionsChecks().validate_scope(app)
        found = [f"{v.rule_name} at {c.construct_path}" for v in report.violations for c in v.violating_constructs]
        assert report.success and found == []
        for stack in (PIPELINE, PROD):
            matches = lint_file(files[stack], config=ManualArgs(regions=["us-east-1"]))
            assert [m.rule.id for m in matches if m.rule.id.startswith("E")] == []


# ------------------------------------------------------------------------------------------------ secret, ledger


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_the_signing_secret_and_the_vote_ledger_are_wired_with_least_privilege(synth: Synth, stack: str) -> None:
    template = synth.templates[stack]
    stage = "staging" if stack == STAGING else "prod"
    [(secret_id, secret)] = _of_type(template, "AWS::SecretsManager::Secret").items()
    assert secret["Name"] == f"evalgate-{stage}/request-signing"
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    [(table_id, table)] = [
        (k, p)
        for k, p in _of_type(template, "AWS::DynamoDB::Table").items()
        if p["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    key_id = next(k for k in _of_type(template, "AWS::KMS::Key") if k.startswith("Storage"))
    assert table["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }

    _, service = _function(template, "store_assistant.handler.handler")
    env = service["Environment"]["Variables"]
    assert env["EVALGATE_SIGNING_SECRET"] == {"Ref": secret_id}
    assert env["FEEDBACK_TABLE"] == {"Ref": table_id}
    s = synth.built.settings
    assert env["FEEDBACK_WINDOW_SECONDS"] == str(s.feedback_window_minutes * 60)
    assert env["EVALGATE_SIGNING_GRACE_SECONDS"] == str(s.signing_grace_minutes * 60)
    service_stmts = _role_statements(template, service["Role"]["Fn::GetAtt"][0])
    reads = [st for st in service_stmts if "secretsmanager:GetSecretValue" in as_list(st["Action"])]
    assert reads == [
        {
            "Sid": "ReadSigningKey",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": {"Ref": secret_id},
        }
    ]
    votes = [st for st in service_stmts if any(str(a).startswith("dynamodb:") for a in as_list(st["Action"]))]
    assert votes == [
        {
            "Sid": "RecordVotesOnce",
            "Effect": "Allow",
            "Action": "dynamodb:PutItem",
            "Resource": {"Fn::GetAtt": [table_id, "Arn"]},
        }
    ]

    _, hook = _function(template, "handlers.pre_traffic_hook.handler")
    assert hook["Environment"]["Variables"]["EVALGATE_SIGNING_SECRET"] == {"Ref": secret_id}
    hook_reads = [
        st
        for st in _role_statements(template, hook["Role"]["Fn::GetAtt"][0])
        if "secretsmanager:GetSecretValue" in as_list(st["Action"])
    ]
    assert [st["Resource"] for st in hook_reads] == [{"Ref": secret_id}]
    # the key is rotated on a schedule by its own function; nobody else reads it
    [schedule] = _of_type(template, "AWS::SecretsManager::RotationSchedule").values()
    rotation_id, rotation = _function(template, "handlers.key_rotation.handler")
    assert schedule["SecretId"] == {"Ref": secret_id}
    assert schedule["RotationLambdaARN"] == {"Fn::GetAtt": [rotation_id, "Arn"]}
    assert schedule["RotationRules"]["ScheduleExpression"] == f"rate({s.signing_rotation_days} days)"
    rotation_role = rotation["Role"]["Fn::GetAtt"][0]
    readers = {lid for lid, st in statements(template) if "secretsmanager:GetSecretValue" in as_list(st["Action"])}
    roles = {ref["Ref"] for lid in readers for ref in _of_type(template, "AWS::IAM::Policy")[lid]["Roles"]}
    assert roles == {service["Role"]["Fn::GetAtt"][0], hook["Role"]["Fn::GetAtt"][0], rotation_role}
    writes = [
        st
        for st in _role_statements(template, rotation_role)
        if "secretsmanager:PutSecretValue" in as_list(st["Action"])
    ]
    assert [st["Resource"] for st in writes] == [{"Ref": secret_id}]


# ------------------------------------------------------------------------------------------------ logs


@pytest.mark.parametrize("stack", [STAGING, PROD])
def test_every_log_group_is_encrypted_with_the_stage_key_and_has_a_retention(synth: Synth, stack: str) -> None:
    template = synth.templates[stack]
    keys = _of_type(template, "AWS::KMS::Key")
    data_key = next(k for k in keys if k.startswith("Storage"))
    groups = _of_type(template, "AWS::Logs::LogGroup")
    assert len(groups) >= 7  # service, judge, shadow worker, notifier, both hooks, key rotation, API access logs
    for name, group in groups.items():
        assert group["KmsKeyId"] == {"Fn::GetAtt": [data_key, "Arn"]}, name
        assert group["RetentionInDays"] == synth.built.settings.log_retention_days, name
    policy = keys[data_key]["KeyPolicy"]["Statement"]
    [logs] = [st for st in policy if st.get("Sid") == "AllowCloudWatchLogsToEncryptLogGroups"]
    assert logs["Principal"] == {"Service": "logs.us-east-1.amazonaws.com"}
    assert logs["Condition"] == {
        "ArnLike": {"kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:111111111111:log-group:*"}
    }
    assert not any(a in ("kms:*", "*") for a in as_list(logs["Action"]))
