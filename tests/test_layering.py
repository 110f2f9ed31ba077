"""DESIGN.md section 1: each stage imports only the stages before it.

Only capture/decode import dpkt, only cli imports click, only the HTML renderer imports
jinja2; analyzers are sans-IO (no dpkt, click, jinja2, files or clocks).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "pcapcheck"

ALLOWED_EXTERNAL = {
    "dpkt": {"pcapcheck.capture", "pcapcheck.decode"},
    "click": {"pcapcheck.cli", "pcapcheck.cli_check"},
    "jinja2": {"pcapcheck.report.html_report"},
}
# Modules an analyzer or the TCP layer must not import (IO, clocks, presentation).
SANS_IO_FORBIDDEN = {"dpkt", "click", "jinja2", "time", "datetime", "os", "io", "socket", "subprocess", "pathlib"}
# stage order: a module may import only stages at or before its own
STAGES = [
    ("pcapcheck.findings", 0), ("pcapcheck.seq", 0), ("pcapcheck.config", 0), ("pcapcheck.tombstones", 0),
    ("pcapcheck.frozen", 0),
    ("pcapcheck.capture", 1), ("pcapcheck.decode", 2), ("pcapcheck.flows", 3),
    ("pcapcheck.tcp", 4), ("pcapcheck.http", 5), ("pcapcheck.analyzers", 6), ("pcapcheck.model", 7),
    ("pcapcheck.pipeline", 8), ("pcapcheck.report", 9), ("pcapcheck.crosscheck", 9), ("pcapcheck.check", 9), ("pcapcheck.parallel", 9),
    ("pcapcheck.cli", 10), ("pcapcheck.cli_check", 10), ("pcapcheck.__main__", 11), ("pcapcheck", 0),
]


def stage(mod: str) -> int:
    for prefix, n in STAGES:
        if mod == prefix or mod.startswith(prefix + "."):
            return n
    raise AssertionError(f"module {mod} has no stage in tests/test_layering.py: add it")


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("mod,path", list(modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_imports_follow_the_pipeline(mod: str, path: Path) -> None:
    for imp in imports(path):
        top = imp.split(".")[0]
        if top in ALLOWED_EXTERNAL:
            assert mod in ALLOWED_EXTERNAL[top], f"{mod} imports {top}: only {ALLOWED_EXTERNAL[top]} may"
        if imp.startswith("pcapcheck.") and mod != "pcapcheck":
            assert stage(imp) <= stage(mod), f"{mod} (stage {stage(mod)}) imports later stage {imp}"
        if mod.startswith(("pcapcheck.analyzers", "pcapcheck.http", "pcapcheck.tcp", "pcapcheck.seq")):
            assert top not in SANS_IO_FORBIDDEN, f"{mod} is sans-IO but imports {top}"
