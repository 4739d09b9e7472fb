"""README "Gate your own service", step by step, in a copy of the repository.

The commands and snippets are read from the README section itself (its bash, python and json blocks), so the
section and this test cannot drift apart: init -> validate -> offline run -> (init again refuses) -> a handler
written against the contract (the example FAQ desk, renamed) -> the contract suite on it -> cdk.json names it ->
synth builds the stacks around it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = (
    "app.py",
    "cdk.json",
    "pyproject.toml",
    "requirements.txt",
    "requirements-lambda.txt",
    "stacks",
    "lambdas",
    "golden",
    "prompts",
    "guardrails",
    "tests",
)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache", "*.egg-info", "cdk.out")


def readme_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Gate your own service\n")
    return text[start : text.index("\n## ", start + 1)]


def blocks(section: str, language: str) -> list[str]:
    return [re.sub(r"^   ", "", b, flags=re.MULTILINE) for b in re.findall(rf"```{language}\n(.*?)```", section, re.S)]


def run(repo: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> Any:
    base = {**os.environ, "PYTHONPATH": f"{repo / 'lambdas'}{os.pathsep}{repo}", "EVALGATE_DEBUG": ""}
    return subprocess.run(
        list(args), cwd=repo, env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def evalgate(repo: Path, line: str) -> subprocess.CompletedProcess[str]:
    words = shlex.split(line)
    assert words[0] == "evalgate", line
    return run(repo, sys.executable, "-m", "evalgate", *words[1:])


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own-service") / "repo"
    root.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=IGNORE)
        else:
            shutil.copy2(src, root / name)
    return root


def test_gate_your_own_service_step_by_step(repo: Path) -> None:
    section = readme_section()
    [scaffold_steps, suite_command] = blocks(section, "bash")
    [suite_module] = blocks(section, "python")
    [settings_block] = blocks(section, "json")

    # 1. init, validate, an offline run
    init, validate, offline = [line for line in scaffold_steps.splitlines() if line.strip()]
    done = evalgate(repo, init)
    assert done.returncode == 0, done.stderr
    assert (repo / "services/acme/prompts/acme/v1/system.md").is_file()
    assert "the help desk of Acme Bikes" in (repo / "services/acme/prompts/acme/v1/system.md").read_text()
    checked = evalgate(repo, validate)
    assert checked.returncode == 0 and checked.stdout.startswith("ok:"), checked.stdout + checked.stderr
    gated = evalgate(repo, offline)
    assert gated.returncode == 0 and gated.stdout.startswith("PASS"), gated.stdout + gated.stderr
    assert json.loads((repo / "out/acme/results.json").read_text())["verdict"]["verdict"] == "PASS"
    again = evalgate(repo, init)  # never overwrites: names what exists, exit 2
    assert again.returncode == 2 and "services/acme/golden/cases.jsonl: exists" in again.stderr, again.stderr

    # 2. a handler written against the contract: the example FAQ desk, as the team's own package
    target = repo / "services/acme/src/acme_desk"
    shutil.copytree(repo / "tests/example_service/src/faq_desk", target, ignore=IGNORE)
    for path in target.glob("*.py"):
        path.write_text(path.read_text().replace("faq_desk", "acme_desk"))

    # 3. the contract suite on it
    (repo / "tests/contract/test_acme.py").write_text(suite_module)
    [command] = [line for line in suite_command.splitlines() if line.strip()]
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "pytest"], command
    suite = run(repo, sys.executable, *words[1:], "-q", "-p", "no:cacheprovider", "-n", "0")
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-2000:]
    assert re.search(r"\b(1[5-9]|[2-9]\d) passed", suite.stdout), suite.stdout[-500:]

    # 4. name it in cdk.json (the README's keys) and synthesize
    cdk = json.loads((repo / "cdk.json").read_text())
    named: dict[str, Any] = json.loads("{" + settings_block.strip().rstrip(",") + "}")
    cdk["context"].update(named)
    for variant in cdk["context"]["featureFlags"]["variants"].values():
        variant["prompt_version"] = named["promptVersion"]
    (repo / "cdk.json").write_text(json.dumps(cdk, indent=2))
    context = {**cdk["context"], "aws:cdk:bundling-stacks": [], "account": "111111111111", "region": "us-east-1"}
    out = repo / "cdk.out"
    synth = run(repo, sys.executable, "app.py", env={"CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(out)})
    assert synth.returncode == 0, synth.stderr[-3000:]
    handlers = {
        res["Properties"]["Handler"]: res["Properties"]
        for path in out.rglob("*.template.json")
        for res in json.loads(path.read_text())["Resources"].values()
        if res["Type"] == "AWS::Lambda::Function"
    }
    service = handlers["acme_desk.handler.handler"]
    assert service["Environment"]["Variables"]["PROMPT_ID"] == "acme/v1"
    assert "store_assistant.handler.handler" not in handlers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "Acme"], "--prompt: 'Acme' is not a prompt id like assistant/v1"),
        (["--prompt", "acme/../v1"], "--prompt: 'acme/../v1' is not a prompt id"),
        (["--domain", "   "], "--domain: must be 1-200 characters of plain text"),
        (["--domain", "the {desk}"], "--domain: must be 1-200 characters of plain text"),
    ],
)
def test_init_refuses_bad_flags_writing_nothing(tmp_path: Path, capsys: Any, args: list[str], message: str) -> None:
    from evalgate.cli import main

    assert main(["init", str(tmp_path / "svc"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "svc").exists()


def test_init_into_a_file_or_over_one_existing_file_writes_nothing(tmp_path: Path, capsys: Any) -> None:
    from evalgate.cli import main

    (tmp_path / "file").write_text("x")
    assert main(["init", str(tmp_path / "file")]) == 2
    assert "exists and is a file; expected a folder" in capsys.readouterr().err
    (tmp_path / "svc/golden").mkdir(parents=True)
    (tmp_path / "svc/golden/gate.toml").write_text("# mine\n")
    assert main(["init", str(tmp_path / "svc")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'svc/golden/gate.toml'}: exists; evalgate init never overwrites" in err
    assert "1 input problem(s)" in err
    assert (tmp_path / "svc/golden/gate.toml").read_text() == "# mine\n"
    assert sorted(p.name for p in (tmp_path / "svc").rglob("*") if p.is_file()) == ["gate.toml"]
