"""Snippets of the seed documents: every fenced code block and every command line (see test_seed_corpus)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEEDS = Path(__file__).parent / "seeds"
SHELL_LANGS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^```(\w*)\s*$")
COMMAND_START = re.compile(r"^(python |pip |git |cd |docker |pytest|\./)")
"""How a command line starts in a document that lost its code fences (seed 003)."""


@dataclass(frozen=True)
class Snippet:
    seed: str
    kind: str  # "shell" (one command line), "python" (a block), "text" (a block that is not code)
    source: str

    @property
    def key(self) -> str:
        """What a corpus row names the snippet by: a command line whole, a block by its first line."""
        return self.source if self.kind == "shell" else self.source.splitlines()[0]


def seed_text(seed: str) -> str:
    return (SEEDS / f"{seed}.md").read_text(encoding="utf-8")


def fenced(seed: str) -> list[Snippet]:
    """The fenced blocks of ``seed``: shell blocks split into command lines (``\\`` continuations joined,
    comments and blank lines dropped), python and other blocks whole."""
    lines, out, i = seed_text(seed).splitlines(), [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while lines[j].strip() != "```":
            j += 1
        lang, body = m.group(1).lower(), "\n".join(lines[i + 1 : j]).strip("\n")
        if lang in SHELL_LANGS:
            out += [Snippet(seed, "shell", c) for c in shell_commands(body)]
        else:
            out.append(Snippet(seed, "python" if lang == "python" else "text", body))
        i = j + 1
    return out


def shell_commands(body: str) -> list[str]:
    joined = re.sub(r"\s*\\\n\s*", " ", body)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def has_fences(seed: str) -> bool:
    return any(FENCE.match(ln) for ln in seed_text(seed).splitlines())


def region(seed: str, start: str, end: str) -> str:
    """In a document without fences: the text from ``start`` (at the start of a line) to the first ``end``
    after it, inclusive."""
    text = "\n" + seed_text(seed)
    a = text.find("\n" + start)
    if a < 0:
        raise ValueError(f"seeds/{seed}.md has no line starting {start!r}")
    b = text.find(end, a)
    if b < 0:
        raise ValueError(f"seeds/{seed}.md has no {end!r} after {start!r}")
    return text[a + 1 : b + len(end)]
