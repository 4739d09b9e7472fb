"""The house rules: each package imports only the floors below it, so the folders show the architecture.

Floors, ground first (README "Layout"): ``core`` < ``contracts`` < ``adapters`` / ``reports`` < ``engine`` /
the demo service < ``release`` / ``stacks`` < ``ci`` / ``handlers`` < ``cli``. Every import counts, including the lazy
ones inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAMBDAS = ROOT / "lambdas"

FLOOR: dict[str, int] = {
    "evalgate.core": 0,
    "evalgate.contracts": 1,
    "evalgate.adapters": 2,
    "evalgate.reports": 2,
    "evalgate.engine": 3,
    "store_assistant": 3,
    "evalgate.release": 4,
    "stacks": 4,
    "evalgate.cli": 6,
    "evalgate.ci": 5,
    "handlers": 5,
}
# What may not meet even though the floors would allow it: the product never reaches into the demo service.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "evalgate.release": ("store_assistant",),
    "evalgate.cli": ("store_assistant",),
    "stacks": ("store_assistant", "handlers"),
}


def package_of(module: str) -> str | None:
    best = None
    for pkg in FLOOR:
        if (module == pkg or module.startswith(pkg + ".")) and (best is None or len(pkg) > len(best)):
            best = pkg
    return best


def module_name(path: Path) -> str:
    rel = path.relative_to(LAMBDAS if path.is_relative_to(LAMBDAS) else ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sources() -> list[Path]:
    files = [p for p in LAMBDAS.rglob("*.py") if "__pycache__" not in p.parts]
    return files + [p for p in (ROOT / "stacks").rglob("*.py") if "__pycache__" not in p.parts]


def test_every_module_lives_in_a_package_with_a_floor() -> None:
    homeless = [module_name(p) for p in sources() if package_of(module_name(p)) is None]
    assert homeless == ["evalgate", "evalgate.__main__"] or sorted(homeless) == ["evalgate", "evalgate.__main__"]


def test_no_package_imports_one_above_it_or_a_neighbour() -> None:
    wrong: list[str] = []
    for path in sources():
        me = module_name(path)
        mine = package_of(me)
        if mine is None:
            continue
        for target in imports_of(path):
            theirs = package_of(target)
            if theirs is None or theirs == mine:
                continue
            if FLOOR[theirs] >= FLOOR[mine] or theirs in FORBIDDEN.get(mine, ()):
                wrong.append(f"{me} imports {target} ({theirs} is not below {mine})")
    assert sorted(set(wrong)) == []


@pytest.mark.parametrize("package", ["evalgate.contracts", "evalgate.core"])
def test_the_pure_floors_never_touch_aws(package: str) -> None:
    folder = LAMBDAS / package.replace(".", "/")
    direct = sorted(
        f"{module_name(p)} imports {t}"
        for p in folder.rglob("*.py")
        for t in imports_of(p)
        if t.split(".")[0] in {"boto3", "botocore", "aws_cdk"}
    )
    assert direct == []
    modules = [module_name(p) for p in folder.rglob("*.py") if p.name != "__init__.py"]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print(sorted(m for m in ('boto3', 'botocore', 'numpy', 'scipy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(LAMBDAS)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "boto3" not in out and "botocore" not in out, out


def test_the_ci_driver_imports_without_evalgates_dependencies() -> None:
    """The promote build installs only boto3 and this package without its dependencies: the gate step must import
    (and so promote a baseline) without pydantic, numpy or anything else requirements.txt brings."""
    code = "import sys, evalgate.ci.gate_step\nprint(sorted(m for m in ('pydantic', 'numpy') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PYTHONPATH": str(LAMBDAS)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "[]"
