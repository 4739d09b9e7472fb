"""The project's own callers (load test, smoke runs) authenticate as `apiAuth` says and sign their traffic.

Against the loopback staging-endpoint fake: the SigV4 signature is re-derived from what the endpoint received
(the check API Gateway's IAM authorizer makes), the JWT comes from a client-credentials grant served by the same
fake, and the synthetic header is verified with the service's own check and key (moto Secrets Manager).
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from evalgate.adapters.http_endpoint import HttpCandidate, execute_api_region, http_candidate_from_env
from evalgate.adapters.signing import SYNTHETIC_HEADER, SecretKeySource, is_synthetic
from evalgate.core.errors import InputError, ProviderError
from evalgate.core.models import Case
from tests.fakes.http_service_fake import HttpServiceFake, Reply

CASE = Case(id="refund-window", category="refunds", prompt="How many days do I have to get a refund?", reference="x")
ANSWER = Reply(200, {"answer": "14 days.", "request_id": "r"})


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "EVALGATE_API_TOKEN", "EVALGATE_API_CLIENT"):
        monkeypatch.delenv(name, raising=False)
    yield


def test_iam_requests_carry_a_sigv4_signature_api_gateway_would_accept(
    http_service: HttpServiceFake, aws_env: None
) -> None:
    http_service.script(ANSWER)
    url = http_service.url + "/ask"
    HttpCandidate(url, auth="iam").generate(CASE, [], 0)
    [got] = http_service.requests
    auth = got.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "x-amz-date"} <= set(signed)

    # re-derive the signature from the request as received, with the caller's secret: it must match
    request = AWSRequest(method="POST", url=url, data=got.raw, headers={h: got.headers[h] for h in signed})
    request.context["timestamp"] = got.headers["x-amz-date"]

    def signature(secret: str) -> str:
        signer = SigV4Auth(Credentials("AKIDEXAMPLE", secret), "execute-api", "eu-west-1")
        return str(signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request))

    assert auth.endswith(f"Signature={signature('wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY')}")
    assert not auth.endswith(f"Signature={signature('another-secret')}")


def test_iam_without_credentials_is_a_clear_error(
    http_service: HttpServiceFake, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(ProviderError, match="no AWS credentials"):
        HttpCandidate(http_service.url + "/ask", auth="iam").generate(CASE, [], 0)
    assert http_service.requests == []  # nothing unauthenticated was sent


def test_execute_api_region_comes_from_the_url() -> None:
    assert execute_api_region("https://a1b2c3d4e5.execute-api.ap-southeast-2.amazonaws.com/ask") == "ap-southeast-2"
    assert execute_api_region("http://127.0.0.1:8080/ask") is None


def test_jwt_bearer_comes_from_a_client_credentials_grant_reused_until_it_expires(
    http_service: HttpServiceFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_service.script(
        Reply(200, {"access_token": "tok-1", "expires_in": 3600, "token_type": "Bearer"}), ANSWER, ANSWER
    )
    monkeypatch.setenv("EVALGATE_API_AUTH", "jwt")
    monkeypatch.delenv("EVALGATE_API_TOKEN", raising=False)
    monkeypatch.setenv(
        "EVALGATE_API_CLIENT",
        (
            f'{{"token_url": "{http_service.url}/oauth2/token", "client_id": "pipeline", '
            '"client_secret": "s3cret", "scope": "evalgate/ask"}'
        ),
    )
    monkeypatch.delenv("EVALGATE_SIGNING_SECRET", raising=False)
    cand = http_candidate_from_env(http_service.url + "/ask")
    cand.generate(CASE, [], 0)
    cand.generate(CASE, [], 1)
    token_req, first, second = http_service.requests
    assert token_req.path == "/oauth2/token"
    assert token_req.headers["authorization"] == "Basic " + base64.b64encode(b"pipeline:s3cret").decode()
    form = urllib.parse.parse_qs(token_req.raw.decode())
    assert form == {"grant_type": ["client_credentials"], "client_id": ["pipeline"], "scope": ["evalgate/ask"]}
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer tok-1"


def test_jwt_token_endpoint_refusal_is_a_provider_error(
    http_service: HttpServiceFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_service.script(Reply(400, {"error": "invalid_client"}))
    monkeypatch.setenv("EVALGATE_API_AUTH", "jwt")
    monkeypatch.setenv(
        "EVALGATE_API_CLIENT",
        (f'{{"token_url": "{http_service.url}/oauth2/token", "client_id": "p", "client_secret": "wrong"}}'),
    )
    with pytest.raises(ProviderError, match="token request refused: HTTP 400"):
        http_candidate_from_env(http_service.url + "/ask").generate(CASE, [], 0)
    assert [r.path for r in http_service.requests] == ["/oauth2/token"]  # no call without a token


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"EVALGATE_API_AUTH": "basic"}, "EVALGATE_API_AUTH"),
        ({"EVALGATE_API_AUTH": "jwt"}, "EVALGATE_API_AUTH"),
        ({"EVALGATE_API_AUTH": "jwt", "EVALGATE_API_CLIENT": "{not json"}, "EVALGATE_API_CLIENT"),
        ({"EVALGATE_API_AUTH": "jwt", "EVALGATE_API_CLIENT": '{"client_id": "x"}'}, "EVALGATE_API_CLIENT"),
        ({"EVALGATE_SIGNING_CACHE_SECONDS": "soon", "EVALGATE_SIGNING_SECRET": "x"}, "EVALGATE_SIGNING_SECRET"),
    ],
)
def test_caller_settings_errors_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(InputError) as info:
        http_candidate_from_env("https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/ask", env=env)
    assert str(info.value).startswith(named)


def test_the_synthetic_header_of_the_project_s_runs_verifies_for_the_body_sent(
    http_service: HttpServiceFake, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mock_aws():
        boto3.client("secretsmanager").create_secret(Name="evalgate-staging/request-signing", SecretString="q" * 64)
        monkeypatch.setenv("EVALGATE_SIGNING_SECRET", "evalgate-staging/request-signing")
        monkeypatch.setenv("EVALGATE_API_AUTH", "none")
        http_service.script(ANSWER)
        http_candidate_from_env(http_service.url + "/ask").generate(CASE, [], 0)
        keys = SecretKeySource.from_env()
        assert keys is not None
        [got] = http_service.requests
        assert SYNTHETIC_HEADER in got.headers
        assert is_synthetic(keys(), got.headers, got.raw)  # what the service checks
        assert not is_synthetic(keys(), got.headers, got.raw.replace(b"refund", b"rebate"))
        monkeypatch.delenv("EVALGATE_SIGNING_SECRET")
        http_service.script(ANSWER)
        http_candidate_from_env(http_service.url + "/ask").generate(CASE, [], 0)
        assert SYNTHETIC_HEADER not in http_service.requests[-1].headers
