"""Keyword retrieval (Okapi BM25) over the knowledge base, for the service and the online judge.

Pure Python and small on purpose: the knowledge base is a few dozen Markdown sections, the service's cold
start matters, and the same index must give the same excerpts in the service (what the model saw) and in the
online judge (what the answer is judged against). Titles count twice; ids (``returns.window``) are indexed
as words so a question naming a topic finds it.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from evalgate.core.dataset import load_knowledge
from evalgate.core.errors import InputError
from evalgate.core.models import KnowledgeEntry

_WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers him his how i if in into is it its itself just me more most my no nor not now of off on once only or other
    our ours out over own same she should so some such than that the their theirs them then there these they this
    those through to too under until up very was we were what when where which while who whom why will with would
    you your yours yourself hi hello please thanks thank long take get need know want much many tell help ok""".split()  # noqa: SIM905 - a word list reads better as text
)


def _stem(word: str) -> str:
    """A deliberately light stemmer: plurals and a few verb endings (enough for policy vocabulary)."""
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            return word[: len(word) - len(suffix)] + keep
    return word


def tokenize(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


class KnowledgeIndex:
    def __init__(self, entries: Iterable[KnowledgeEntry], k1: float = 1.5, b: float = 0.75) -> None:
        self.entries: list[KnowledgeEntry] = list(entries)
        self.by_id = {e.id: e for e in self.entries}
        self.k1, self.b = k1, b
        docs = [
            tokenize(f"{e.title} {e.title} {e.id.replace('.', ' ').replace('-', ' ')} {e.text}") for e in self.entries
        ]
        self._lengths = [len(d) for d in docs]
        self._avg = (sum(self._lengths) / len(docs)) if docs else 0.0
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for i, doc in enumerate(docs):
            for term, tf in Counter(doc).items():
                self._postings.setdefault(term, []).append((i, tf))
        n = len(docs)
        self._idf = {t: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self._postings.items()}

    def __len__(self) -> int:
        return len(self.entries)

    def scores(self, query: str) -> dict[int, float]:
        out: dict[int, float] = {}
        for term in set(tokenize(query)):
            idf = self._idf.get(term)
            if idf is None:
                continue
            for i, tf in self._postings[term]:
                norm = tf + self.k1 * (1 - self.b + self.b * self._lengths[i] / (self._avg or 1.0))
                out[i] = out.get(i, 0.0) + idf * tf * (self.k1 + 1) / norm
        return out

    def ranked(self, query: str, k: int = 3, relative_cutoff: float = 0.25) -> list[tuple[KnowledgeEntry, float]]:
        """Up to ``k`` entries with a positive score of at least ``relative_cutoff`` x the best score."""
        scored = sorted(self.scores(query).items(), key=lambda kv: (-kv[1], kv[0]))
        if not scored:
            return []
        best = scored[0][1]
        return [(self.entries[i], s) for i, s in scored[:k] if s > 0 and s >= relative_cutoff * best]

    def search(self, query: str, k: int = 3) -> list[KnowledgeEntry]:
        return [e for e, _ in self.ranked(query, k)]

    def get(self, ids: Sequence[str]) -> list[KnowledgeEntry]:
        """Entries by id, in order, skipping ids this knowledge base does not have."""
        return [self.by_id[i] for i in ids if i in self.by_id]


def default_knowledge_dir() -> Path:
    env = os.environ.get("EVALGATE_KNOWLEDGE_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "golden" / "knowledge").is_dir():
            return parent / "golden" / "knowledge"
    return Path("golden/knowledge")


def load_index(folder: Path | None = None) -> tuple[KnowledgeIndex, list[str]]:
    """Index the knowledge base. Returns (index, problems as text). No entry at all is an ``InputError``."""
    folder = folder or default_knowledge_dir()
    entries, problems = load_knowledge(folder)
    if not entries:
        raise InputError(problems) if problems else InputError.single(str(folder), None, "knowledge base is empty")
    return KnowledgeIndex(entries.values()), [str(p) for p in problems]
