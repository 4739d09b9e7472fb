"""A corpus of bad inputs a new user may feed the CLI: each one is exit 2 with ``file[:line]: message`` (or the
flag's name and its allowed range), no traceback, nothing evaluated and nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from evalgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"
TRACEBACK_WORDS = ("Traceback", "Error:", "Exception", "errno")


@pytest.fixture
def g(tmp_path: Path) -> Path:
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN, root, ignore=shutil.ignore_patterns("third_party"))
    return root


def run_args(g: Path, tmp: Path, *extra: str) -> list[str]:
    args = ["run", "--no-progress", "--golden", str(g), "--candidate", f"replay:{g}/responses/baseline.jsonl"]
    if "--out" not in extra:
        args += ["--out", str(tmp / "out")]
    if "--cache" not in extra and "--no-cache" not in extra:
        args += ["--no-cache"]
    return [*args, *extra]


def expect_input_error(argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    assert not any(word in err for word in TRACEBACK_WORDS), err
    return err


def first_line_with(path: Path, **changes: object) -> None:
    lines = path.read_text().splitlines()
    lines[0] = json.dumps({**json.loads(lines[0]), **changes})
    path.write_text("\n".join(lines) + "\n")


Breakage = Callable[[Path, Path], list[str]]


def _bytes_in_cases(g: Path, tmp: Path) -> list[str]:
    raw = (g / "cases.jsonl").read_bytes().split(b"\n")
    raw[2] = raw[2].replace(b"refund", b"r\xe9fund", 1)  # Latin-1, not UTF-8
    (g / "cases.jsonl").write_bytes(b"\n".join(raw))
    return ["cases.jsonl:3: not valid UTF-8 (byte 0xe9"]


def _utf16_config(g: Path, tmp: Path) -> list[str]:
    (g / "gate.toml").write_bytes((g / "gate.toml").read_text().encode("utf-16"))
    return ["gate.toml:1: file is UTF-16 (byte-order mark); save it as UTF-8"]


def _bytes_in_knowledge(g: Path, tmp: Path) -> list[str]:
    (g / "knowledge" / "returns.md").write_bytes((g / "knowledge" / "returns.md").read_bytes() + b"\n\xff\xfe\n")
    return ["returns.md:", "not valid UTF-8 (byte 0xff"]


def _deep_json(g: Path, tmp: Path) -> list[str]:
    with (g / "cases.jsonl").open("a") as fh:
        fh.write("[" * 5000 + "]" * 5000 + "\n")
    return ["cases.jsonl:", "JSON nested deeper than 200 levels"]


def _huge_prompt(g: Path, tmp: Path) -> list[str]:
    first_line_with(g / "cases.jsonl", prompt="x" * 5_000_000)
    return ["cases.jsonl:1:", "prompt has 5000000 characters; the limit is 32000"]


def _bool_threshold(g: Path, tmp: Path) -> list[str]:
    text = (g / "gate.toml").read_text().replace("relevance = 0.90", "relevance = true")
    (g / "gate.toml").write_text(text)
    return ["gate.toml:", "thresholds.relevance: Input should be a valid number"]


def _misspelt_threshold(g: Path, tmp: Path) -> list[str]:
    text = (g / "gate.toml").read_text().replace("relevance = 0.90", "relevence = 0.90")
    (g / "gate.toml").write_text(text)
    return ["thresholds.relevence: unknown key (did you mean 'relevance'?)"]


def _misspelt_section(g: Path, tmp: Path) -> list[str]:
    (g / "gate.toml").write_text((g / "gate.toml").read_text() + "\n[modles]\njudge = 'x'\n")
    return ["modles: unknown section (did you mean 'models'?)"]


def _misspelt_suite(g: Path, tmp: Path) -> list[str]:
    (g / "gate.toml").write_text((g / "gate.toml").read_text() + "\n[suites.regresion]\nskip_metrics = []\n")
    return ["suites: unknown name 'regresion' (did you mean 'regression'?)"]


def _suite_is_a_folder(g: Path, tmp: Path) -> list[str]:
    (g / "suites" / "guardrail.jsonl").unlink()
    (g / "suites" / "guardrail.jsonl").mkdir()
    return ["guardrail.jsonl: is a folder; expected a JSONL file of cases"]


def _golden_is_a_file(g: Path, tmp: Path) -> list[str]:
    shutil.rmtree(g)
    g.write_text("not a folder")
    return [f"{g}: is a file; expected the golden dataset folder"]


def _knowledge_is_a_file(g: Path, tmp: Path) -> list[str]:
    shutil.rmtree(g / "knowledge")
    (g / "knowledge").write_text("x")
    return ["knowledge: is a file; expected the knowledge folder"]


CORPUS: dict[str, Breakage] = {
    "non-UTF-8 byte in cases": _bytes_in_cases,
    "UTF-16 gate.toml": _utf16_config,
    "non-UTF-8 byte in knowledge": _bytes_in_knowledge,
    "deeply nested JSON line": _deep_json,
    "5 MB prompt": _huge_prompt,
    "boolean threshold": _bool_threshold,
    "misspelt threshold": _misspelt_threshold,
    "misspelt section": _misspelt_section,
    "misspelt suite": _misspelt_suite,
    "suite path is a folder": _suite_is_a_folder,
    "golden is a file": _golden_is_a_file,
    "knowledge is a file": _knowledge_is_a_file,
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_bad_golden_data_is_exit_2_with_file_and_line(
    name: str, g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = CORPUS[name](g, tmp_path)
    expect_input_error(["validate", "--golden", str(g)], capsys, *expected)
    expect_input_error(run_args(g, tmp_path), capsys, *expected)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_a_utf8_byte_order_mark_is_accepted(g: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in (g / "cases.jsonl", g / "gate.toml", g / "knowledge" / "returns.md"):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert main(["validate", "--golden", str(g)]) == 0, capsys.readouterr().err


def test_paths_of_the_wrong_kind_name_the_flag(g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    expect_input_error(run_args(g, tmp_path, "--out", str(a_file)), capsys, f"--out {a_file}: exists and is a file")
    expect_input_error(
        run_args(g, tmp_path, "--out", str(a_file / "sub")), capsys, f"'{a_file}' in this path is a file"
    )
    expect_input_error(run_args(g, tmp_path, "--cache", str(a_dir)), capsys, f"--cache {a_dir}: is a folder")
    expect_input_error(run_args(g, tmp_path, "--baseline", str(a_dir)), capsys, f"{a_dir}: is a folder")
    expect_input_error(run_args(g, tmp_path, "--config", str(a_dir)), capsys, f"{a_dir}: is a folder")
    argv = ["run", "--no-progress", "--no-cache", "--golden", str(g), "--candidate", f"replay:{a_dir}"]
    expect_input_error([*argv, "--out", str(tmp_path / "o")], capsys, f"{a_dir}: is a folder")
    expect_input_error(
        ["merge", str(a_dir), "--out", str(tmp_path / "m")], capsys, f"{a_dir}: is a folder; expected a shard"
    )
    expect_input_error(
        ["load", "--target", "http:http://127.0.0.1:9/ask", "--rps", "1", "--golden", str(g), "--out", str(a_file)],
        capsys,
        f"--out {a_file}: exists and is a file",
    )


def test_a_cache_that_is_not_sqlite_is_named(g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "cache.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    expect_input_error(run_args(g, tmp_path, "--cache", str(junk)), capsys, f"--cache {junk}: not a usable")
    truncated = tmp_path / "truncated.sqlite"
    import sqlite3

    con = sqlite3.connect(truncated)
    con.execute("CREATE TABLE entries (kind TEXT, key TEXT, value TEXT, created REAL, PRIMARY KEY (kind, key))")
    con.executemany("INSERT INTO entries VALUES (?, ?, ?, 0)", [("k", str(i), "v" * 2000) for i in range(300)])
    con.commit()
    con.close()
    truncated.write_bytes(truncated.read_bytes()[: 4096 * 3])
    expect_input_error(run_args(g, tmp_path, "--cache", str(truncated)), capsys, "not a usable evalgate cache")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--time-budget", "0"], "--time-budget: must be a number > 0"),
        (["--max-cost", "nan"], "--max-cost: must be a number > 0 (got 'nan')"),
        (["--max-cost", "-1"], "--max-cost: must be a number > 0"),
        (["--concurrency", "0"], "--concurrency: must be an integer >= 1 and <= 512"),
        (["--repeats", "1e9"], "--repeats: must be an integer >= 1 and <= 20"),
        (["--guardrail-version", "0"], "--guardrail-version: must be a guardrail version"),
        (["--tier", "fulll"], "--tier: invalid choice: 'fulll'"),
        (["--baseline-mismatch", "ignore"], "--baseline-mismatch: invalid choice"),
    ],
)
def test_flags_out_of_range_say_the_allowed_range(
    flags: list[str], expected: str, g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(run_args(g, tmp_path, *flags))
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--rps", "inf"], "--rps: must be a number > 0"),
        (["--factor", "50"], "--factor: must be a number > 0 and <= 20"),
        (["--timeout", "0"], "--timeout: must be a number > 0 and <= 300"),
        (["--workers", "0"], "--workers: must be an integer >= 1 and <= 4096"),
    ],
)
def test_load_flags_out_of_range(flags: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["load", "--target", "http:http://127.0.0.1:9/ask", *flags])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


def test_conflicting_cache_flags(g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    expect_input_error(run_args(g, tmp_path, "--cache-s3", "s3://bucket/cache.sqlite"), capsys, "--no-cache/--cache-s3")


def test_replay_and_results_files_of_the_wrong_shape(
    g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shapes = {
        "list.json": ("[1, 2]", "expected an object with a 'cases' list"),
        "cases.json": ('{"cases": [1]}', "cases[0]: expected an object with 'id' and 'generations'"),
        "gens.json": ('{"cases": [{"id": "c", "generations": [{"output": 3}]}]}', "cases[0].generations[0].output"),
        "deep.json": ("[" * 3000 + "]" * 3000, "JSON nested deeper than 200 levels"),
        "lines.jsonl": ('"just a string"\n', "lines.jsonl:1: each line must be a JSON object"),
    }
    for name, (body, expected) in shapes.items():
        path = tmp_path / name
        path.write_text(body)
        argv = ["run", "--no-progress", "--no-cache", "--golden", str(g), "--candidate", f"replay:{path}"]
        expect_input_error([*argv, "--out", str(tmp_path / "o")], capsys, expected)
        expect_input_error([*run_args(g, tmp_path), "--baseline", str(path)], capsys, str(path))


def test_a_cost_cap_needs_a_price_for_every_model_it_would_call(
    g: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--no-progress", "--no-cache", "--golden", str(g), "--candidate", "bedrock", "--out", str(tmp_path)]
    expect_input_error(
        [*argv, "--model", "acme.unpriced-model-v1:0", "--max-cost", "5"],
        capsys,
        "--max-cost / [cost] max_usd: a cost cap is in force but gate.toml [pricing] has no price for generator",
        "acme.unpriced-model-v1:0",
    )
    text = (g / "gate.toml").read_text()
    (g / "gate.toml").write_text(text.replace("[cost]", "[cost]\nmax_usd = 3.0", 1) if "[cost]" in text else text)
    (g / "gate.toml").write_text(
        (g / "gate.toml").read_text().replace('judge = "', 'judge = "acme.unpriced-judge-v1:0"\n# was: judge = "', 1)
    )
    err = expect_input_error(["validate", "--golden", str(g)], capsys, "[pricing] has no price for")
    assert "models.judge = 'acme.unpriced-judge-v1:0'" in err
