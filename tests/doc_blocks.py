"""The shell commands a doc shows, read so that a test can run them as written.

A doc's ```` ```bash ```` blocks are split into command lines: comment-only lines are
left out, a line ending in ``\\`` is joined with the next, and variable assignments
(``SRC=...``, ``export NAME=...``) are set aside, because the test supplies those
variables itself (its own engines, paths and secrets). Everything else is kept
character for character, trailing comments included, for bash to run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ASSIGNMENT = re.compile(r"^(?:export )?([A-Z_][A-Z0-9_]*)=")
BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


@dataclass(frozen=True)
class Block:
    """One ``bash`` block: its command lines and the variables it assigns."""

    commands: list[str]
    assigned: list[str]


def section_text(text: str, section: str | None) -> str:
    """The part of ``text`` under the heading ``section`` (e.g. ``"## The playbook"``),
    up to the next heading of the same level; all of it when ``section`` is None."""
    if section is None:
        return text
    start = text.find(section)
    if start < 0:
        raise AssertionError(f"no heading {section!r} in the doc")
    level = section.split(" ", 1)[0]
    body = text[start + len(section) :]
    end = body.find(f"\n{level} ")
    return section + (body if end < 0 else body[:end])


def _logical_lines(block: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in block.splitlines():
        line = raw.strip()
        if pending:
            line = f"{pending} {line}"
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        pending = ""
        lines.append(line)
    if pending:
        lines.append(pending)
    return lines


def read_blocks(doc: Path, section: str | None = None) -> list[Block]:
    """Every ``bash`` block of ``doc`` (under ``section`` when given), in order."""
    blocks = []
    for body in BLOCK.findall(section_text(doc.read_text(), section)):
        commands, assigned = [], []
        for line in _logical_lines(body):
            if not line or line.startswith("#"):
                continue
            match = ASSIGNMENT.match(line)
            if match:
                assigned.append(match.group(1))
            else:
                commands.append(line)
        blocks.append(Block(commands=commands, assigned=assigned))
    return blocks


def bash_blocks(doc: Path, section: str | None = None) -> list[list[str]]:
    """The command lines of each ``bash`` block of ``doc`` (under ``section`` when
    given), variable assignments and comment-only lines left out."""
    return [block.commands for block in read_blocks(doc, section)]
