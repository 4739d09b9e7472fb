"""Prompt templates are versioned artefacts under ``prompts/<name>/<version>/``.

``system.md`` holds the system prompt, ``context.md`` the wrapper around retrieved knowledge and the
question. Rendering is pure and shared by the evaluation (Bedrock candidate) and the service Lambda, so what
is evaluated is what ships. ``{canary}`` in the system prompt is a secret that must never reach an answer: an
answer containing it proves a prompt leak.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from evalgate.core.errors import InputError
from evalgate.core.inputs import read_text
from evalgate.core.models import Case, KnowledgeEntry, Turn

PROMPT_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*$"  # "<family>/<version>", a folder under prompts/

DEFAULT_CANARY = "CANARY-0000-NOT-SET"


def default_prompts_dir() -> Path:
    env = os.environ.get("EVALGATE_PROMPTS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "prompts").is_dir():
            return parent / "prompts"
    return Path("prompts")


@dataclass(frozen=True)
class PromptTemplate:
    prompt_id: str  # e.g. "support/v1"
    system: str
    context: str

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(self.system.encode())
        h.update(b"\x00")
        h.update(self.context.encode())
        return h.hexdigest()

    def render(
        self,
        turns: list[Turn],
        knowledge: list[KnowledgeEntry],
        untrusted: str | None = None,
        canary: str = DEFAULT_CANARY,
    ) -> tuple[str, list[dict[str, str]]]:
        """Return (system prompt, messages). Knowledge goes into the last user turn, fenced."""
        kb = "\n\n".join(f"[{k.id}] {k.title}\n{k.text}" for k in knowledge) or "(no knowledge base excerpt matched)"
        doc = untrusted.strip() if untrusted else "(none)"
        system = self.system.replace("{canary}", canary)
        messages = [{"role": t.role, "content": t.content} for t in turns]
        last = messages[-1]["content"]
        messages[-1]["content"] = (
            self.context.replace("{knowledge}", kb).replace("{document}", doc).replace("{question}", last)
        )
        return system, messages

    def render_case(
        self, case: Case, knowledge: list[KnowledgeEntry], canary: str | None = None
    ) -> tuple[str, list[dict[str, str]]]:
        token = case.injection.canary if case.injection else (canary or DEFAULT_CANARY)
        return self.render(case.turns, knowledge, case.untrusted_context, token)


def load_prompt(prompt_id: str, prompts_dir: Path | None = None) -> PromptTemplate:
    if not re.match(PROMPT_ID_PATTERN, prompt_id) or ".." in prompt_id:
        raise InputError.single("--prompt / [models] prompt", None, f"'{prompt_id}' is not a prompt id like support/v1")
    base = (prompts_dir or default_prompts_dir()) / prompt_id
    files = {}
    for name in ("system.md", "context.md"):
        path = base / name
        if not path.exists():
            raise InputError.single(str(path), None, f"prompt '{prompt_id}' is missing {name}")
        files[name] = read_text(path, "prompt file")
    ctx = files["context.md"]
    if "{question}" not in ctx or "{knowledge}" not in ctx:
        raise InputError.single(str(base / "context.md"), None, "context.md must contain {knowledge} and {question}")
    return PromptTemplate(prompt_id=prompt_id, system=files["system.md"], context=ctx)
