"""Shared fixtures: isolation from real AWS (autouse) and the loopback fakes.

No test can reach AWS: every ``AWS_*`` variable from the developer's or CI's environment is removed, the
shared config/credentials files point nowhere, instance metadata is disabled, dummy credentials and
``us-east-1`` are set, and sockets may only connect to loopback addresses.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.bedrock_fake import DUMMY_CREDENTIALS, BedrockFake
from tests.fakes.http_service_fake import HttpServiceFake


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_") or name in {"BOTO_CONFIG"}:
            monkeypatch.delenv(name, raising=False)
    nowhere = tmp_path_factory.getbasetemp() / "no-aws-config"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(nowhere / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost,::1")


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback_host(host: Any) -> bool:
    if host in (None, "", b""):
        return True  # passive (bind) lookups
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]")
    if host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse name lookups and connections to anything but loopback (a mis-wired client fails fast)."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback_host(host):
            raise socket.gaierror(
                socket.EAI_NONAME, f"tests may not resolve {host!r}: loopback only (tests/conftest.py)"
            )
        return real_getaddrinfo(host, *args, **kwargs)

    def _check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback_host(address[0]):
            raise ConnectionRefusedError(f"tests may not connect to {address!r}: loopback only (tests/conftest.py)")

    def guarded_connect(self: socket.socket, address: Any) -> None:
        _check(self, address)
        real_connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        _check(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


@pytest.fixture
def bedrock_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockFake]:
    """A running bedrock-runtime fake; ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` points boto3 at it."""
    with BedrockFake() as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        yield fake


@pytest.fixture
def http_service() -> Iterator[HttpServiceFake]:
    """A running fake of the staging HTTP endpoint (``http_service.url + "/ask"``)."""
    with HttpServiceFake() as fake:
        yield fake


@pytest.fixture(scope="session")
def judge_records_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Calibration records for the judge models golden/gate.toml names, measured by `evalgate calibrate` against
    the loopback Bedrock fake answering as a judge that agrees with the human labels (tests/fakes/stand_in_judges)."""
    from evalgate.core.config import load_config
    from tests.fakes.stand_in_judges import ROOT, agreeing, calibrate_through_cli, truth_table

    folder = tmp_path_factory.mktemp("judge-records")
    models = load_config(ROOT / "golden" / "gate.toml").models
    assert calibrate_through_cli(folder, [models.judge, models.heavy_judge], agreeing(truth_table(100))) == 0
    return folder


@pytest.fixture
def calibrated_judges(judge_records_dir: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Judged tiers in this test find calibration records for the configured judges."""
    monkeypatch.setenv("EVALGATE_CALIBRATION_DIR", str(judge_records_dir))
    return judge_records_dir
