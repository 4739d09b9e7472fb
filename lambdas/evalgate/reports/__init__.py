"""Reports rendered from one ``RunResult``: results.json, junit.xml, summary.md and report.html.

``write_reports`` is all-or-nothing: every report is rendered in memory and written into a temporary directory
next to ``out_dir`` before any file in ``out_dir`` is touched; the files are then moved into place with
``os.replace``. If anything fails, the previous report set (if any) is put back and the temporary directory is
removed, so a reader never sees a results.json from one run next to a junit.xml from another.

Also the pull-request comment (``pr_comment``) and the case explorer. Floor 2: imports only ``evalgate.core`` and
``evalgate.contracts``; no Lambda function ships this package (a report change deploys nothing).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evalgate.core.results import RunResult
from evalgate.reports import html, junit, markdown

RESULTS_JSON = "results.json"
JUNIT_XML = "junit.xml"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"
# Key in the returned mapping -> file name in out_dir.
REPORT_FILES: dict[str, str] = {"json": RESULTS_JSON, "junit": JUNIT_XML, "markdown": SUMMARY_MD, "html": REPORT_HTML}
TEMP_PREFIX = ".evalgate-reports-"

__all__ = ["REPORT_FILES", "render_all", "write_reports"]


def render_all(result: RunResult, baseline: RunResult | None = None) -> dict[str, str]:
    """Every report's text, keyed like ``REPORT_FILES``. Pure: touches no file."""
    return {
        "json": result.model_dump_json(indent=2) + "\n",
        "junit": junit.render_junit(result),
        "markdown": markdown.render_markdown(result, baseline),
        "html": html.render_html(result, baseline),
    }


def _write_staged(texts: dict[str, str], staging: Path) -> dict[str, Path]:
    def write(key: str) -> Path:
        path = staging / REPORT_FILES[key]
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(texts[key])
            fh.flush()
            os.fsync(fh.fileno())
        return path

    # Each file is on disk before any is moved into place; the syncs wait on the disk, so they wait together.
    with ThreadPoolExecutor(max_workers=len(texts) or 1) as pool:
        return dict(zip(texts, pool.map(write, texts), strict=True))


def _commit(staged: dict[str, Path], out_dir: Path, backup_dir: Path) -> dict[str, Path]:
    """Move staged files into ``out_dir``; on any failure restore what was there before and re-raise."""
    backup_dir.mkdir()
    moved: list[tuple[Path, Path | None]] = []  # (destination, backup of the previous file or None)
    try:
        for key, src in staged.items():
            dest = out_dir / REPORT_FILES[key]
            backup: Path | None = None
            if dest.exists():
                backup = backup_dir / dest.name
                shutil.copy2(dest, backup)
            os.replace(src, dest)
            moved.append((dest, backup))
    except BaseException:
        for dest, backup in reversed(moved):
            if backup is not None:
                os.replace(backup, dest)
            else:
                dest.unlink(missing_ok=True)
        raise
    return {key: out_dir / name for key, name in REPORT_FILES.items() if key in staged}


def write_reports(result: RunResult, out_dir: Path, baseline: RunResult | None = None) -> dict[str, Path]:
    """Write results.json, junit.xml, summary.md and report.html into ``out_dir`` (created if missing), atomically.

    Returns the written paths keyed ``json``, ``junit``, ``markdown`` and ``html``. Raises whatever a renderer
    or the file system raised, after leaving ``out_dir`` exactly as it was.
    """
    out_dir = Path(out_dir)
    texts = render_all(result, baseline)  # a renderer that raises leaves no trace at all
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir.resolve().parent))
    try:
        (staging / "new").mkdir()
        staged = _write_staged(texts, staging / "new")
        return _commit(staged, out_dir, staging / "previous")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
