"""Prompt texts: normalisation, validation, and AnySkill's prompt file format (no SQL here).

The prompt file (AnySkill's ``--text_file``) is YAML::

    texts:
      - text: jump forward
        weight: 1.0

``weight`` is a number >= 0 (default 1.0 when left out). Optional ``tags`` (a list of strings) and
``notes`` (a string) are this workbench's extensions; other keys are refused so typos surface.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyskill_tui.errors import UserError

#: Longest prompt accepted, in characters (after collapsing whitespace).
MAX_TEXT_LEN = 300
ENTRY_KEYS = ("text", "weight", "tags", "notes")


def clean_text(text: str) -> str:
    """The display form of a prompt: stripped, runs of whitespace collapsed to one space."""
    return " ".join(str(text).split())


def normalize_text(text: str) -> str:
    """The unique key of a prompt: :func:`clean_text`, lowercased."""
    return clean_text(text).lower()


def check_text(text: Any) -> str:
    """Validate a prompt and return its display form, or raise UserError (empty, too long, not text)."""
    if not isinstance(text, str):
        raise UserError(f"prompt must be text, got {type(text).__name__} {text!r}")
    cleaned = clean_text(text)
    if not cleaned:
        raise UserError("empty prompt: give the skill some words, e.g. 'jump forward'")
    if len(cleaned) > MAX_TEXT_LEN:
        raise UserError(f"prompt is {len(cleaned)} characters, over the limit of {MAX_TEXT_LEN}: {cleaned[:40]!r}...")
    return cleaned


def check_weight(weight: Any) -> float:
    """Validate a sampling weight (a finite number >= 0) and return it as float, or raise UserError."""
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise UserError(f"weight must be a number >= 0, got {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise UserError(f"weight must be a finite number >= 0, got {weight!r}")
    return value


def normalize_tags(tags: Iterable[Any]) -> list[str]:
    """Tags stripped and lowercased, empties dropped, duplicates removed (first order kept)."""
    out: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise UserError(f"tag must be text, got {tag!r}")
        t = clean_text(tag).lower()
        if t and t not in out:
            out.append(t)
    return out


@dataclass(frozen=True)
class PromptEntry:
    """One validated entry of a prompt file; ``index`` is 0-based, ``line`` 1-based (0 when unknown)."""

    text: str
    weight: float = 1.0
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    index: int = 0
    line: int = 0
    source: str = ""

    @property
    def where(self) -> str:
        """``file:line: texts[i]`` for messages."""
        loc = f"{self.source}:{self.line}" if self.line else self.source
        return f"{loc}: texts[{self.index}]" if loc else f"texts[{self.index}]"


def _yaml_error(source: str, exc: Exception) -> UserError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return UserError(f"{source}:{mark.line + 1}:{mark.column + 1}: malformed YAML: {problem}")
    return UserError(f"{source}: malformed YAML: {problem}")


def parse_texts(text: str, source: str = "<texts>") -> list[PromptEntry]:
    """Parse and validate a prompt file's content. Raises UserError naming the file, line and entry.

    Checks: well-formed YAML; a mapping with a ``texts`` list; every entry a mapping with a non-empty
    ``text`` of at most 300 characters and a numeric ``weight`` >= 0; no two entries with the same
    normalised text. (Duplicates against the library are checked by ``Library.import_texts``.)
    """
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None

    def at(node: Any) -> str:
        return f"{source}:{node.start_mark.line + 1}" if node is not None else source

    if data is None:
        raise UserError(f"{source}: empty file; expected a mapping with a `texts:` list")
    if not isinstance(data, dict):
        raise UserError(f"{at(root)}: expected a mapping with a `texts:` list, got {type(data).__name__}")
    if "texts" not in data:
        raise UserError(f"{source}: no `texts:` key (found: {', '.join(map(str, data)) or 'nothing'})")
    items = data["texts"]
    seq_node = next((v for k, v in root.value if getattr(k, "value", None) == "texts"), None)
    if not isinstance(items, list):
        raise UserError(f"{at(seq_node)}: `texts` must be a list of {{text, weight}}, got {items!r}")
    item_nodes = list(getattr(seq_node, "value", []) or [])

    entries: list[PromptEntry] = []
    seen: dict[str, PromptEntry] = {}
    for i, item in enumerate(items):
        node = item_nodes[i] if i < len(item_nodes) else None
        line = node.start_mark.line + 1 if node is not None else 0
        where = f"{source}:{line}: texts[{i}]" if line else f"{source}: texts[{i}]"
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a mapping like {{text: ..., weight: 1.0}}, got {item!r}")
        unknown = [str(k) for k in item if k not in ENTRY_KEYS]
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(ENTRY_KEYS)})")
        if "text" not in item:
            raise UserError(f"{where}: entry has no `text`")
        raw = item["text"]
        try:
            cleaned = check_text(raw)
            weight = check_weight(item.get("weight", 1.0))
            tags_raw = item.get("tags") or []
            if isinstance(tags_raw, str):
                tags_raw = tags_raw.split(",")
            if not isinstance(tags_raw, list):
                raise UserError(f"tags must be a list of strings, got {tags_raw!r}")
            tags = normalize_tags(tags_raw)
            notes = item.get("notes") or ""
            if not isinstance(notes, str):
                raise UserError(f"notes must be text, got {notes!r}")
        except UserError as exc:
            shown = f" ({raw!r})" if isinstance(raw, str) and raw.strip() else ""
            raise UserError(f"{where}{shown}: {exc.message}") from None
        entry = PromptEntry(cleaned, weight, tags, notes, index=i, line=line, source=source)
        key = normalize_text(cleaned)
        if key in seen:
            raise UserError(f"{where}: {cleaned!r} duplicates texts[{seen[key].index}] (line {seen[key].line})")
        seen[key] = entry
        entries.append(entry)
    return entries


def read_texts_file(path: Path | str) -> list[PromptEntry]:
    """Read and validate a prompt file (see :func:`parse_texts`)."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_texts(content, source=str(path))


def dump_texts(items: Sequence[tuple[str, float]]) -> str:
    """AnySkill's prompt file for ``(text, weight)`` pairs: ``texts:`` list of ``{text, weight}``."""
    import yaml

    doc = {"texts": [{"text": t, "weight": float(w)} for t, w in items]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
