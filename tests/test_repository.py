"""The repository stands alone: every document it mentions is in it.

A reader of a clone can open nothing outside it, so a link to a missing page,
a mention of a file it does not hold, or a reference to a sibling folder of the
checkout is a dead end. This test reads every text file git knows of (no
TensorFlow import, well under a second) and checks:

(a) relative markdown links and image links resolve (web links, ``mailto:``
    and pure anchors are skipped; ``#anchor`` is stripped);
(b) every file name ending in the markdown suffix exists, relative to the
    mentioning file, relative to the root, or as the name of a repository file;
(c) repository paths under ``docs``, and ``.py`` paths under ``examples``,
    ``benchmarks``, ``tests`` and ``bayesseg``, exist;
(d) no file names the design notes that live outside the repository.

The literals below are assembled from pieces (``<dot>``, ``<slash>``, string
concatenation) so that this file does not trip its own checks.
"""

from __future__ import annotations

import posixpath
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TEXT_SUFFIXES = {".md", ".py", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".sh"}
MD = "." + "md"
# Documents of the project's outer workspace, never part of the repository
# (spelt in lower case here so that a plain grep for them finds no source).
FORBIDDEN = tuple(name.upper() + MD for name in ("users", "design", "style")) + (".." + "/shared",)

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s)>\"'`]+")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target)
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_NAME = re.compile(r"[A-Za-z0-9_./-]*[A-Za-z0-9_-]" + re.escape(MD) + r"(?![A-Za-z0-9_])")
_REPO_PATH = re.compile(
    r"(?<![A-Za-z0-9_./-])((?:docs|examples|benchmarks|tests|bayesseg)/[A-Za-z0-9_./-]*[A-Za-z0-9_])"
)
_PLACEHOLDER_NEXT = set("*{<$[")


def _line(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace each match by spaces, keeping offsets and line numbers."""
    return pattern.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _without_code(text: str) -> str:
    """Markdown text with fenced blocks and inline code blanked (for links)."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return _blank("\n".join(out), _INLINE_CODE)


def _exists(path: str, files: set[str], dirs: set[str]) -> bool:
    path = posixpath.normpath(path)
    if path == ".." or path.startswith("../") or path.startswith("/"):
        return False  # outside the repository
    return path in files or path in dirs or path == "."


def find_problems(rel_path: str, text: str, files: set[str], dirs: set[str]) -> list[str]:
    """``path:line: ...`` for every reference in ``text`` that does not resolve.

    ``rel_path`` is the file's path from the repository root (posix);
    ``files``/``dirs`` are the repository's files and folders, likewise.
    """
    here = posixpath.dirname(rel_path)
    names = {posixpath.basename(f) for f in files}
    problems: list[str] = []

    def report(index: int, message: str) -> None:
        entry = f"{rel_path}:{_line(text, index)}: {message}"
        if entry not in problems:
            problems.append(entry)

    # (d) documents that live outside the repository
    for name in FORBIDDEN:
        for m in re.finditer(re.escape(name), text):
            report(m.start(), f"refers to {name!r}, which is outside the repository")

    # (a) markdown links and images
    if rel_path.endswith(MD):
        for m in _LINK.finditer(_without_code(text)):
            target = m.group(1)
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # web link, mailto:, anchor in the same page
            target = target.split("#", 1)[0].split("?", 1)[0]
            resolved = (
                target.lstrip("/") if target.startswith("/") else posixpath.join(here, target)
            )
            if not _exists(resolved, files, dirs):
                report(m.start(1), f"missing target {target!r} (markdown link)")

    plain = _blank(text, _URL)

    # (b) file names with the markdown suffix
    for m in _MD_NAME.finditer(plain):
        name = m.group(0)
        if posixpath.basename(name) in FORBIDDEN:
            continue  # reported under (d)
        if not (
            _exists(posixpath.join(here, name), files, dirs)
            or _exists(name.lstrip("/"), files, dirs)
            or posixpath.basename(name) in names
        ):
            report(m.start(), f"missing target {name!r} (document name)")

    # (c) repository paths
    for m in _REPO_PATH.finditer(plain):
        path = m.group(1)
        if plain[m.end() : m.end() + 1] in _PLACEHOLDER_NEXT:
            continue  # a pattern such as docs/figures/demo_*.png or tests/{name}.py
        if not (path.startswith("docs/") or path.endswith(".py")):
            continue
        if not _exists(path, files, dirs):
            report(m.start(1), f"missing target {path!r} (repository path)")
    return problems


def _repository_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (or no git): nothing to list")
    paths = {p.decode("utf-8") for p in out.split(b"\0") if p}
    # Deleted but not yet committed files are not there for a reader either.
    return sorted(p for p in paths if (ROOT / p).is_file())


def _read_text(path: Path) -> str | None:
    if path.suffix not in TEXT_SUFFIXES and path.suffix != "":
        return None
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _dirs_of(files: set[str]) -> set[str]:
    dirs = set()
    for f in files:
        d = posixpath.dirname(f)
        while d:
            dirs.add(d)
            d = posixpath.dirname(d)
    return dirs


def test_every_mentioned_document_is_in_the_repository():
    files = set(_repository_files())
    dirs = _dirs_of(files)
    problems, scanned = [], 0
    for rel in sorted(files):
        text = _read_text(ROOT / rel)
        if text is None:
            continue
        scanned += 1
        problems += find_problems(rel, text, files, dirs)
    assert scanned > 20, f"only {scanned} text files found: is this the repository root?"
    assert not problems, "references to documents the repository does not hold:\n" + "\n".join(
        problems
    )


def _craft(text: str) -> str:
    """Spell out ``<dot>`` and ``<slash>``: sample references that this file's scan skips."""
    return text.replace("<dot>", ".").replace("<slash>", "/")


FILES = {
    _craft(f)
    for f in (
        "README<dot>md",
        "docs<slash>imbalance<dot>md",
        "docs<slash>figures<slash>demo.png",
        "examples<slash>bias_init.py",
    )
}
README, IMBALANCE, MODULE = "README<dot>md", "docs<slash>imbalance<dot>md", "bayesseg<slash>x.py"


def _check(path: str, text: str) -> list[str]:
    return find_problems(_craft(path), _craft(text), FILES, _dirs_of(FILES))


@pytest.mark.parametrize(
    ("path", "text", "fragment"),
    [
        (README, "See [the notes](NOTES<dot>md) first.", "'NOTES<dot>md' (markdown link)"),
        (README, "See [guide](docs<slash>nope<dot>md#top).", "'docs<slash>nope<dot>md' (markdown"),
        (IMBALANCE, "![fig](figures<slash>gone.png)", "'figures<slash>gone.png' (markdown"),
        (IMBALANCE, "[up](../../outside<dot>md)", "'../../outside<dot>md' (markdown"),
        (MODULE, '"""As told in NOTES<dot>md."""', "'NOTES<dot>md' (document name)"),
        (MODULE, "# see docs<slash>missing<dot>md", "'docs<slash>missing<dot>md' (document"),
        (IMBALANCE, "Run `python examples<slash>gone.py`.", "'examples<slash>gone.py' (repository"),
        (IMBALANCE, "in docs<slash>nothing<slash>here", "'docs<slash>nothing<slash>here' (repo"),
        *[(README, f"as {name} says", "outside the repository") for name in FORBIDDEN],
        (README, "from ..<slash>shared/notes", "outside the repository"),
    ],
)
def test_checker_flags_dangling_references(path, text, fragment):
    problems = _check(path, text)
    assert any(_craft(fragment) in p for p in problems), problems
    assert all(
        p.startswith(f"{_craft(path)}:1: missing target ") or "outside" in p for p in problems
    )


def test_checker_reports_the_line():
    problems = _check(README, "# Title\n\nText.\nSee DESIGN<dot>md.\n")
    assert problems[0].startswith(_craft(README) + ":4: "), problems


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (README, "[imbalance](docs<slash>imbalance<dot>md#recipes) and [top](#bayesseg)"),
        (IMBALANCE, "![fig](figures<slash>demo.png) [readme](..<slash>README<dot>md)"),
        (IMBALANCE, "[web](https:<slash><slash>example.org/CONTRIBUTING<dot>md)"),
        (IMBALANCE, "[mail](mailto:someone@example.org)"),
        (IMBALANCE, "```python\nlayer = model.layers[0](x)\n```"),
        (IMBALANCE, "see imbalance<dot>md, README<dot>md and docs<slash>figures"),
        (MODULE, "run examples<slash>bias_init.py; write docs<slash>figures/demo_*.png"),
        (MODULE, 'path = "tests<slash>" + name; pattern = r"\\<dot>md$"'),
    ],
)
def test_checker_accepts_references_that_resolve(path, text):
    assert _check(path, text) == []


def test_the_readme_demo_tables_are_generated_from_the_committed_reports():
    """README's demo figures are rendered from docs/reports/*.json, never typed by hand."""
    import importlib.util

    path = ROOT / "benchmarks" / "readme_tables.py"
    spec = importlib.util.spec_from_file_location("readme_tables", path)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    rendered = tables.render()
    assert set(rendered) == {"lesion", "anomaly", "multiclass"}
    held = tables.blocks((ROOT / "README.md").read_text())
    for name, block in rendered.items():
        assert held.get(name) == block, (
            f"README's {name} table differs from docs/reports/{name}.json: run "
            "python benchmarks/readme_tables.py --write"
        )
