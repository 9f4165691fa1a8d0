"""The repository's docs/ folder: every citation in the code resolves, and the device page matches the preset.

A citation is ``docs/<page>.md`` (a bare ``<page>.md`` naming one of the docs/ pages is found too,
and fails: the code cites ``docs/...``). It may carry sections: ``§3``, ``§2.5``, ``§1, §2.4``, ``5.3-5.4``, or the
bare-number form ``stpn.md 1.1``; or a quoted heading: ``design.md, "data flow of one Pong step"``.
Each must name an existing page and an existing heading.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, NamedTuple, Set, Tuple

import pytest

from stoxbar.devices import presets

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LEGACY = {"paper", "stpn", "peripherals-energy", "aihwkit", "design", "users", "style", "training-notes"}
REQUIRED = ("README", "paper", "stpn", "peripherals-energy", "aihwkit", "design", "device-physics",
            "energy-model", "training-notes", "users", "style")
SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "build", "dist", "node_modules", ".pytest_cache",
             ".hypothesis", ".mypy_cache", ".ruff_cache"}
SCANNED = (".py", ".md", ".toml")

_NUM = r"\d+(?:\.\d+)*"
_CITE = re.compile(
    r"(?:(?P<prefix>docs/)|(?<![\w/.-]))(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.md`?"
    rf"(?P<tail>(?:,?[ \t]*§[ \t]*{_NUM}|[ \t]{_NUM}(?![\w.]))"
    rf"(?:[ \t]*(?:,|/|-|–|and)[ \t]*(?:§[ \t]*)?{_NUM}(?![\w.]))*)?"
    r"(?P<quoted>,[ \t]*\"[^\"\n]+\")?"
)
_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t]*#*[ \t]*$")
_HEAD_NUM = re.compile(rf"^(?:§[ \t]*)?({_NUM})\.?(?:[ \t]|$)")


class Citation(NamedTuple):
    where: str  # file:line
    page: str  # page name without .md
    prefixed: bool  # written as docs/<page>.md
    sections: Tuple[str, ...]
    heading: str  # quoted heading text, or ""


def parse_citations(text: str, where: str, in_docs: bool = False) -> List[Citation]:
    """Citations of docs pages in ``text`` (see the module docstring for the accepted forms)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in _CITE.finditer(line):
            name, prefixed = m.group("name"), bool(m.group("prefix"))
            if not prefixed and not in_docs and name not in LEGACY:
                continue  # README.md, BENCHMARKS.md ...: not a docs citation
            if not prefixed and in_docs and not (DOCS / f"{name}.md").exists() and name not in LEGACY:
                continue  # a page of another project named in prose (e.g. a peer's README.md)
            sections = tuple(re.findall(_NUM, m.group("tail") or ""))
            quoted = (m.group("quoted") or "").split('"')[1] if m.group("quoted") else ""
            out.append(Citation(f"{where}:{lineno}", name, prefixed, sections, quoted))
    return out


def headings(page: Path) -> Tuple[Set[str], List[str]]:
    """(section numbers, lower-case heading texts) of a markdown page."""
    nums, texts = set(), []
    in_code = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        m = None if in_code else _HEADING.match(line)
        if m:
            texts.append(m.group(1).lower())
            n = _HEAD_NUM.match(m.group(1))
            if n:
                nums.add(n.group(1))
    return nums, texts


def _source_files() -> List[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        files += [Path(dirpath) / f for f in filenames if f.endswith(SCANNED)]
    files = [f for f in files if f != Path(__file__).resolve()]  # this file's examples are not citations
    return sorted(files)


def all_citations() -> List[Citation]:
    cites = []
    for path in _source_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        rel = path.relative_to(ROOT).as_posix()
        cites += parse_citations(text, rel, in_docs=rel.startswith("docs/"))
    return cites


def broken(cites: List[Citation]) -> List[str]:
    """Human-readable list of citations whose page or section does not exist."""
    cache: Dict[str, Tuple[Set[str], List[str]]] = {}
    bad = []
    for c in cites:
        page = DOCS / f"{c.page}.md"
        shown = f"{'docs/' if c.prefixed else ''}{c.page}.md"
        if not page.exists():
            bad.append(f"{c.where}: {shown}: no such page in docs/")
            continue
        nums, texts = cache.setdefault(c.page, headings(page))
        for s in c.sections:
            if s not in nums:
                bad.append(f"{c.where}: {shown} §{s}: no heading numbered {s} (has {sorted(nums)})")
        if c.heading and not any(c.heading.lower() in t for t in texts):
            bad.append(f"{c.where}: {shown} \"{c.heading}\": no such heading")
    return bad


def test_parser_reads_every_citation_form():
    text = "\n".join([
        "x (paper.md §1: 4.3 nW) y", "see docs/energy-model.md §7 and", "(stpn.md 1.1, Pong config)",
        "(peripherals-energy.md §1, §2.4)", "stpn.md 5.3-5.4; training-notes.md", "stpn.md 2 and 5;",
        'design.md, "data flow of one Pong step"', "README.md §2 is not ours", "`docs/aihwkit.md` §7.1",
        "docs/paper.md", "stpn.md 5.2 / 5.4 (a parenthesis in between ends the list)",
    ])
    got = [(c.page, c.prefixed, c.sections, c.heading) for c in parse_citations(text, "t")]
    assert got == [
        ("paper", False, ("1",), ""), ("energy-model", True, ("7",), ""), ("stpn", False, ("1.1",), ""),
        ("peripherals-energy", False, ("1", "2.4"), ""), ("stpn", False, ("5.3", "5.4"), ""),
        ("training-notes", False, (), ""), ("stpn", False, ("2", "5"), ""),
        ("design", False, (), "data flow of one Pong step"), ("aihwkit", True, ("7.1",), ""),
        ("paper", True, (), ""), ("stpn", False, ("5.2", "5.4"), ""),
    ]


def test_required_pages_exist_and_have_references():
    for name in REQUIRED:
        page = DOCS / f"{name}.md"
        assert page.exists(), f"docs/{name}.md is missing"
    for name in ("paper", "stpn", "peripherals-energy", "aihwkit", "device-physics", "energy-model"):
        _, texts = headings(DOCS / f"{name}.md")
        assert any("references" in t for t in texts), f"docs/{name}.md has no References section"


def test_every_citation_in_the_code_resolves():
    cites = all_citations()
    from_code = [c for c in cites if not c.where.startswith("docs/")]
    assert len(from_code) >= 50, f"found only {len(from_code)} citations: the scanner is broken"
    bad = broken(cites)
    assert not bad, "broken docs citations:\n" + "\n".join(bad)


def test_code_cites_docs_with_its_prefix():
    bare = [c for c in all_citations() if not c.prefixed and not c.where.startswith("docs/")]
    listing = "\n".join(f"{c.where}: {c.page}.md -> docs/{c.page}.md" for c in bare)
    assert not bare, f"{len(bare)} citations lack the docs/ prefix:\n{listing}"


def test_relative_links_in_docs_resolve():
    bad = []
    for page in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (page.parent / target).exists():
                bad.append(f"{page.name}: link to {target}")
    assert not bad, "\n".join(bad)


def test_device_physics_table_matches_the_sto_2024_preset():
    from dataclasses import fields

    dev = presets.sto_2024()
    meta = {f.name: f.metadata for f in fields(dev)}
    text = (DOCS / "device-physics.md").read_text(encoding="utf-8")
    section = text.split("## 8.", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*`(\w+)`\s*\|\s*([-+0-9.eE]+)\s*\|", section, flags=re.M)
    assert len(rows) >= 20, f"parameter table of device-physics.md §8 not found ({len(rows)} rows)"
    for name, shown in rows:
        assert name in meta, f"device-physics.md §8 lists {name!r}, not a field of STODevice"
        value = getattr(dev, name) * meta[name].get("scale", 1.0)
        assert float(shown) == pytest.approx(value, rel=2e-3), f"{name}: docs say {shown}, preset has {value:.6g}"
