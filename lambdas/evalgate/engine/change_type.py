"""What each Lambda function ships, and how production takes a change: one rule for both.

**A function's code asset** is the import closure of its entry module inside the repository's own code
(``import_closure``: every ``import``, lazy ones inside functions included, ``from pkg import module`` resolved
to the module, each package's ``__init__``; imports under ``if TYPE_CHECKING:`` never run and are left out),
plus the non-Python files those modules declare beside them (``PACKAGE_DATA = ("file", ...)``, e.g. the
MiniLM graph of ``evalgate.adapters.minilm_graph``), plus the repository folders the entry module declares it
reads (``REPOSITORY_DATA``; default ``prompts/`` and ``golden/knowledge/``, the deployment hooks also ship
``golden/`` for the smoke set). ``FunctionAsset.digest`` hashes exactly those files, so a function publishes a
new version only when something it runs changes. The stacks build every function's asset with
``function_asset`` (code roots and data folders from the settings serviceCodeRoot, promptsDir and goldenDir,
``layout``; the command reads them and serviceHandler from cdk.json); an import that resolves neither inside
the code roots nor to the standard library or a third-party package fails loudly (``InputError`` naming the file
and line).

**The deployment mode** of a change (``classify_change``), in order:

1. no usable diff (first run, unknown base commit, git error) -> ``canary`` (fail safe);
2. a changed file the service function ships (its closure, its data folders), ``guardrails/``,
   ``requirements-lambda.txt`` or ``requirements.txt`` (its Powertools pin selects every function's layer) ->
   ``canary``: the CodeDeploy canary shifts traffic to the service's new version, watched by per-version alarms;
3. a changed ``cdk.json`` model, prompt, guardrail or flag setting (``RUNTIME_SETTINGS``) -> ``canary``;
4. anything else -> ``all-at-once``, still behind the pre-traffic hook.

The canary covers the service function's versions only: the other functions (hooks, online judge, notifier,
shadow worker, key rotation, canary verdict) are replaced in place by CloudFormation whatever the mode, so a
change that gives only them new code (``changed_functions``) shifts all at once. A change that touches no
function's asset (a report, the CLI, tests, docs) deploys no new function code: every function keeps its
published version, and ``--explain`` says so.

A change of the judge (``[tiers] judge`` globs and ``judge_keys`` of the gate config, the one home of that rule,
shared with ``evalgate tier``) is its own change type, ``judge``: the mode follows the rules above, and the
quality gate recalibrates the judge before the eval uses it.

The pipeline's Synth step runs ``PYTHONPATH=lambdas python3 -m evalgate.engine.change_type --base <last approved
commit> --explain`` and passes the printed mode to ``cdk synth -c deploymentMode=<mode>``.
"""

from __future__ import annotations

import argparse
import ast
import functools
import hashlib
import importlib.util
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from evalgate.core.config import TiersConfig, load_config
from evalgate.core.errors import InputError
from evalgate.engine.tiers import GitError, changed_files, git, matches_any

Mode = Literal["canary", "all-at-once"]

CODE_ROOT = "lambdas"  # the product's code root: evalgate, its handlers and the demo service
PRODUCT_HANDLERS = "handlers"  # every module of this package under CODE_ROOT is a deployed function's entry
SERVICE_HANDLER = "store_assistant.handler.handler"  # the demo service; settings may name a team's own
DEFAULT_DATA: tuple[str, ...] = ("prompts", "golden/knowledge")  # what a function reads unless it declares more
# Module-level literal tuples, read without importing the module: file names beside a module, shipped with it;
# and, in an entry module, the repository folders its function reads at run time.
_PACKAGE_DATA, _REPOSITORY_DATA = "PACKAGE_DATA", "REPOSITORY_DATA"
# Every function's layers: the deps layer, and the Powertools layer that requirements.txt's pin selects.
LAYER_FILES: tuple[str, ...] = ("requirements-lambda.txt", "requirements.txt")
# Outside any asset but part of what the service answers with: its guardrail, and the layers.
RUNTIME_PATTERNS: tuple[str, ...] = ("guardrails/**", *LAYER_FILES)
# cdk.json context keys whose change alters what the service answers with.
RUNTIME_SETTINGS: frozenset[str] = frozenset(
    {"generatorModelId", "promptVersion", "guardrailId", "guardrailVersion", "guardrailConfig", "featureFlags"}
    | {"serviceCodeRoot", "serviceHandler", "promptsDir", "goldenDir"}  # point the stacks at other code or data
)
# cdk.json keys naming where the service's code, prompts and golden set live (defaults: the demo service's).
FOLDER_SETTINGS: dict[str, str] = {"serviceCodeRoot": CODE_ROOT, "promptsDir": "prompts", "goldenDir": "golden"}


# ------------------------------------------------------------------------------------------ import closure


def _repo_path(path: Path, repo: Path) -> str:
    return path.relative_to(repo).as_posix()


def _module_file(module: str, roots: Sequence[Path]) -> tuple[Path, Path] | None:
    """(root, file) of a module or package (its ``__init__.py``); a folder without one (a namespace package)
    gives (root, folder). The first code root that has the top-level name decides, like ``sys.path``."""
    parts = module.split(".")
    for root in roots:
        if not ((root / parts[0]).is_dir() or (root / f"{parts[0]}.py").is_file()):
            continue
        base = root.joinpath(*parts)
        if (base / "__init__.py").is_file():
            return root, base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return root, base.with_suffix(".py")
        if base.is_dir():
            return root, base
        return None
    return None


def _owns(top: str, roots: Sequence[Path]) -> bool:
    return any((root / top).is_dir() or (root / f"{top}.py").is_file() for root in roots)


@functools.lru_cache(maxsize=8)
def _declared_requirements(repo: Path) -> frozenset[str]:
    """Import names of the packages the repository's requirements files name (``aws-lambda-powertools`` ->
    ``aws_lambda_powertools``): third-party even where this machine has not installed them."""
    names: set[str] = set()
    for req in sorted(repo.glob("requirements*.txt")):
        for raw in req.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line)
            if m and not line.startswith("-"):
                names.add(m.group(0).lower().replace("-", "_").replace(".", "_"))
    return frozenset(names)


@functools.lru_cache(maxsize=1024)
def _third_party(top: str, repo: Path) -> bool:
    if (repo / top).is_dir() or (repo / f"{top}.py").is_file():
        return False  # the repository's own code outside the code roots (stacks, tests): never shipped
    if top in sys.stdlib_module_names or top.lower() in _declared_requirements(repo):
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: module level, in functions and classes, in ``try`` blocks; not the
    body of ``if TYPE_CHECKING:`` (only type checkers read it)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(reversed(node.orelse))
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _literal_names(tree: ast.Module, name: str, shown: str) -> tuple[str, ...]:
    """A module-level ``NAME = ("a", ...)`` (or annotated) read without importing the module."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, expr = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, expr = node.target, node.value
        else:
            continue
        if not (isinstance(target, ast.Name) and target.id == name):
            continue
        try:
            value = ast.literal_eval(expr)
        except ValueError:
            value = None
        if not isinstance(value, tuple | list) or not all(isinstance(v, str) and v for v in value):
            raise InputError.single(shown, node.lineno, f"{name} must be a literal tuple of non-empty strings")
        return tuple(value)
    return ()


def _parse(path: Path, shown: str) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=shown)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.single(shown, None, f"cannot read: {exc}") from None
    except SyntaxError as exc:
        raise InputError.single(shown, exc.lineno, f"not valid Python: {exc.msg}") from None


@dataclass(frozen=True)
class Scan:
    """What one source file says about shipping: its imports and its data declarations."""

    imports: tuple[ast.Import | ast.ImportFrom, ...]
    package_data: tuple[str, ...]
    repository_data: tuple[str, ...]


@functools.lru_cache(maxsize=4096)
def _scan_cached(path: Path, shown: str, stamp: tuple[int, int]) -> Scan:
    tree = _parse(path, shown)
    return Scan(
        tuple(_imports(tree)),
        _literal_names(tree, _PACKAGE_DATA, shown),
        _literal_names(tree, _REPOSITORY_DATA, shown),
    )


def scan(path: Path, shown: str) -> Scan:
    """Parsed once per file version (its modification time and size): every function's closure reuses it."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError.single(shown, None, f"cannot read: {exc}") from None
    return _scan_cached(path, shown, (st.st_mtime_ns, st.st_size))


@dataclass(frozen=True)
class _Module:
    name: str
    root: Path
    file: Path  # the .py file, or the folder of a namespace package

    @property
    def package(self) -> str:
        """The package a relative import starts from."""
        return self.name if self.file.name == "__init__.py" or self.file.is_dir() else self.name.rpartition(".")[0]


def import_closure(entry: str, *, repo: Path, code_roots: Sequence[str] = (CODE_ROOT,)) -> dict[str, Path]:
    """Module name -> file of every module inside ``code_roots`` (repository folders, searched in order like
    ``sys.path``) that importing ``entry`` can run, with the package ``__init__`` files on the way.

    Deterministic (sorted by module name). Raises ``InputError`` naming the file and line of an import it cannot
    resolve: a name under a code root that does not exist, or a top-level name that is neither under a code root
    nor the standard library nor a third-party package (installed or named by a requirements file).
    """
    roots = [repo / r for r in code_roots]
    found: dict[str, _Module] = {}
    unread: list[str] = []

    def add(module: str, shown: str, line: int | None, *, attribute_ok: bool = False) -> None:
        parts = module.split(".")
        if not _owns(parts[0], roots):
            if attribute_ok or _third_party(parts[0], repo):
                return
            raise InputError.single(
                shown,
                line,
                f"import {module}: not under {', '.join(code_roots)}, the standard library or a "
                "third-party package of the requirements files",
            )
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name in found:
                continue
            hit = _module_file(name, roots)
            if hit is None:
                if attribute_ok and i == len(parts):
                    return  # ``from pkg import name``: an attribute of pkg, not a module
                raise InputError.single(shown, line, f"import {module}: no module {name} under {', '.join(code_roots)}")
            found[name] = _Module(name, *hit)
            if hit[1].suffix == ".py":
                unread.append(name)

    if not _owns(entry.split(".")[0], roots):
        raise InputError.single("handler", None, f"{entry}: no such module under {', '.join(code_roots)}")
    add(entry, "handler", None)
    while unread:  # each module is queued once: when ``add`` first finds it
        mod = found[unread.pop()]
        shown = _repo_path(mod.file, repo)
        for node in scan(mod.file, shown).imports:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, shown, node.lineno)
                continue
            base = node.module or ""
            if node.level:
                anchor = mod.package.split(".") if mod.package else []
                if node.level - 1 > len(anchor):
                    raise InputError.single(shown, node.lineno, "relative import beyond the top-level package")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base:
                add(base, shown, node.lineno)
            for alias in node.names:
                if alias.name != "*" and base:
                    add(f"{base}.{alias.name}", shown, node.lineno, attribute_ok=True)
    return {n: m.file for n, m in sorted(found.items()) if m.file.suffix == ".py"}


# ------------------------------------------------------------------------------------------ function assets


def shipped(relative: Path) -> bool:
    """Whether a file of a data folder ships: no caches, hidden files or build metadata."""
    parts = relative.parts
    return relative.suffix != ".pyc" and not any(
        p == "__pycache__" or p.startswith(".") or p.endswith(".egg-info") for p in parts
    )


def _tree_files(repo: Path, folder: str, dest: str) -> list[tuple[str, str]]:
    base = repo / folder
    if not base.is_dir():
        raise InputError.single(folder, None, "a Lambda function reads this folder, but it does not exist")
    return [
        (_repo_path(p, repo), f"{dest}/{p.relative_to(base).as_posix()}")
        for p in sorted(base.rglob("*"))
        if p.is_file() and shipped(p.relative_to(base))
    ]


@dataclass(frozen=True)
class FunctionAsset:
    """One function's code asset: ``files`` are (repository path, path in the asset), sorted by the latter."""

    handler: str
    files: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]  # (repository folder, asset folder) shipped whole

    @property
    def name(self) -> str:
        """The entry module: ``handlers.notifier.handler`` -> ``handlers.notifier``."""
        return self.handler.rpartition(".")[0]

    @functools.cached_property
    def sources(self) -> frozenset[str]:
        return frozenset(src for src, _ in self.files)

    def ships(self, path: str) -> bool:
        """Whether a changed repository path is (or was, for a deleted data file) part of this asset."""
        if path in self.sources:
            return True
        return any(path.startswith(f"{d}/") and shipped(Path(path[len(d) + 1 :])) for d, _ in self.data)

    def digest(self, repo: Path) -> str:
        """SHA-256 over (path in the asset, content) of every file: the asset's custom hash."""
        h = hashlib.sha256()
        for src, dest in self.files:
            h.update(dest.encode())
            h.update(b"\0")
            h.update((repo / src).read_bytes())
            h.update(b"\0")
        return h.hexdigest()


def function_asset(
    handler: str,
    *,
    repo: Path,
    code_roots: Sequence[str] = (CODE_ROOT,),
    locations: Mapping[str, str] | None = None,
) -> FunctionAsset:
    """The code asset of the function whose handler is ``handler`` (``package.module.function``). ``locations``:
    where the repository keeps a data folder the functions read at a fixed place (``{"prompts": "...",
    "golden": "..."}``, the settings promptsDir / goldenDir); by default the same path."""
    entry = handler.rpartition(".")[0]
    if not entry:
        raise InputError.single("handler", None, f"{handler!r} is not module.function")
    modules = import_closure(entry, repo=repo, code_roots=code_roots)
    roots = [repo / r for r in code_roots]
    files: dict[str, str] = {}
    wanted: tuple[str, ...] = DEFAULT_DATA
    for name, path in modules.items():
        root = next(r for r in roots if path.is_relative_to(r))
        shown = _repo_path(path, repo)
        files[path.relative_to(root).as_posix()] = shown
        found = scan(path, shown)
        for extra in found.package_data:
            beside = path.parent / extra
            if not beside.is_file() or "/" in extra:
                raise InputError.single(shown, None, f"{_PACKAGE_DATA}: {extra!r} is not a file beside the module")
            files[beside.relative_to(root).as_posix()] = _repo_path(beside, repo)
        if name == entry:
            wanted = found.repository_data or DEFAULT_DATA
    data = tuple((_located(d, locations or {}), d) for d in wanted)
    for folder, dest in data:
        for src, to in _tree_files(repo, folder, dest):
            files.setdefault(to, src)
    return FunctionAsset(handler, tuple((src, dest) for dest, src in sorted(files.items())), data)


def _located(folder: str, locations: Mapping[str, str]) -> str:
    """The repository folder of an asset folder: ``golden/knowledge`` with ``{"golden": "x/golden"}`` ->
    ``x/golden/knowledge``."""
    top, _, rest = folder.partition("/")
    base = locations.get(top, top).strip("/")
    return f"{base}/{rest}" if rest else base


def product_handlers(repo: Path, code_root: str = CODE_ROOT) -> list[str]:
    """The product's functions: every module of ``handlers/`` is one (``handlers.<module>.handler``)."""
    folder = repo / code_root / PRODUCT_HANDLERS
    return [f"{PRODUCT_HANDLERS}.{p.stem}.handler" for p in sorted(folder.glob("*.py")) if p.name != "__init__.py"]


def service_settings(repo: Path) -> dict[str, str]:
    """``serviceHandler`` and the FOLDER_SETTINGS from the repository's cdk.json context (defaults where unset)."""
    try:
        context = json.loads((repo / "cdk.json").read_text(encoding="utf-8")).get("context", {})
    except (OSError, ValueError, AttributeError):
        context = {}
    context = context if isinstance(context, dict) else {}
    wanted = {"serviceHandler": SERVICE_HANDLER, **FOLDER_SETTINGS}
    return {k: v if isinstance(v := context.get(k), str) and v.strip("/") else d for k, d in wanted.items()}


def layout(
    service_code_root: str = CODE_ROOT, prompts_dir: str = "prompts", golden_dir: str = "golden"
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Code roots (the service's, then the product's) and data folder locations for ``function_asset``, from the
    settings serviceCodeRoot, promptsDir and goldenDir."""
    return tuple(dict.fromkeys((service_code_root, CODE_ROOT))), {"prompts": prompts_dir, "golden": golden_dir}


def deployed_functions(repo: Path, settings: Mapping[str, str] | None = None) -> dict[str, FunctionAsset]:
    """Handler -> asset of every function the stacks deploy: the service (``serviceHandler`` in its
    ``serviceCodeRoot``) first, then the product's; ``settings`` default to the repository's cdk.json."""
    s = dict(settings) if settings is not None else service_settings(repo)
    roots, locations = layout(
        s.get("serviceCodeRoot", CODE_ROOT), s.get("promptsDir", "prompts"), s.get("goldenDir", "golden")
    )
    service = s.get("serviceHandler", SERVICE_HANDLER)
    out = {service: function_asset(service, repo=repo, code_roots=roots, locations=locations)}
    for handler in product_handlers(repo):
        out[handler] = function_asset(handler, repo=repo, code_roots=roots, locations=locations)
    return out


# ------------------------------------------------------------------------------------------ change type


def _norm(paths: Iterable[str]) -> list[str]:
    return [p.strip().removeprefix("./") for p in paths if p.strip()]


def changed_functions(paths: Iterable[str] | None, functions: Mapping[str, FunctionAsset]) -> list[str] | None:
    """Handlers whose code or layers a change touches (each publishes a new version); None when the diff is
    unknown."""
    if paths is None:
        return None
    norm = _norm(paths)
    if any(p in LAYER_FILES for p in norm):
        return list(functions)
    return [h for h, asset in functions.items() if any(asset.ships(p) for p in norm)]


def classify_change(
    paths: Iterable[str] | None, settings_changed: Iterable[str] = (), *, service: FunctionAsset
) -> Mode:
    """The production deployment mode of a change (None = unknown diff -> canary); see the module doc."""
    if paths is None:
        return "canary"
    norm = _norm(paths)
    if any(service.ships(p) or matches_any(p, RUNTIME_PATTERNS) for p in norm):
        return "canary"
    if RUNTIME_SETTINGS.intersection(settings_changed):
        return "canary"
    return "all-at-once"


def judge_changed(
    paths: Iterable[str] | None, settings_changed: Iterable[str] = (), tiers: TiersConfig | None = None
) -> bool:
    """A change of judge rubric or model, by the gate config's ``[tiers] judge`` / ``judge_keys`` (unknown
    paths count as a change: fail safe)."""
    if paths is None:
        return True
    t = tiers or TiersConfig()
    keys = {k.removeprefix("context.") for k in t.judge_keys if k.startswith("context.")}
    return any(matches_any(p, t.judge) for p in _norm(paths)) or bool(keys.intersection(settings_changed))


def change_types(
    paths: Iterable[str] | None,
    settings_changed: Iterable[str] = (),
    *,
    functions: Mapping[str, FunctionAsset],
    service: str = SERVICE_HANDLER,
    tiers: TiersConfig | None = None,
) -> list[str]:
    """The kinds of change, for people and logs: ``runtime`` (the service's answers can change: canary),
    ``function-code`` (other functions get new code, replaced in place), ``infrastructure`` (no function's code
    changes: stacks, settings, reports, CLI, tests, docs), and ``judge``."""
    path_list = None if paths is None else list(paths)
    keys = list(settings_changed)
    if classify_change(path_list, keys, service=functions[service]) == "canary":
        kinds = ["runtime"]
    elif changed_functions(path_list, functions):
        kinds = ["function-code"]
    else:
        kinds = ["infrastructure"]
    if judge_changed(path_list, keys, tiers):
        kinds.append("judge")
    return kinds


def resolve_mode(requested: str, changed_paths: list[str] | None, *, service: FunctionAsset) -> Mode:
    """``deploymentMode`` context: explicit ``canary``/``all-at-once`` wins; ``auto`` classifies the paths."""
    if requested in ("canary", "all-at-once"):
        return requested  # type: ignore[return-value]
    return classify_change(changed_paths, service=service)


def changed_settings(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> set[str]:
    """Context keys whose value differs between two ``cdk.json`` documents."""
    b = dict((before or {}).get("context", {}))
    a = dict((after or {}).get("context", {}))
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def diff_since(base: str, repo: Path = Path(".")) -> tuple[list[str] | None, set[str]]:
    """Changed paths (renames as delete + add) and changed cdk.json keys between ``base`` and HEAD;
    (None, set()) when git cannot tell."""
    if not base:
        return None, set()
    try:
        paths = changed_files(repo, base, "HEAD", worktree=False)
    except GitError:
        return None, set()
    keys: set[str] = set()
    if "cdk.json" in paths:
        docs = []
        for rev in (base, "HEAD"):
            try:
                docs.append(json.loads(git(repo, "show", f"{rev}:cdk.json")))
            except (GitError, json.JSONDecodeError):
                docs.append({})
        keys = changed_settings(docs[0], docs[1])
    return paths, keys


def explain(
    paths: list[str] | None, keys: set[str], functions: Mapping[str, FunctionAsset], mode: Mode, kinds: Sequence[str]
) -> str:
    shown = "unknown (no base commit)" if paths is None else ", ".join(paths) or "(none)"
    changed = changed_functions(paths, functions)
    if changed is None:
        code = "function code: unknown, every function may change"
    elif changed:
        code = "new function code for: " + ", ".join(functions[h].name for h in changed)
    else:
        code = f"no function's code changes: all {len(functions)} functions keep their published versions"
    return (
        f"changed paths: {shown}; changed settings: {sorted(keys) or '(none)'}; {code} -> {mode} "
        f"(change types: {', '.join(kinds)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evalgate.engine.change_type", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--base", default="", help="commit to diff against (the last approved one); empty = unknown")
    parser.add_argument("--explain", action="store_true", help="print the changed paths and functions to stderr")
    parser.add_argument("--repo", type=Path, default=Path("."), help="repository root (default: .)")
    parser.add_argument(
        "--config", type=Path, help="gate config with the [tiers] judge rule (default: golden/gate.toml)"
    )
    args = parser.parse_args(argv)
    try:
        settings = service_settings(args.repo)
        functions = deployed_functions(args.repo, settings)
        config = args.config or args.repo / "golden" / "gate.toml"
        tiers = load_config(config).tiers if args.config or config.is_file() else TiersConfig()
    except InputError as exc:
        for problem in exc.problems:
            print(f"change_type: {problem}", file=sys.stderr)
        return 2
    paths, keys = diff_since(args.base.strip(), args.repo)
    service = settings["serviceHandler"]
    mode = classify_change(paths, keys, service=functions[service])
    if args.explain:
        kinds = change_types(paths, keys, functions=functions, service=service, tiers=tiers)
        print(explain(paths, keys, functions, mode, kinds), file=sys.stderr)
    print(mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
