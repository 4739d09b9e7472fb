"""BM25 retrieval over the shipped knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest

from evalgate.core.errors import InputError
from evalgate.core.knowledge import KnowledgeIndex, load_index, tokenize
from evalgate.core.models import KnowledgeEntry

KB = Path(__file__).resolve().parents[2] / "golden" / "knowledge"


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    idx, problems = load_index(KB)
    assert problems == []
    return idx


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How long do refunds take to show on my card?", "returns.refund-timing"),
        ("Can I return a gift I received?", "returns.gifts"),
        ("Do you ship to Canada?", "shipping.canada"),
        ("I forgot my password and can't sign in", "accounts.sign-in"),
        ("How much does return shipping cost?", "returns.shipping-fees"),
    ],
)
def test_the_entry_that_answers_is_retrieved(index: KnowledgeIndex, question: str, expected: str) -> None:
    ranked = index.ranked(question, k=3)
    assert expected in [e.id for e, _ in ranked]
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)


@pytest.mark.parametrize(
    ("question", "expected"),
    [("Do you ship to Canada?", "shipping.canada"), ("I forgot my password and can't sign in", "accounts.sign-in")],
)
def test_unambiguous_questions_rank_their_entry_first(index: KnowledgeIndex, question: str, expected: str) -> None:
    assert index.search(question, k=3)[0].id == expected


def test_off_topic_question_retrieves_nothing(index: KnowledgeIndex) -> None:
    assert index.search("What is the capital of France?") == []


def test_relative_cutoff_drops_weak_matches() -> None:
    entries = [
        KnowledgeEntry(id="a.refunds", title="Refunds", text="refund refund refund timing card bank", file="x", line=1),
        KnowledgeEntry(id="b.other", title="Other", text="a bank holiday note", file="x", line=2),
    ]
    idx = KnowledgeIndex(entries)
    assert [e.id for e in idx.search("refund timing bank", k=5)] == ["a.refunds"]
    assert [e.id for e, _ in idx.ranked("refund timing bank", k=5, relative_cutoff=0.0)] == ["a.refunds", "b.other"]


def test_get_by_ids_keeps_order_and_skips_unknown(index: KnowledgeIndex) -> None:
    got = index.get(["shipping.canada", "nope", "returns.window"])
    assert [e.id for e in got] == ["shipping.canada", "returns.window"]


def test_tokenize_stems_and_drops_stopwords() -> None:
    assert tokenize("How long do the refunds take? Shipping policies!") == ["refund", "shipp", "policy"]


def test_empty_knowledge_dir_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        load_index(tmp_path)
    assert "no knowledge files" in str(exc.value)
