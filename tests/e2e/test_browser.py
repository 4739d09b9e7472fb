"""The reports in a real browser: headless Chromium (Debian's package) driven by Selenium, on the demo's PASS and
FAIL runs and on a history site over both. Screenshots go to out/browser/ (kept as CI artifacts)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evalgate.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "golden"
SHOTS = ROOT / "out" / "browser"
CHROMIUM = os.environ.get("EVALGATE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = os.environ.get("EVALGATE_CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("reports")
    cache = ["--cache", str(out / "cache.sqlite"), "--no-progress", "--tier", "offline"]
    assert (
        main(
            [
                "run",
                *cache,
                "--candidate",
                f"replay:{GOLDEN}/responses/baseline.jsonl",
                "--out",
                str(out / "runs" / "1-baseline"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "run",
                *cache,
                "--candidate",
                f"replay:{GOLDEN}/responses/regressed.jsonl",
                "--baseline",
                str(out / "runs" / "1-baseline" / "results.json"),
                "--out",
                str(out / "runs" / "2-regressed"),
            ]
        )
        == 1
    )
    assert main(["history", "--runs", str(out / "runs"), "--out", str(out / "history")]) == 0
    return {
        "pass": out / "runs" / "1-baseline" / "report.html",
        "fail": out / "runs" / "2-regressed" / "report.html",
        "history": out / "history" / "index.html",
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(DRIVER).exists(), (
        "the browser tests need Chromium and its driver: apt-get install chromium chromium-driver "
        "(or set EVALGATE_CHROMIUM / EVALGATE_CHROMEDRIVER)"
    )
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser: Any, path: Path, fragment: str = "") -> None:
    browser.get(path.resolve().as_uri() + fragment)
    browser.get_log("browser")  # drain anything from a previous page


def console_errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e.get("level") == "SEVERE"]


def in_first_screen(browser: Any, element: Any) -> bool:
    top, bottom = browser.execute_script(
        "var r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom];", element
    )
    return top >= 0 and bottom <= browser.execute_script("return window.innerHeight")


@pytest.mark.parametrize("which", ["pass", "fail"])
def test_the_verdict_and_what_broke_are_visible_without_scrolling(browser: Any, runs: dict[str, Path], which: str):
    open_page(browser, runs[which])
    banner = browser.find_element("css selector", ".banner h1")
    assert banner.text.startswith("PASS" if which == "pass" else "FAIL") and in_first_screen(browser, banner)
    first = browser.find_element("css selector", "ul.whatbroke li")
    assert in_first_screen(browser, first)
    if which == "fail":
        assert "now fail" in first.text and "worst:" in first.text
    browser.save_screenshot(str(SHOTS / f"report-{which}.png"))
    assert console_errors(browser) == []


def visible_cases(browser: Any) -> list[Any]:
    return [e for e in browser.find_elements("css selector", "details.xcase") if e.is_displayed()]


def test_filters_and_search_narrow_the_cases(browser: Any, runs: dict[str, Path]):
    from selenium.webdriver.support.ui import Select

    open_page(browser, runs["fail"])
    everything = len(visible_cases(browser))
    assert everything == 139
    browser.execute_script("arguments[0].scrollIntoView()", browser.find_element("id", "f-failing"))
    browser.find_element("id", "f-failing").click()
    failing = visible_cases(browser)
    assert 0 < len(failing) < everything
    assert all(e.get_attribute("data-status") != "pass" for e in failing)
    Select(browser.find_element("id", "f-category")).select_by_value("regression / returns")
    returns = visible_cases(browser)
    assert 0 < len(returns) < len(failing) and all(
        e.get_attribute("data-category") == "regression / returns" for e in returns
    )
    search = browser.find_element("id", "f-search")
    search.send_keys("gift")
    assert [e.get_attribute("id") for e in visible_cases(browser)] == ["case-ret-gift-return"]
    assert browser.find_element("id", "f-count").text == "1 of 139 cases"
    browser.save_screenshot(str(SHOTS / "report-filtered.png"))
    assert console_errors(browser) == []


def test_a_case_link_opens_that_case_with_both_answers(browser: Any, runs: dict[str, Path]):
    open_page(browser, runs["fail"], "#case-ret-gift-return")
    case = browser.find_element("id", "case-ret-gift-return")
    assert case.get_attribute("open") == "true" and in_first_screen(browser, case.find_element("tag name", "summary"))
    sides = case.find_elements("css selector", ".sides .answer")
    assert len(sides) == 2 and sides[0].find_elements("tag name", "del") and sides[1].find_elements("tag name", "ins")
    assert "pass → fail" in case.find_element("css selector", "summary").text
    browser.save_screenshot(str(SHOTS / "report-case-link.png"))
    assert console_errors(browser) == []


def test_the_history_page_shows_trends_and_compares_two_runs(browser: Any, runs: dict[str, Path]):
    from selenium.webdriver.support.ui import Select

    open_page(browser, runs["history"])
    assert len(browser.find_elements("css selector", "svg.trend")) >= 10
    assert browser.find_elements("css selector", "svg.trend circle.point")
    rows = browser.find_elements("css selector", "tr.cmp-row")
    assert rows and "between" in browser.find_element("id", "cmp-count").text
    Select(browser.find_element("id", "cmp-a")).select_by_value("1")  # a run against itself: nothing changed
    assert browser.find_elements("css selector", "tr.cmp-row") == []
    assert browser.find_element("id", "cmp-count").text.startswith("0 of 139 cases changed")
    browser.save_screenshot(str(SHOTS / "history.png"))
    assert console_errors(browser) == []
