"""Every finding code the source can emit is documented in docs/findings*."""

from __future__ import annotations

import re

from tests.conftest import ROOT

CODE = re.compile(r"""["'`]((?:capture|tcp|http|proto|conversation)\.[a-z0-9][a-z0-9.-]*[a-z0-9])["'`]""")


def test_every_emitted_code_is_documented() -> None:
    docs = (ROOT / "docs" / "findings.md").read_text() + "".join(
        p.read_text() for p in sorted((ROOT / "docs" / "findings").glob("*.md")))
    documented = set(re.findall(r"`((?:capture|tcp|http|proto|conversation)\.[a-z0-9.-]*[a-z0-9])`", docs))
    emitted: set[str] = set()
    for path in (ROOT / "pcapcheck").rglob("*.py"):
        if path.name in ("crosscheck.py",):  # tshark field names, not our codes
            continue
        emitted.update(CODE.findall(path.read_text()))
    # not codes: tshark field names, template names, code-family prefixes used for grouping
    emitted = {c for c in emitted if not c.startswith(("tcp.analysis", "http.request", "http.response"))
               and not c.endswith(".html") and c.count(".") >= 1
               and c not in ("http.chunk", "http.cl", "http.header", "http.te", "http.head")}
    missing = sorted(c for c in emitted if c not in documented)
    assert not missing, f"finding codes emitted but not documented in docs/findings*: {missing}"
