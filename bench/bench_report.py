"""Report weight and render time for 139 and 10,000 cases (issue 12). Run: `.venv/bin/python bench/bench_report.py`.

The demo's regressed run (139 cases) is scored once offline; a 10,000-case run is made by repeating its cases
under new ids (and the baseline likewise). For each size: report.html bytes, Python render time, and — when
Chromium and its driver are installed — the browser's time to DOMContentLoaded and to the load event, and the
time a filter takes to apply (failing only), with the 139-case figures as the baseline of the ratios.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lambdas"), str(ROOT)]

from evalgate.cli import main  # noqa: E402
from evalgate.core.results import RunResult  # noqa: E402
from evalgate.reports.html import render_html  # noqa: E402


def scaled(result: RunResult, n: int) -> RunResult:
    cases = [
        c.model_copy(update={"id": f"{c.id}-{i // len(result.cases)}"})
        for i, c in enumerate(result.cases * (n // len(result.cases) + 1))
    ][:n]
    return result.model_copy(update={"cases": cases})


def browser_times(page: Path) -> dict[str, float] | None:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=options)
    try:
        d.get(page.resolve().as_uri())
        t = d.execute_script(
            "var n = performance.getEntriesByType('navigation')[0];return [n.domContentLoadedEventEnd, n.loadEventEnd];"
        )
        filt = d.execute_script(
            "var t0 = performance.now(); var f = document.getElementById('f-failing');"
            "f.checked = true; f.dispatchEvent(new Event('change'));"
            "return performance.now() - t0;"
        )
        return {"dom_ms": float(t[0]), "load_ms": float(t[1]), "filter_ms": float(filt)}
    finally:
        d.quit()


def main_bench() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="evalgate-bench-report-"))
    golden = ROOT / "golden"
    common = ["--tier", "offline", "--no-progress", "--cache", str(tmp / "c.sqlite")]
    main(["run", *common, "--candidate", f"replay:{golden}/responses/baseline.jsonl", "--out", str(tmp / "b")])
    main(
        [
            "run",
            *common,
            "--candidate",
            f"replay:{golden}/responses/regressed.jsonl",
            "--baseline",
            str(tmp / "b" / "results.json"),
            "--out",
            str(tmp / "r"),
        ]
    )
    cand = RunResult.model_validate_json((tmp / "r" / "results.json").read_text())
    base = RunResult.model_validate_json((tmp / "b" / "results.json").read_text())
    rows = []
    for n in (len(cand.cases), 10_000):
        c, b = scaled(cand, n), scaled(base, n)
        t0 = time.perf_counter()
        page = render_html(c, b)
        render_s = time.perf_counter() - t0
        path = tmp / f"report-{n}.html"
        path.write_text(page, encoding="utf-8")
        rows.append({"cases": n, "bytes": len(page.encode()), "render_s": render_s, "browser": browser_times(path)})
    first = rows[0]
    print(
        f"{'cases':>7} {'size':>10} {'per case':>9} {'python render':>14} {'DOM ready':>10} {'load':>8} "
        f"{'filter':>8}  ratios vs 139 (size, load)"
    )
    for r in rows:
        br = r["browser"] or {}
        size_ratio = r["bytes"] / first["bytes"]
        load_ratio = (br.get("load_ms", 0) / (first["browser"] or {}).get("load_ms", 1)) if br else float("nan")
        print(
            f"{r['cases']:>7} {r['bytes'] / 1e6:>8.2f}MB {r['bytes'] / r['cases'] / 1e3:>7.2f}kB "
            f"{r['render_s']:>12.2f}s {br.get('dom_ms', float('nan')):>8.0f}ms "
            f"{br.get('load_ms', float('nan')):>6.0f}ms "
            f"{br.get('filter_ms', float('nan')):>6.0f}ms  {size_ratio:.1f}x, {load_ratio:.1f}x"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main_bench()
