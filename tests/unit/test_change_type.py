"""What each function ships (its import closure) and the deployment mode of a change: one rule for both."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from evalgate.core.errors import InputError
from evalgate.engine.change_type import (
    SERVICE_HANDLER,
    FunctionAsset,
    change_types,
    changed_functions,
    changed_settings,
    classify_change,
    deployed_functions,
    diff_since,
    function_asset,
    import_closure,
    judge_changed,
    main,
    resolve_mode,
    scan,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def functions() -> dict[str, FunctionAsset]:
    return deployed_functions(REPO)


@pytest.fixture(scope="module")
def service(functions: dict[str, FunctionAsset]) -> FunctionAsset:
    return functions[SERVICE_HANDLER]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FAKE = {
    "lambdas/evalgate/__init__.py": "",
    "lambdas/evalgate/core/__init__.py": "",
    "lambdas/evalgate/core/models.py": "import json\nfrom pydantic import BaseModel\n",
    "lambdas/evalgate/core/unused.py": "",
    "lambdas/evalgate/adapters/__init__.py": "",
    "lambdas/evalgate/adapters/graph.py": 'PACKAGE_DATA = ("graph.onnx",)\n',
    "lambdas/evalgate/adapters/graph.onnx": "weights",
    "lambdas/evalgate/reports/__init__.py": "",
    "lambdas/evalgate/reports/html.py": "",
    "lambdas/evalgate/release/__init__.py": "",
    "lambdas/evalgate/release/notify.py": (
        "from typing import TYPE_CHECKING\n"
        "from evalgate.core import models\n"
        "from . import tickets\n"
        "if TYPE_CHECKING:\n    from evalgate.reports import html\n"
        "def embed():\n    import onnxruntime\n    from evalgate.adapters.graph import PACKAGE_DATA\n"
    ),
    "lambdas/evalgate/release/tickets.py": "from ..core.models import BaseModel\n",
    "lambdas/handlers/__init__.py": "",
    "lambdas/handlers/notifier.py": "from evalgate.release import notify\n",
    "lambdas/handlers/pre_traffic_hook.py": 'import evalgate.core.models\nREPOSITORY_DATA = ("prompts", "golden")\n',
    "lambdas/store_assistant/__init__.py": "",
    "lambdas/store_assistant/handler.py": "from evalgate.core.models import BaseModel\n",
    "prompts/support/v1/system.md": "You are helpful.\n",
    "golden/knowledge/returns.md": "30 days\n",
    "golden/knowledge/.DS_Store": "junk",
    "golden/cases.jsonl": '{"id": "a"}\n',
    "requirements.txt": "pydantic>=2\n",
    "requirements-local.txt": "onnxruntime>=1.21  # not installed here\n",
    "stacks/app.py": "",
    "cdk.json": json.dumps({"context": {"generatorModelId": "a", "peakRps": 2}}),
}


def test_the_closure_follows_every_import_that_can_run(tmp_path: Path) -> None:
    repo = _write(tmp_path, FAKE)
    closure = import_closure("handlers.notifier", repo=repo)
    assert list(closure) == sorted(closure)  # deterministic order
    assert set(closure) == {
        "evalgate",
        "evalgate.core",
        "evalgate.core.models",  # package __init__ files on the way
        "evalgate.release",
        "evalgate.release.notify",
        "evalgate.release.tickets",  # relative import
        "evalgate.adapters",
        "evalgate.adapters.graph",  # lazy import inside a function
        "handlers",
        "handlers.notifier",
    }  # not evalgate.reports (only under TYPE_CHECKING), not core.unused; pydantic, json, onnxruntime: outside
    assert closure["evalgate.core"] == repo / "lambdas/evalgate/core/__init__.py"
    assert import_closure("handlers.notifier", repo=repo) == closure


def test_an_asset_is_its_closure_its_package_data_and_its_folders(tmp_path: Path) -> None:
    repo = _write(tmp_path, FAKE)
    notifier = function_asset("handlers.notifier.handler", repo=repo)
    dests = [dest for _, dest in notifier.files]
    assert dests == sorted(dests)
    assert "evalgate/adapters/graph.onnx" in dests  # declared beside the module that reads it
    assert {"prompts/support/v1/system.md", "golden/knowledge/returns.md"} <= set(dests)
    assert "golden/cases.jsonl" not in dests and "golden/knowledge/.DS_Store" not in dests
    assert "evalgate/reports/html.py" not in dests and "store_assistant/handler.py" not in dests
    hook = function_asset("handlers.pre_traffic_hook.handler", repo=repo)
    assert "golden/cases.jsonl" in {d for _, d in hook.files}  # it declares the golden set
    assert "evalgate/adapters/graph.onnx" not in {d for _, d in hook.files}

    before = notifier.digest(repo)
    (repo / "lambdas/evalgate/reports/html.py").write_text("x = 1\n")
    (repo / "golden/cases.jsonl").write_text('{"id": "b"}\n')
    assert function_asset("handlers.notifier.handler", repo=repo).digest(repo) == before
    (repo / "lambdas/evalgate/adapters/graph.onnx").write_text("new weights")
    assert function_asset("handlers.notifier.handler", repo=repo).digest(repo) != before


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "from evalgate.core import modles\nimport evalgate.core.modles\n",
            "lambdas/handlers/notifier.py:2: import evalgate.core.modles: no module evalgate.core.modles under lambdas",
        ),
        (
            "import evalgatex\n",
            "lambdas/handlers/notifier.py:1: import evalgatex: not under lambdas, the standard "
            "library or a third-party package",
        ),
        ("def f():\n    from stacks import app\n", "lambdas/handlers/notifier.py:2: import stacks: not under lambdas"),
    ],
)
def test_an_import_it_cannot_resolve_fails_loudly(tmp_path: Path, source: str, message: str) -> None:
    repo = _write(tmp_path, {**FAKE, "lambdas/handlers/notifier.py": source})
    with pytest.raises(InputError) as err:
        import_closure("handlers.notifier", repo=repo)
    assert message in str(err.value)


def test_a_code_root_is_searched_before_the_next(tmp_path: Path) -> None:
    repo = _write(
        tmp_path,
        {
            **FAKE,
            "services/mine/my_service/__init__.py": "",
            "services/mine/my_service/app.py": "from evalgate.core import models\n",
        },
    )
    asset = function_asset("my_service.app.handler", repo=repo, code_roots=("services/mine", "lambdas"))
    assert ("services/mine/my_service/app.py", "my_service/app.py") in asset.files
    assert ("lambdas/evalgate/core/models.py", "evalgate/core/models.py") in asset.files


def test_package_data_is_declared_beside_its_module_and_in_the_wheel_alike() -> None:
    """What a Lambda ships beside a module (PACKAGE_DATA) is what pip installs with it (pyproject package-data)."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    in_wheel = {
        p.relative_to(REPO).as_posix()
        for package, patterns in globs.items()
        for pattern in patterns
        for p in (REPO / "lambdas" / package.replace(".", "/")).glob(pattern)
    }
    declared = {
        (path.parent / name).relative_to(REPO).as_posix()
        for path in sorted((REPO / "lambdas").rglob("*.py"))
        for name in scan(path, path.relative_to(REPO).as_posix()).package_data
    }
    assert declared == in_wheel == {"lambdas/evalgate/adapters/minilm_l6_v2.onnx"}
    assert all(fnmatch.fnmatch(Path(f).name, "*.onnx") for f in declared)


# ----------------------------------------------------------------------------------- the repository's functions


def test_the_service_ships_neither_reports_nor_cli_nor_the_release_code(service: FunctionAsset) -> None:
    shipped = {dest for _, dest in service.files}
    assert "store_assistant/handler.py" in shipped and "evalgate/contracts/records.py" in shipped
    for folder in ("evalgate/reports/", "evalgate/cli/", "evalgate/release/", "evalgate/engine/", "handlers/"):
        assert not any(d.startswith(folder) for d in shipped), folder


def test_no_function_ships_reports_cli_or_the_embedder(functions: dict[str, FunctionAsset]) -> None:
    for handler, asset in functions.items():
        shipped = {dest for _, dest in asset.files}
        for unwanted in ("evalgate/reports/", "evalgate/cli/", "evalgate/adapters/local.py", "evalgate/__main__.py"):
            assert not any(d.startswith(unwanted) for d in shipped), (handler, unwanted)
        assert not any(d.endswith(".onnx") for d in shipped), handler


def test_only_the_hooks_ship_the_golden_set(functions: dict[str, FunctionAsset]) -> None:
    with_cases = sorted(h for h, a in functions.items() if a.ships("golden/cases.jsonl"))
    assert with_cases == [
        "handlers.canary_analysis.handler",
        "handlers.canary_verdict.handler",
        "handlers.pre_traffic_hook.handler",
    ]
    assert all(
        a.ships("golden/knowledge/returns.md") and a.ships("prompts/support/v1/system.md") for a in functions.values()
    )


@pytest.mark.parametrize(
    "paths",
    [
        ["lambdas/evalgate/reports/html.py"],
        ["lambdas/evalgate/reports/markdown.py", "lambdas/evalgate/reports/explorer.py", "README.md"],
        ["lambdas/evalgate/cli/__init__.py"],
        ["lambdas/evalgate/cli/curate.py", "lambdas/evalgate/__main__.py", "tests/unit/test_cli.py"],
        ["lambdas/evalgate/engine/history.py"],
    ],
)
def test_a_report_or_cli_change_deploys_nothing(
    paths: list[str], functions: dict[str, FunctionAsset], service: FunctionAsset
) -> None:
    assert classify_change(paths, service=service) == "all-at-once"
    assert changed_functions(paths, functions) == []  # every function keeps its published version
    assert change_types(paths, functions=functions) == ["infrastructure"]


def test_a_module_only_the_notifier_runs_gives_it_new_code_without_a_canary(
    functions: dict[str, FunctionAsset], service: FunctionAsset
) -> None:
    notifier = functions["handlers.notifier.handler"]
    others = set().union(*(a.sources for h, a in functions.items() if h != "handlers.notifier.handler"))
    only = sorted(s for s in notifier.sources - others if s.startswith("lambdas/evalgate/"))
    assert only  # e.g. the notifier's composition and its event schema
    # the canary shifts traffic between the SERVICE's versions; the notifier is replaced in place whatever the mode
    assert classify_change(only[:1], service=service) == "all-at-once"
    assert changed_functions(only[:1], functions) == ["handlers.notifier.handler"]
    assert change_types(only[:1], functions=functions) == ["function-code"]


@pytest.mark.parametrize(
    "paths",
    [
        ["lambdas/store_assistant/handler.py"],
        ["lambdas/evalgate/core/models.py", "README.md"],
        ["lambdas/evalgate/contracts/records.py"],
        ["prompts/support/v1/system.md"],
        ["golden/knowledge/returns.md"],
        ["requirements-lambda.txt"],
        ["requirements.txt"],  # its Powertools pin selects every function's layer
        ["guardrails/store-assistant.toml"],  # a guardrail change changes what users see: canary, never all at once
    ],
)
def test_what_the_service_runs_goes_through_the_canary(paths: list[str], service: FunctionAsset) -> None:
    assert classify_change(paths, service=service) == "canary"


def test_a_core_change_gives_every_function_new_code(
    functions: dict[str, FunctionAsset], service: FunctionAsset
) -> None:
    assert changed_functions(["lambdas/evalgate/core/errors.py"], functions) == list(functions)
    assert changed_functions(["requirements-lambda.txt"], functions) == list(functions)  # every function's layer
    assert classify_change(["lambdas/evalgate/core/errors.py"], service=service) == "canary"


@pytest.mark.parametrize(
    "paths",
    [
        ["stacks/service_stack.py"],
        ["app.py", "tests/infra/test_x.py", "README.md"],
        ["golden/cases.jsonl", "golden/gate.toml"],  # evaluation data: gated by the eval step; only the hooks ship it
        ["lambdas/evalgate/engine/change_type.py"],  # CI's own decision code ships in no function
        ["cdk.json"],
        [],
    ],
)
def test_changes_outside_the_service_shift_all_at_once(paths: list[str], service: FunctionAsset) -> None:
    assert classify_change(paths, service=service) == "all-at-once"


def test_golden_cases_give_the_hooks_new_code(functions: dict[str, FunctionAsset]) -> None:
    changed = changed_functions(["golden/suites/guardrail.jsonl"], functions)
    assert changed == [
        "handlers.canary_analysis.handler",
        "handlers.canary_verdict.handler",
        "handlers.pre_traffic_hook.handler",
    ]


def test_model_or_prompt_settings_in_cdk_json_are_runtime_changes(service: FunctionAsset) -> None:
    before = {"context": {"generatorModelId": "a", "peakRps": 2}}
    after = {"context": {"generatorModelId": "b", "peakRps": 3}}
    keys = changed_settings(before, after)
    assert keys == {"generatorModelId", "peakRps"}
    assert classify_change(["cdk.json"], keys, service=service) == "canary"
    assert classify_change(["cdk.json"], {"peakRps"}, service=service) == "all-at-once"
    keys = changed_settings(
        {"context": {"guardrailConfig": "guardrails/a.toml"}}, {"context": {"guardrailConfig": "guardrails/b.toml"}}
    )
    assert classify_change(["cdk.json"], keys, service=service) == "canary"


def test_unknown_diff_fails_safe_to_canary(functions: dict[str, FunctionAsset], service: FunctionAsset) -> None:
    assert classify_change(None, service=service) == "canary"
    assert changed_functions(None, functions) is None
    assert diff_since("") == (None, set())


def test_explicit_mode_wins_over_auto(service: FunctionAsset) -> None:
    assert resolve_mode("all-at-once", ["lambdas/store_assistant/service.py"], service=service) == "all-at-once"
    assert resolve_mode("canary", [], service=service) == "canary"
    assert resolve_mode("auto", ["stacks/x.py"], service=service) == "all-at-once"
    assert resolve_mode("auto", None, service=service) == "canary"


def test_a_judge_change_is_its_own_change_type(functions: dict[str, FunctionAsset]) -> None:
    judge = "lambdas/evalgate/engine/judge.py"
    assert change_types([judge], functions=functions) == ["function-code", "judge"]  # the hooks and online judge
    assert change_types(["cdk.json"], {"judgeModelId"}, functions=functions) == ["infrastructure", "judge"]
    assert change_types(["cdk.json"], {"heavyJudgeModelId", "branch"}, functions=functions) == [
        "infrastructure",
        "judge",
    ]
    assert change_types(["lambdas/store_assistant/handler.py"], {"generatorModelId"}, functions=functions) == [
        "runtime"
    ]
    assert not judge_changed(["stacks/service_stack.py"], {"branch"})
    assert judge_changed(None)  # unknown diff: recalibration is checked (fail safe)


# ----------------------------------------------------------------------------------- the command on a git diff


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def test_the_command_classifies_a_real_git_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _write(tmp_path, FAKE)
    _git(repo, "init", "-q")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "ci")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()

    def run(*extra: str) -> tuple[str, str]:
        assert main(["--repo", str(repo), "--base", base, *extra]) == 0
        captured = capsys.readouterr()
        return captured.out.strip(), captured.err

    (repo / "lambdas/evalgate/reports/html.py").write_text("x = 2\n")
    (repo / "cdk.json").write_text(json.dumps({"context": {"generatorModelId": "a", "peakRps": 3}}))
    _git(repo, "commit", "-qam", "a report and an infrastructure setting")
    out, err = run("--explain")
    assert out == "all-at-once"
    assert "no function's code changes: all 3 functions keep their published versions" in err

    (repo / "lambdas/evalgate/release/tickets.py").write_text("from ..core.models import BaseModel  # x\n")
    _git(repo, "commit", "-qam", "notifier only")
    out, err = run("--explain")
    assert out == "all-at-once" and "new function code for: handlers.notifier" in err

    (repo / "cdk.json").write_text(json.dumps({"context": {"generatorModelId": "b", "peakRps": 3}}))
    _git(repo, "commit", "-qam", "new model")
    out, err = run("--explain")
    assert out == "canary" and "generatorModelId" in err

    assert main(["--repo", str(repo), "--base", "0" * 40]) == 0  # a base git does not know -> fail safe
    assert capsys.readouterr().out.strip() == "canary"

    (repo / "lambdas/handlers/notifier.py").write_text("import evalgate.release.notifyy\n")
    assert main(["--repo", str(repo), "--base", base]) == 2  # an import that resolves nowhere stops the deploy
    assert "lambdas/handlers/notifier.py:1: import evalgate.release.notifyy" in capsys.readouterr().err


def test_the_folders_cdk_json_names_for_the_service_are_what_it_ships() -> None:
    own = {
        "serviceCodeRoot": "tests/example_service/src",
        "serviceHandler": "faq_desk.handler.handler",
        "promptsDir": "tests/example_service/prompts",
        "goldenDir": "tests/example_service/golden",
    }
    functions = deployed_functions(REPO, own)
    service = functions["faq_desk.handler.handler"]
    for path in (
        "tests/example_service/src/faq_desk/handler.py",
        "tests/example_service/prompts/faq/v1/system.md",
        "tests/example_service/golden/knowledge/help.md",
    ):
        assert classify_change([path], service=service) == "canary", path
    assert classify_change(["lambdas/store_assistant/service.py"], service=service) == "all-at-once"
    cases = ["tests/example_service/golden/cases.jsonl"]  # evaluation data: only the hooks ship it
    assert classify_change(cases, service=service) == "all-at-once"
    assert changed_functions(cases, functions) == [
        "handlers.canary_analysis.handler",
        "handlers.canary_verdict.handler",
        "handlers.pre_traffic_hook.handler",
    ]
    for key in own:  # pointing the stacks at other code, prompts or knowledge changes what users get
        assert classify_change(["cdk.json"], {key}, service=service) == "canary", key


def test_the_command_reads_the_service_settings_from_cdk_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {k.replace("lambdas/store_assistant/", "services/acme/acme_desk/"): v for k, v in FAKE.items()}
    files["cdk.json"] = json.dumps(
        {"context": {"serviceCodeRoot": "services/acme", "serviceHandler": "acme_desk.handler.handler"}}
    )
    repo = _write(tmp_path, files)
    for args in (
        ["init", "-q"],
        ["config", "user.email", "ci@example.com"],
        ["config", "user.name", "ci"],
        ["add", "."],
        ["commit", "-qm", "base"],
    ):
        _git(repo, *args)
    base = _git(repo, "rev-parse", "HEAD").strip()
    (repo / "services/acme/acme_desk/handler.py").write_text("from evalgate.core.models import BaseModel  # x\n")
    _git(repo, "commit", "-qam", "the service's code")
    assert main(["--repo", str(repo), "--base", base, "--explain"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "canary" and "new function code for: acme_desk.handler" in captured.err
