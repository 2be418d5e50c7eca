"""The project's Markdown never sends a reader outside the repository, nor to a place that is
not there: every relative link reaches a file of the repository (and, with ``#anchor``, one of
its headings, by GitHub's anchor rules), and no link leaves it (no ``../`` past the root, no
absolute path, no other scheme, no web address unless it is on the allow-list below)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]

ALLOWED_WEB_PREFIXES: tuple[str, ...] = ()
"""Public project sites a doc may link to (``https://kafka.apache.org/``, say). None today: the
docs stand on their own. Add a prefix here, deliberately, to allow one."""

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'(][^)]*)?\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HTML_TARGET = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']*)["']""", re.I)
_WEB = re.compile(r"\b(?:https?://|www\.)[^\s)<>\]\"'`]+", re.I)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']""", re.I)
_OUTSIDE_DESIGN = re.compile(r"\.\./shared/|/work/shared|\bDESIGN\.md\b")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a fenced block's lines become empty)."""
    lines, fence = [], None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def _prose(text: str) -> str:
    """The text a reader can click in: no fenced blocks, no code spans."""
    return _CODE_SPAN.sub(" ", "\n".join(_prose_lines(text)))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text in lower case, punctuation removed
    (letters, digits, '-', '_' and spaces stay), each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LNM")
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every ``#anchor`` a Markdown file offers: its headings (duplicates numbered -1, -2, ...
    as GitHub does) and explicit ``<a id=…>``/``<a name=…>`` anchors."""
    lines = _prose_lines(text)
    found: set[str] = set(_HTML_ANCHOR.findall("\n".join(lines)))
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        atx = _ATX.match(line)
        if atx:
            heading = atx.group(2) or ""
        elif (
            i + 1 < len(lines)
            and _SETEXT.match(lines[i + 1])
            and line.strip()
            and not line.lstrip().startswith(("|", "-", "*", ">"))
        ):
            heading = line
        else:
            continue
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def link_targets(text: str) -> list[str]:
    """Every link target a reader can follow: inline links and images, reference definitions,
    HTML href/src, and web addresses written out (GitHub links those too)."""
    prose = _prose(text)
    targets = [*_INLINE_LINK.findall(prose), *_REFERENCE.findall(prose)]
    targets += _HTML_TARGET.findall(prose)
    written = _WEB.findall(_INLINE_LINK.sub(" ", _REFERENCE.sub(" ", prose)))
    bare = [t.rstrip(".,:;!?*_~") for t in written]  # GitHub leaves trailing punctuation out
    return targets + [t for t in bare if t not in targets]


def problems(doc: Path, root: Path) -> list[str]:
    """What is wrong with the links of ``doc``, one sentence each (empty: nothing)."""
    name = doc.relative_to(root)
    text = doc.read_text()
    out = []
    for target in link_targets(text):
        if not target:
            out.append(f"{name}: an empty link")
            continue
        if _SCHEME.match(target) or target.lower().startswith("www."):
            web = target.lower().startswith(("http://", "https://", "www."))
            if not (web and target.startswith(ALLOWED_WEB_PREFIXES)):
                out.append(f"{name}: {target} leaves the repository (not on the allow-list)")
            continue
        path_part, _, anchor = target.partition("#")
        path_part = unquote(path_part.split("?", 1)[0])
        if path_part.startswith(("/", "\\", "~")):
            out.append(f"{name}: {target} is an absolute path; link relative to the file")
            continue
        resolved = (doc.parent / path_part).resolve() if path_part else doc.resolve()
        if not resolved.is_relative_to(root.resolve()):
            out.append(f"{name}: {target} leads outside the repository")
            continue
        if not resolved.exists():
            out.append(f"{name}: {target}: there is no {resolved.relative_to(root.resolve())}")
            continue
        if anchor:
            if resolved.suffix.lower() != ".md" or not resolved.is_file():
                out.append(f"{name}: {target}: an anchor into a file that is not Markdown")
            elif unquote(anchor).lower() not in anchors(resolved.read_text()):
                out.append(f"{name}: {target}: no heading gives #{anchor}")
    return out


def test_the_checked_files_are_the_project_docs() -> None:
    names = {str(doc.relative_to(ROOT)) for doc in DOCS}
    assert {"README.md", "docs/design.md", "docs/configuration.md", "bench/README.md"} <= names
    assert all(doc.is_file() for doc in DOCS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_link_stays_in_the_repository_and_reaches_its_target(doc: Path) -> None:
    assert problems(doc, ROOT) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_no_doc_points_at_a_design_outside_the_repository(doc: Path) -> None:
    named = [m.group(0) for m in _OUTSIDE_DESIGN.finditer(doc.read_text())]
    assert named == [], f"{doc.relative_to(ROOT)} names {named}: the design is docs/design.md"


def test_the_readme_links_each_doc() -> None:
    readme = link_targets((ROOT / "README.md").read_text())
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in readme, f"README.md does not link docs/{doc.name}"


def test_github_anchors() -> None:
    assert slug("One machine: `smtp-discovery up`") == "one-machine-smtp-discovery-up"
    assert slug("SMTP ingest (`smtp-discovery ingest`)") == "smtp-ingest-smtp-discovery-ingest"
    assert slug("Try it: the demo") == "try-it-the-demo"
    assert slug("The repository's folders") == "the-repositorys-folders"
    assert slug("Links: [here](x.md) and *there*") == "links-here-and-there"
    assert anchors("# A\n\n## A\n\nB\n---\n") == {"a", "a-1", "b"}


def test_the_checker_finds_every_kind_of_bad_link(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "DESIGN.md").write_text("# Design\n")
    (root / "docs" / "other.md").write_text("# Other\n\n## A section: `code`\n")
    doc = root / "docs" / "page.md"
    doc.write_text(
        "# Page\n\n## Here\n\n"
        "Good: [other](other.md), [section](other.md#a-section-code), [here](#here),\n"
        "[up and back](../docs/other.md), ![img](other.md) and `[code](nowhere.md)`.\n\n"
        "```\n[fenced](nowhere.md) https://example.org/in-code\n```\n\n"
        "Bad: [missing](missing.md), [anchor](other.md#nope), [self](#nope),\n"
        "[escape](../../shared/DESIGN.md), [absolute](/work/shared/DESIGN.md),\n"
        "[web](https://example.org/design), [file](file:///etc/passwd), <https://example.net>,\n"
        "a bare https://example.com/x, and [ref][r].\n\n"
        "[r]: http://example.org/ref\n"
    )
    found = problems(doc, root)
    text = "\n".join(found)
    for bad in (
        "missing.md",
        "other.md#nope",
        ": #nope",
        "../../shared/DESIGN.md leads outside",
        "/work/shared/DESIGN.md is an absolute path",
        "https://example.org/design leaves",
        "file:///etc/passwd leaves",
        "https://example.net leaves",
        "https://example.com/x leaves",
        "http://example.org/ref leaves",
    ):
        assert bad in text, f"not reported: {bad}\n{text}"
    assert len(found) == 10, text
    assert "nowhere" not in text and "in-code" not in text
