"""Sphinx configuration for the rxpipe documentation site.

Stack: Sphinx + furo + MyST (Markdown pages), autodoc + napoleon (Google-style docstrings).
Built offline and warning-free: ``make docs`` runs ``sphinx-build -W --keep-going``.
No intersphinx, because the build must not need the network.

To add a page: create ``docs/<name>.md`` and add ``<name>`` to the toctree in ``index.md``.
To document another module: add one ``.. automodule:: rxpipe.<module>`` line to ``api.md``.
Benchmark tables: any ``docs/results/*.md`` (except ``README.md``) is included in
``benchmarks.md`` automatically, in file-name order (see ``_include_results`` below).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# The docs venv installs rxpipe in editable mode; this also lets a bare checkout build.
sys.path.insert(0, str(ROOT))

import rxpipe  # noqa: E402

# -- Project -------------------------------------------------------------------------------
project = "rxpipe"
author = "rxpipe developers"
copyright = "rxpipe developers"
release = rxpipe.__version__
version = ".".join(release.split(".")[:2])

# -- General -------------------------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# results/ holds generated fragments; they are pulled into benchmarks.md, not pages of their own.
exclude_patterns = ["_build", "results", "results/**", "Thumbs.db", ".DS_Store"]
nitpicky = False
language = "en"

# -- MyST ----------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist"]
# Headings up to ### get anchors, so [text](#some-heading) and [text](page.md#heading) work.
myst_heading_anchors = 3

# -- autodoc + napoleon --------------------------------------------------------------------
# Every ``.. automodule::`` in api.md gets these, so adding a module there is one line.
# "bysource" follows a module's ``__all__`` where it has one, the source order otherwise.
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False


def _drop_protocol_signature(
    app: Any,
    what: str,
    name: str,
    obj: object,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    """Hide the meaningless ``(*args, **kwargs)`` that Protocol classes inherit."""
    if what in ("class", "exception") and signature == "(*args, **kwargs)":
        return "", return_annotation
    return None


# -- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"rxpipe {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# -- Benchmark tables ----------------------------------------------------------------------
RESULTS = DOCS / "results"
RESULTS_MARKER = "<!-- rxpipe:results -->"
RESULTS_PAGE = "benchmarks"


def _result_tables() -> list[Path]:
    """The generated tables, in file-name order (``README.md`` describes the folder)."""
    return sorted(p for p in RESULTS.glob("*.md") if p.name != "README.md")


def _include_results(app: Any, docname: str, source: list[str]) -> None:
    """Replace the marker line in benchmarks.md by one MyST ``{include}`` per table.

    The include directive records each table as a dependency, so an edited table rebuilds
    the page; ``_always_reread_results`` covers tables that appear or disappear.
    """
    if docname != RESULTS_PAGE or RESULTS_MARKER not in source[0]:
        return
    tables = _result_tables()
    if tables:
        # :relative-images: lets a table file show a plot saved next to it (results/x.png).
        blocks = [f"```{{include}} results/{p.name}\n:relative-images:\n```" for p in tables]
        text = "\n\n".join(blocks)
    else:
        text = (
            'No results yet: run `make bench BENCH_ARGS="--out docs/results"`, which '
            "writes its tables to `docs/results/`, then rebuild the docs."
        )
    source[0] = source[0].replace(RESULTS_MARKER, text)


def _always_reread_results(
    app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]
) -> list[str]:
    """Re-read benchmarks.md on every build: tables may have been added or removed."""
    return [RESULTS_PAGE] if RESULTS_PAGE in env.found_docs else []


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _drop_protocol_signature)
    app.connect("source-read", _include_results)
    app.connect("env-get-outdated", _always_reread_results)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
