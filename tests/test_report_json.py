"""report.json (DESIGN 7): format keys, (input, id) order, determinism, bounded memory."""

from __future__ import annotations

import json
import sys

from pcapcheck import __version__
from pcapcheck.report.json_report import JsonReport
from tests.browser import samples as s

CONVERSATION_KEYS = {"id", "client", "server", "first_frame", "last_frame", "start_ns", "end_ns", "packets", "bytes",
                     "end", "findings", "http"}


def write(path, results, inputs=None, **kw):
    inputs = inputs if inputs is not None else [s.input_summary()]
    rep = JsonReport(path, **kw)
    for r in results:
        rep.conversation(r)
    rep.finish(s.totals_for(results, inputs))
    return path.read_bytes()


def test_document_keys_and_order(tmp_path):
    # finalization order is not id order: the file is sorted by (input, id)
    results = [s.xss(), s.plain(7, input_index=1), s.incident1(), s.plain(3, input_index=1), s.incident2(20)]
    data = write(tmp_path / "report.json", results,
                 [s.input_summary(0), s.input_summary(1, path="second.pcapng")])
    doc = json.loads(data)
    assert set(doc) == {"format", "pcapcheck", "inputs", "conversations", "findings"}
    assert doc["format"] == 1 and doc["pcapcheck"] == __version__
    assert [(c["input"], c["id"]) for c in doc["conversations"]] == [(0, 0), (0, 1), (0, 2), (1, 3), (1, 7)]
    for c in doc["conversations"]:
        assert set(c) >= CONVERSATION_KEYS
    assert [i["index"] for i in doc["inputs"]] == [0, 1]
    # capture-level findings say which input they belong to
    assert [(f["code"], f["input"]) for f in doc["findings"]] == [("capture.snaplen", 0), ("capture.snaplen", 1)]
    first = doc["conversations"][0]
    assert first["findings"][0]["code"] == "http.te.duplicate"
    assert first["http"][0]["response"]["status"] == 200


def _canonical(doc: dict) -> str:
    """json.dumps(doc, sort_keys=True, indent=1), but each conversation on one line (sorted keys)."""
    convs = doc["conversations"]
    text = json.dumps({**doc, "conversations": ["\x00"]}, sort_keys=True, indent=1)
    lines = ",\n".join("  " + json.dumps(c, sort_keys=True) for c in convs)
    return text.replace(json.dumps("\x00"), lines.lstrip(" ") if convs else "", 1) if convs else \
        json.dumps(doc, sort_keys=True, indent=1)


def test_bytes_are_canonical_json(tmp_path):
    """The streamed file is json.dumps(document, sort_keys=True, indent=1) with one line per conversation."""
    data = write(tmp_path / "report.json", [s.incident2(12), s.incident1(), s.xss()])
    text = data.decode("ascii")
    assert text == _canonical(json.loads(text))
    assert sum(1 for line in text.splitlines() if line.startswith('  {"bytes": ')) == 3  # one line each
    empty = write(tmp_path / "empty.json", []).decode("ascii")
    assert empty == json.dumps(json.loads(empty), sort_keys=True, indent=1)
    assert json.loads(empty)["conversations"] == []


def test_two_runs_identical_and_no_clock(tmp_path):
    a = write(tmp_path / "a.json", [s.incident1(), s.xss()])
    b = write(tmp_path / "b.json", [s.incident1(), s.xss()])
    assert a == b
    assert "timestamp" not in json.loads(a)
    c = json.loads(write(tmp_path / "c.json", [s.incident1()], timestamp="2024-05-01T12:00:00Z"))
    assert c["timestamp"] == "2024-05-01T12:00:00Z"


def test_attacker_bytes_become_escaped_text(tmp_path):
    data = write(tmp_path / "report.json", [s.xss()])
    assert data.isascii()
    doc = json.loads(data)
    resp = doc["conversations"][0]["http"][0]["response"]
    assert "\\x00" in resp["body_excerpt"] or "\x00" in resp["body_excerpt"]
    detail = doc["conversations"][0]["findings"][0]["detail"]
    assert detail["excerpt"].startswith("GET /<script>")  # bytes as escaped text, quoted as evidence


def test_memory_keeps_no_results(tmp_path, monkeypatch):
    """Each conversation is spooled to disk at once: the sink holds no reference to the result, and of where
    the lines are, at most records.CHUNK entries in memory (the others in sorted runs on disk)."""
    from pcapcheck.report import records

    monkeypatch.setattr(records, "CHUNK", 500)
    rep = JsonReport(tmp_path / "report.json")
    for i in range(3000):
        r = s.plain(3000 - i)
        before = sys.getrefcount(r)
        rep.conversation(r)
        assert sys.getrefcount(r) == before
    assert len(rep._index) == 3000 and rep._index.size == 32  # where each line is, packed: 32 bytes each
    assert rep._index.spilled == 3000 and not rep._index.buf  # six sorted runs of 500 on disk
    rep.finish(s.totals_for([], [s.input_summary(conversations=3000)]))
    doc = json.loads((tmp_path / "report.json").read_bytes())
    assert [c["id"] for c in doc["conversations"]] == list(range(1, 3001))
    assert not (tmp_path / "report.json.tmp").exists()


def test_same_bytes_without_sendfile(tmp_path, monkeypatch):
    """The spooled conversations are copied with sendfile(2) when long (``_BIG``), where it works, refused or
    absent, read and written; short ones are read with pread(2), or seek and read where it is absent."""
    results = [s.xss(), s.incident1(), s.incident2(20), s.plain(3)]
    fast = write(tmp_path / "fast.json", results)  # all short: pread
    monkeypatch.setattr("pcapcheck.report.json_report._BIG", 0)  # all long: sendfile
    kernel = write(tmp_path / "kernel.json", results)
    calls = []

    def refuse(*args):
        calls.append(args)
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr("os.sendfile", refuse)
    refused = write(tmp_path / "refused.json", results)
    monkeypatch.delattr("os.sendfile")
    absent = write(tmp_path / "absent.json", results)
    monkeypatch.undo()
    monkeypatch.delattr("os.pread")
    plain = write(tmp_path / "plain.json", results)
    assert len(calls) == 1  # refused once, then read and write for the rest
    assert fast == kernel == refused == absent == plain
    assert _canonical(json.loads(fast)) == fast.decode("ascii")
