"""The command line: commands, exit codes, messages, stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pcapcheck.cli import main
from tests.conftest import FIXTURES, ROOT


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_analyze_writes_index_pages_and_json(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "analyze", str(FIXTURES / "incident1-te-duplicate.pcap"), "-o", str(tmp_path))
    assert code == 1  # errors found, default --fail-on error
    assert (tmp_path / "index.html").exists() and (tmp_path / "conv-0.html").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["format"] == 1 and report["conversations"][0]["id"] == 0
    assert "1 conversations" in out and "http.te.duplicate" in out and err == ""


def test_fail_on_never_and_clean_capture_exit_zero(capsys, tmp_path: Path) -> None:
    code, _, _ = run(capsys, "analyze", str(FIXTURES / "incident1-te-duplicate.pcap"), "-o", str(tmp_path),
                     "--fail-on", "never")
    assert code == 0
    code, _, _ = run(capsys, "analyze", str(FIXTURES / "tcp-normal-http.pcap"), "-o", str(tmp_path / "b"))
    assert code == 0


@pytest.mark.parametrize("name", ["bad-garbage.bin", "bad-empty.pcap"])
def test_unreadable_input_exits_3_with_one_line(capsys, tmp_path: Path, name: str) -> None:
    code, out, err = run(capsys, "analyze", str(FIXTURES / name), "-o", str(tmp_path))
    assert code == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in err


def test_missing_file_exits_3(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "summary", str(tmp_path / "nope.pcap"))
    assert code == 3 and "cannot open" in err


def test_truncated_capture_reports_offset_and_still_analyzes(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "analyze", str(FIXTURES / "bad-truncated-record.pcap"), "-o", str(tmp_path))
    assert code == 1
    assert "byte offset" in err and "frame" in err and "bad-truncated-record.pcap" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["conversations"], "frames before the cut must still be analyzed"


def test_usage_error_exits_2(capsys) -> None:
    code, _, err = run(capsys, "analyze", "x.pcap")  # missing -o
    assert code == 2 and "-o" in err


def test_help_has_an_example(capsys) -> None:
    code, out, _ = run(capsys, "analyze", "--help")
    assert code == 0 and "Example" in out


def test_summary_lists_conversations_with_wireshark_ids(capsys) -> None:
    code, out, _ = run(capsys, "summary", str(FIXTURES / "tcp-interleaved.pcap"))
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith(" 0 ")]
    assert [int(r[1]) for r in rows] == [0, 1, 2, 3, 4]
    assert "link types: Ethernet (1)" in out


def test_stdin_and_python_m(tmp_path: Path) -> None:
    data = (FIXTURES / "fmt-gzip.pcap.gz").read_bytes()
    p = subprocess.run([sys.executable, "-m", "pcapcheck", "summary", "-"], input=data, capture_output=True,
                       cwd=ROOT, check=False)
    assert p.returncode == 0, p.stderr
    assert b"(gzip)" in p.stdout and b"1 conversations" in p.stdout


def test_output_directory_used_again_holds_only_this_runs_pages(capsys, tmp_path: Path) -> None:
    # An earlier run's pages that this run does not write are removed (the index would not link them, but
    # someone opening conv-7.html would read another capture's report); other files are left alone.
    (tmp_path / "conv-7.html").write_text("an earlier run's page")
    (tmp_path / "in2-conv-0.html").write_text("an earlier run's page, third input")
    keep = ["notes.html", "conv-7.html.bak", "conv-x.html", "conv-07.html", "in0-conv-1.html", "report-old.json"]
    for name in keep:
        (tmp_path / name).write_text("not a page of pcapcheck's")
    (tmp_path / "conv-9.html").mkdir()  # not a regular file: left
    code, _, _ = run(capsys, "analyze", str(FIXTURES / "incident1-te-duplicate.pcap"), "-o", str(tmp_path),
                     "--fail-on", "never")
    assert code == 0
    pages = sorted(p.name for p in tmp_path.glob("*conv-*.html") if p.is_file() and p.name not in keep)
    assert pages == ["conv-0.html"]
    assert "http.te.duplicate" in (tmp_path / "conv-0.html").read_text()
    for name in keep:
        assert (tmp_path / name).read_text() == "not a page of pcapcheck's"
    assert (tmp_path / "conv-9.html").is_dir()


def test_summary_lists_each_part_of_a_resumed_conversation(capsys, tmp_path, monkeypatch) -> None:
    import pcapcheck.pipeline as pl
    from tests.test_report_pipeline import resumed_capture

    monkeypatch.setattr(pl, "CHECK_EVERY", 1)
    resumed_capture(tmp_path / "idle.pcap")
    code, out, _ = run(capsys, "summary", "-j", "1", str(tmp_path / "idle.pcap"))
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith(" 0 ")]
    assert [(r[1], r[-1]) for r in rows[:3]] == [("0", "1"), ("0/2", "45"), ("1", "6")]
