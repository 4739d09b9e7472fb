"""The case explorer and the summary in words, for report.html (and, for the summary, summary.md).

``what_broke`` says what a reviewer needs first, segment first: which categories and tags now fail cases that
passed in the approved baseline (with counts and the worst cases), in plain words.

``explorer_section`` is every case, server-rendered (it reads without JavaScript, from a file or from S3): a row
per case with its status against the baseline, and inside it the baseline and candidate answers side by side
with a word diff, each metric with its reason and its baseline value, the judge's unsupported claims
highlighted. A small inline script (allowed by its hash in the page's Content-Security-Policy, nothing loaded
from anywhere) adds filters (failing only, changed only, category, tag) and search, and opens the case named in
the URL fragment: ``report.html#case-<id>`` is a stable link for an email or a pull-request comment.
"""

from __future__ import annotations

import difflib
import hashlib
import html
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from evalgate.core.results import CaseResult, RunResult, answer_or_error, answer_text, strip_controls
from evalgate.reports.common import case_reasons, failing_metric, fmt_num, fmt_usd, repeat_text, worst_of

WORST_SHOWN = 3
DETAIL_CHARS = 4000
WORD = re.compile(r"\S+|\s+")


def esc(value: object) -> str:
    """Text for HTML: escaped, control characters (terminal escapes, NUL) replaced."""
    return html.escape(strip_controls(str(value)), quote=True)


def case_anchor(case_id: str) -> str:
    return f"case-{case_id}"


# ------------------------------------------------------------------------------------------ summary in words


@dataclass(frozen=True)
class Segment:
    kind: str  # "category" or "tag"
    name: str
    total: int
    now_failing: int  # passed in the baseline, not now
    fixed: int  # failed in the baseline, pass now
    failing: int  # not passing now (with or without a baseline)
    worst: list[str]


def segments(result: RunResult, baseline: RunResult | None) -> list[Segment]:
    """Per category and per tag: how many cases broke (vs the baseline) or fail; worst first."""
    groups: dict[tuple[str, str], list[CaseResult]] = {}
    for case in result.cases:
        name = case.suite if case.category == case.suite else f"{case.suite} / {case.category}"
        groups.setdefault(("category", name), []).append(case)
        for tag in case.tags:
            groups.setdefault(("tag", tag), []).append(case)
    before = _statuses(baseline)
    out = []
    for (kind, name), cases in groups.items():
        broke = [c for c in cases if before.get(c.id) == "pass" and c.status != "pass"]
        fixed = sum(1 for c in cases if before.get(c.id) not in (None, "pass") and c.status == "pass")
        failing = [c for c in cases if c.status != "pass"]
        worst = [c.id for c in worst_of(broke or failing, k=WORST_SHOWN)]
        out.append(Segment(kind, name, len(cases), len(broke), fixed, len(failing), worst))
    key = (
        (lambda s: (-s.now_failing, -s.failing, s.kind, s.name))
        if baseline
        else (lambda s: (-s.failing, s.kind, s.name))
    )
    return [s for s in sorted(out, key=key) if (s.now_failing if baseline else s.failing)]


def _statuses(baseline: RunResult | None) -> dict[str, str]:
    return {c.id: c.status for c in baseline.cases} if baseline is not None else {}


def what_broke(result: RunResult, baseline: RunResult | None, limit: int = 6) -> list[str]:
    """Sentences, most important first: the segments that regressed, then what else fails."""
    lines: list[str] = []
    segs = segments(result, baseline)
    for s in [s for s in segs if s.kind == "category"][:limit]:
        lines.append(_sentence(s, baseline is not None))
    tags = [s for s in segs if s.kind == "tag"][: max(0, limit - len(lines)) or 2]
    lines += [_sentence(s, baseline is not None) for s in tags]
    if not lines:
        lines.append("No case got worse than the approved baseline." if baseline is not None else "Every case passes.")
    return lines


def _sentence(s: Segment, with_baseline: bool) -> str:
    what = f"tag “{s.name}”" if s.kind == "tag" else s.name
    worst = f" — worst: {', '.join(s.worst)}" if s.worst else ""
    if with_baseline:
        return f"{what}: {s.now_failing} of {s.total} cases now fail, {s.fixed} fixed{worst}"
    return f"{what}: {s.failing} of {s.total} cases fail{worst}"


# ------------------------------------------------------------------------------------------------ explorer


def word_diff(before: str, after: str) -> tuple[str, str]:
    """HTML of both texts with removed words marked in the first and added words in the second."""
    a, b = WORD.findall(before), WORD.findall(after)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old, new = esc("".join(a[i1:i2])), esc("".join(b[j1:j2]))
        if op == "equal":
            left.append(old)
            right.append(new)
            continue
        if old:
            left.append(f"<del>{old}</del>")
        if new:
            right.append(f"<ins>{new}</ins>")
    return "".join(left), "".join(right)


def highlight_claims(answer_html: str, claims: list[str]) -> str:
    """Mark each unsupported claim where it appears verbatim (case-insensitive) in the answer."""
    for claim in sorted({c.strip() for c in claims if len(c.strip()) >= 4}, key=len, reverse=True):
        answer_html = _mark_all(answer_html, esc(claim))
    return answer_html


def _mark_all(text: str, needle: str) -> str:
    """``text`` with every non-overlapping case-insensitive occurrence of ``needle`` in a claim mark. A plain
    search, not a regex per claim (compiling one costs more than the search; a report marks hundreds), unless
    lower-casing changes the text's length (rare letters), where positions would not line up."""
    low, find = text.lower(), needle.lower()
    if len(low) != len(text) or len(find) != len(needle):
        return re.compile(re.escape(needle), re.IGNORECASE).sub(
            lambda m: f'<mark class="claim">{m.group(0)}</mark>', text
        )
    out, at = [], 0
    while (hit := low.find(find, at)) >= 0:
        end = hit + len(find)
        out += [text[at:hit], '<mark class="claim">', text[hit:end], "</mark>"]
        at = end
    return "".join(out) + text[at:] if out else text


def _metrics_table(case: CaseResult, before: CaseResult | None) -> str:
    rows = []
    for name, m in sorted(case.metrics.items()):
        b = before.metrics.get(name) if before is not None else None
        value = "unscored" if m.unscored or m.value is None else fmt_num(m.value)
        rows.append(
            f'<tr><td>{esc(name)}</td><td class="num">{esc(value)}</td>'
            f'<td class="num">{esc(fmt_num(b.value) if b is not None else "—")}</td>'
            f"<td>{esc(m.reason) or '<span class=muted>—</span>'}</td></tr>"
        )
    head = "<tr><th>metric</th><th>candidate</th><th>baseline</th><th>reason</th></tr>"
    return f'<table class="metrics">{head}{"".join(rows)}</table>' if rows else ""


def pre(text: str | None) -> str:
    if text is None:
        return '<span class="muted">—</span>'
    clipped = text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"
    return f"<pre>{esc(clipped)}</pre>"


def more_details(case: CaseResult) -> str:
    rows = [
        ("question", pre(case.question or None)),
        ("reference", pre(case.reference or None)),
        ("answer", pre(answer_text(case))),
        ("expected / observed", esc(f"{case.expected} / {case.observed or '—'}")),
    ]
    for g in case.generations[1:] if len(case.generations) > 1 else []:
        rows.append((f"answer, repeat {g.repeat}", pre(g.output) if g.output is not None else esc(g.error or "—")))
    repeats = repeat_text(case, len(case.generations))
    if repeats:
        rows.append(("repeats", esc(repeats)))
    errors = [f"repeat {g.repeat}: {g.error}" for g in case.generations if g.error]
    if errors:
        rows.append(("errors", "<br>".join(esc(e) for e in errors)))
    if case.unsupported_claims:
        rows.append(
            ("unsupported claims", "<ul>" + "".join(f"<li>{esc(c)}</li>" for c in case.unsupported_claims) + "</ul>")
        )
    for name, m in case.metrics.items():
        value = fmt_num(m.value) if m.value is not None else "unscored"
        extra = "".join(f'<br><span class="muted">{esc(k)}: {esc(_clip(v))}</span>' for k, v in m.details.items())
        rows.append((f"{name}", f"{esc(value)}{' — ' + esc(m.reason) if m.reason else ''}{extra}"))
    tokens = f"{case.input_tokens}/{case.output_tokens}"
    ttft = f"first token {fmt_num(case.ttft_ms)} ms · " if case.ttft_ms is not None else ""
    usage = f"{ttft}latency {fmt_num(case.latency_ms)} ms · tokens in/out {tokens} · {fmt_usd(case.cost_usd)}"
    rows.append(("usage", esc(usage)))
    body = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<details><summary>all details (repeats, metric details, usage)</summary><dl class="kv">{body}</dl></details>'
    )


def _clip(value: Any, limit: int = 600) -> str:
    s = str(value)
    return s if len(s) <= limit else s[:limit] + "…"


def case_block(case: CaseResult, before: CaseResult | None) -> str:
    now = answer_or_error(case)
    then = answer_or_error(before) if before is not None else ""
    if before is not None:
        left, right = word_diff(then, now)
    else:
        left, right = "", esc(now)
    right = highlight_claims(right, case.unsupported_claims)
    changed = before is not None and (before.status != case.status or then.strip() != now.strip())
    status = f"{before.status} → {case.status}" if before is not None else case.status
    reasons = "; ".join(case_reasons(case)) if case.status != "pass" else ""
    failing = (failing_metric(case) or "") if case.status != "pass" else ""
    claims = "".join(f"<li>{esc(c)}</li>" for c in case.unsupported_claims)
    text = " ".join([case.id, case.question, case.category, *case.tags]).lower()
    attrs = (
        f'id="{esc(case_anchor(case.id))}" class="xcase" data-status="{esc(case.status)}" '
        f'data-changed="{int(changed)}" data-category="{esc(case.suite + " / " + case.category)}" '
        f'data-tags="{esc(" ".join(case.tags))}" data-text="{esc(text)}"'
    )
    sides = (
        f'<div class="sides"><div><h4>baseline answer</h4><div class="answer">{left or "<span class=muted>—</span>"}'
        f'</div></div><div><h4>candidate answer</h4><div class="answer">{right}</div></div></div>'
    )
    return (
        f'<details {attrs}><summary><span class="cid">{esc(case.id)}</span> '
        f'<span class="st st-{esc(case.status)}">{esc(status)}</span> '
        f'<span class="muted">{esc(case.suite)} / {esc(case.category)}</span> '
        f'<span class="why">{esc(failing)}{": " if failing and reasons else ""}{esc(reasons[:200])}</span>'
        f'<a class="link" href="#{esc(case_anchor(case.id))}" title="link to this case">¶</a></summary>'
        f"<p><strong>Question:</strong> {esc(case.question)}</p>"
        f"<p><strong>Reference:</strong> {esc(case.reference)}</p>{sides}"
        + (
            f"<p><strong>Unsupported claims</strong> (highlighted where the answer says them):</p><ul>{claims}</ul>"
            if claims
            else ""
        )
        + f"{_metrics_table(case, before)}{more_details(case)}</details>"
    )


EXPLORER_JS = r"""
(function () {
  var root = document.getElementById('explorer');
  if (!root) return;
  var cases = Array.prototype.slice.call(root.querySelectorAll('details.xcase'));
  var q = function (id) { return document.getElementById(id); };
  function apply() {
    var failing = q('f-failing').checked, changed = q('f-changed').checked;
    var cat = q('f-category').value, tag = q('f-tag').value, text = q('f-search').value.trim().toLowerCase();
    var shown = 0;
    cases.forEach(function (el) {
      var ok = (!failing || el.dataset.status !== 'pass') && (!changed || el.dataset.changed === '1') &&
        (!cat || el.dataset.category === cat) &&
        (!tag || (' ' + el.dataset.tags + ' ').indexOf(' ' + tag + ' ') >= 0) &&
        (!text || el.dataset.text.indexOf(text) >= 0);
      el.hidden = !ok;
      if (ok) shown += 1;
    });
    q('f-count').textContent = shown + ' of ' + cases.length + ' cases';
  }
  function openFromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id.indexOf('case-') !== 0) return;
    var el = document.getElementById(id);
    if (!el) return;
    el.hidden = false;
    el.open = true;
    el.scrollIntoView();
  }
  ['f-failing', 'f-changed', 'f-category', 'f-tag', 'f-search'].forEach(function (id) {
    q(id).addEventListener('input', apply);
    q(id).addEventListener('change', apply);
  });
  window.addEventListener('hashchange', openFromHash);
  root.classList.add('js');
  apply();
  openFromHash();
})();
"""

EXPLORER_CSS = """
#explorer .filters { display: none; gap: .6rem; flex-wrap: wrap; align-items: center; margin: .4rem 0 .8rem; }
#explorer.js .filters { display: flex; }
details.xcase { border: 1px solid #d0d7de; border-radius: 6px; margin: .25rem 0; padding: .2rem .5rem; }
details.xcase[open] { background: #fbfcfd; }
details.xcase summary { color: inherit; }
.cid { font-family: ui-monospace, monospace; font-weight: 600; }
.st { font-weight: 600; margin: 0 .4rem; }
.st.st-fail, .st.st-error { color: #cf222e; } .st.st-unscored { color: #9a6700; } .st.st-pass { color: #1a7f37; }
.why { color: #57606a; font-size: 12px; }
.link { margin-left: .4rem; color: #57606a; text-decoration: none; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: .8rem; }
.sides h4 { margin: .2rem 0; font-size: 12px; color: #57606a; }
.answer { white-space: pre-wrap; word-break: break-word; background: #f6f8fa; padding: .5rem; border-radius: 4px; }
del { background: #ffebe9; color: #82071e; } ins { background: #dafbe1; color: #116329; text-decoration: none; }
mark.claim { background: #fff8c5; outline: 1px solid #d4a72c; }
table.metrics td, table.metrics th { font-size: 12px; }
.whatbroke li { margin: .15rem 0; }
"""


def script_hash() -> str:
    import base64

    return "sha256-" + base64.b64encode(hashlib.sha256(EXPLORER_JS.encode()).digest()).decode()


def explorer_section(result: RunResult, baseline: RunResult | None) -> str:
    order = {"fail": 0, "error": 1, "unscored": 2, "pass": 3}
    cases = sorted(result.cases, key=lambda c: (order.get(c.status, 4), c.suite, c.id))
    before = {c.id: c for c in baseline.cases} if baseline is not None else {}
    blocks = "".join(case_block(c, before.get(c.id)) for c in cases)
    cats = sorted({f"{c.suite} / {c.category}" for c in result.cases})
    tags = sorted({t for c in result.cases for t in c.tags})
    option = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in cats)
    tag_options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in tags)
    counts = Counter(c.status for c in result.cases)
    summary = " · ".join(f"{counts[s]} {s}" for s in ("fail", "error", "unscored", "pass") if counts[s])
    filters = (
        '<div class="filters">'
        '<label><input type="checkbox" id="f-failing"> failing only</label>'
        '<label><input type="checkbox" id="f-changed"> changed vs baseline only</label>'
        f'<select id="f-category"><option value="">every category</option>{option}</select>'
        f'<select id="f-tag"><option value="">every tag</option>{tag_options}</select>'
        '<input type="search" id="f-search" placeholder="search id, question, tag">'
        '<span id="f-count" class="muted"></span></div>'
    )
    note = (
        "Baseline and candidate answers side by side (removed words red, added words green), each metric with its "
        "reason; not-passing cases first. Link to a case with <code>#case-&lt;id&gt;</code>."
        if baseline is not None
        else "Each case's answer, metrics and reasons; not-passing cases first (no baseline run was given)."
    )
    return (
        f'<section id="explorer"><h2>Cases ({len(result.cases)}: {esc(summary or "none")})</h2>'
        f'<p class="muted">{note}</p>{filters}{blocks}</section><script>{EXPLORER_JS}</script>'
    )


def what_broke_section(result: RunResult, baseline: RunResult | None) -> str:
    items = "".join(f"<li>{_linked(line)}</li>" for line in what_broke(result, baseline))
    title = "What broke, by segment" if baseline is not None else "What fails, by segment"
    return f'<section><h2>{title}</h2><ul class="whatbroke">{items}</ul></section>'


def _linked(line: str) -> str:
    """The sentence with its worst case ids as links into the explorer."""
    text, sep, ids = line.partition(" — worst: ")
    if not sep:
        return esc(line)
    links = ", ".join(f'<a href="#{esc(case_anchor(i))}">{esc(i)}</a>' for i in ids.split(", "))
    return f"{esc(text)} — worst: {links}"
