"""Every ```python block in the docs and the README runs, as written.

Each block is one test, named by file and line (``docs/index.md:12``), and runs in a fresh
namespace (``__name__ == "__main__"``, so an ``if __name__ == "__main__":`` guard runs too) with
a temporary working directory. A block is compiled against its Markdown file with its real
line numbers, so a traceback points at the failing line of the page, and the failure carries
a note naming the block.

Only fences whose info string is exactly ``python`` run; ``text``, ``pycon``, ``sh``, MyST
directives (```{code-block} python``) and anything else are shown, not run. Blocks do not
share state: each one imports what it uses.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import CodeType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# _build is Sphinx output; results/ holds generated benchmark tables.
SKIPPED_DIRS = frozenset({"_build", "results"})

# CommonMark fences: three or more backticks or tildes; a backtick fence's info string has
# no backtick (otherwise the line is inline code).
_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    source: str

    @property
    def where(self) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown.as_posix()}:{self.line}"


def extract_python_blocks(text: str) -> list[tuple[int, str]]:
    """Return ``(fence_line, source)`` for each ```python block of a Markdown text.

    Fences nest the CommonMark way: a block opened by four backticks is closed only by four
    or more, so a ```python example shown inside a ````markdown block is not run. An indented
    fence (in a list item) has that indentation removed from its lines. An unclosed fence
    runs to the end of the text, as in CommonMark.
    """
    blocks: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None or (m["fence"][0] == "`" and "`" in m["info"]):
            i += 1
            continue
        start, indent, fence = i + 1, len(m["indent"]), m["fence"]
        info = m["info"].split()
        body: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            stripped = line.lstrip(" ")
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]).strip():
                break
            # Remove up to the fence's indentation, never more.
            body.append(line[min(indent, len(line) - len(stripped)) :])
            i += 1
        i += 1  # past the closing fence
        if info and info[0] == "python":
            blocks.append((start, "\n".join(body) + "\n"))
    return blocks


def _markdown_files() -> list[Path]:
    files = [
        p for p in sorted(DOCS.rglob("*.md")) if not SKIPPED_DIRS & set(p.relative_to(DOCS).parts)
    ]
    readme = ROOT / "README.md"
    if readme.exists():
        files.append(readme)
    return files


def _collect() -> list[Block]:
    return [
        Block(path, line, source)
        for path in _markdown_files()
        for line, source in extract_python_blocks(path.read_text(encoding="utf-8"))
    ]


BLOCKS = _collect()


def test_examples_are_collected() -> None:
    # Guards the collector itself: a parser that finds nothing would make every page "pass".
    assert BLOCKS, "no ```python block found in docs/ or README.md"


def _shift_lines(code: CodeType, delta: int) -> CodeType:
    """Move a code object (and the functions defined in it) down by ``delta`` lines.

    Line tables are relative to ``co_firstlineno``, so this makes tracebacks name the
    Markdown file's own lines, and pytest shows the block rather than the whole page above it
    (which padding the source with blank lines would do).
    """
    consts = tuple(_shift_lines(c, delta) if isinstance(c, CodeType) else c for c in code.co_consts)
    return code.replace(co_firstlineno=code.co_firstlineno + delta, co_consts=consts)


def run_block(block: Block) -> None:
    """Run one block in a fresh namespace; an error gets a note naming the block."""
    __tracebackhide__ = True  # pytest: show the block's frame, not this helper's
    namespace: dict[str, object] = {"__name__": "__main__"}
    try:
        try:
            code = compile(block.source, str(block.path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            # Line 1 of the block is the line after its opening fence.
            exc.lineno = (exc.lineno or 1) + block.line
            if exc.end_lineno is not None:
                exc.end_lineno += block.line
            raise
        exec(_shift_lines(code, block.line), namespace)
    except Exception as exc:
        exc.add_note(f"in the ```python block at {block.where}")
        raise


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_doc_example_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    __tracebackhide__ = True
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    run_block(block)


# -- the collector's own tests ------------------------------------------------------------


def test_extract_runs_only_python_fences() -> None:
    text = (
        "intro\n"  # 1
        "```python\n"  # 2
        "x = 1\n"
        "```\n"
        "```text\n"  # 5
        "not run\n"
        "```\n"
        "```pycon\n"  # 8
        ">>> 1\n"
        "```\n"
        "```{code-block} python\n"  # 11
        "not run\n"
        "```\n"
        "~~~python title\n"  # 14
        "y = 2\n"
        "~~~\n"
        "```\n"  # 17
        "no language\n"
        "```\n"
    )
    assert extract_python_blocks(text) == [(2, "x = 1\n"), (14, "y = 2\n")]


def test_extract_respects_nested_and_indented_fences() -> None:
    text = (
        "````markdown\n"  # 1
        "```python\n"
        "not run: shown inside a longer fence\n"
        "```\n"
        "````\n"
        "- a list item:\n"  # 6
        "\n"
        "  ```python\n"  # 8
        "  if True:\n"
        "      z = 3\n"
        "  ```\n"
        "inline ```python``` is not a fence\n"
    )
    assert extract_python_blocks(text) == [(8, "if True:\n    z = 3\n")]


def test_blocks_do_not_share_a_namespace(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```python\nshared = 1\n```\n\n```python\nprint(shared)\n```\n")
    first, second = (
        Block(page, line, src) for line, src in extract_python_blocks(page.read_text())
    )
    run_block(first)
    with pytest.raises(NameError, match="shared"):
        run_block(second)


def test_syntax_error_points_at_the_markdown_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("text\n\n```python\nx = 1\nx = = 2\n```\n")
    [(line, source)] = extract_python_blocks(page.read_text())
    with pytest.raises(SyntaxError) as info:
        run_block(Block(page, line, source))
    assert (info.value.filename, info.value.lineno) == (str(page), 5)


def test_failure_points_at_the_markdown_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n"  # 1
        "\n"
        "```python\n"  # 3
        "def f():\n"
        "    raise RuntimeError('boom')\n"  # 5
        "\n"
        "f()\n"  # 7
        "```\n"
    )
    [(line, source)] = extract_python_blocks(page.read_text())
    block = Block(page, line, source)
    with pytest.raises(RuntimeError, match="boom") as info:
        run_block(block)
    assert info.value.__notes__ == [f"in the ```python block at {block.where}"]
    frames = traceback.extract_tb(info.value.__traceback__)
    assert [(f.filename, f.lineno) for f in frames if f.filename == str(page)] == [
        (str(page), 7),
        (str(page), 5),
    ]
