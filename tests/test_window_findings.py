"""tcp.out-of-window findings (pcapcheck.analyzers.window) from conntrack judgements."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from fixtures.builder import TcpConversation
from pcapcheck.analyzers.window import MAX_FINDINGS, WindowAnalyzer, generations
from pcapcheck.findings import Severity
from pcapcheck.tcp.window import ACCEPTED, Judgement
from tests.test_rst import analyze, established


class Pkt(NamedTuple):
    frame: int
    seq: int
    ack: int
    flags: int
    seglen: int


RULE_II = Judgement(
    "IGNORE", "INVALID", rule="II", rule_old="II", bound=1000, bound_old=1000, bytes_over=123456,
    bytes_over_old=123456, log="SEQ is under lower bound 1000 (already ACKed data retransmitted)",
    log_old="SEQ is under the lower bound (already ACKed data retransmitted)", td_end=200000, td_maxwin=64000)
RULE_I = Judgement(
    "INVALID", "INVALID", rule="I", rule_old="I", bound=5001, bound_old=5001, bytes_over=700, bytes_over_old=700,
    log="SEQ is over upper bound 5001 (over the window of the receiver)",
    log_old="SEQ is over the upper bound (over the window of the receiver)")
OLD_ONLY = Judgement("ACCEPT", "INVALID", rule=None, rule_old="I", bound_old=42, bytes_over_old=10,
                     log_old="SEQ is over the upper bound (over the window of the receiver)")


def one(j: Judgement, kernel: str = "6.1+", frame: int = 7):
    w = WindowAnalyzer(3, kernel=kernel)
    w.judged(1, Pkt(frame, 1000, 555, 0x10, 1448), j)
    out = w.finish()
    assert len(out) == 1
    return out[0]


def test_rule_ii_incident2_message_and_detail() -> None:
    f = one(RULE_II, frame=11)
    assert f.code == "tcp.out-of-window" and f.conversation == 3 and f.direction == "s2c"
    assert f.message == (
        "frame 11 (1448 bytes) is outside the receiver's window by conntrack's rules (rule II: SEQ is under the lower "
        "bound (already ACKed data retransmitted), 123456 bytes below): conntrack on kernels < 6.1 would mark it "
        "INVALID, so iptables NAT would skip it (6.1+: IGNORE, still NATed)")
    d = f.detail
    assert (d["rule"], d["verdict"], d["verdict_new"], d["verdict_old"]) == ("II", "IGNORE", "IGNORE", "INVALID")
    assert d["kernel"] == "both" and d["selected_kernel"] == ">=6.1"
    assert d["bytes_over"] == 123456 and d["bound"] == 1000
    assert d["log"] == "nf_ct_proto_6: SEQ is under lower bound 1000 (already ACKed data retransmitted)"
    assert d["log_old"].startswith("nf_ct_proto_6: SEQ is under the lower bound")
    assert (d["ack"], d["seq"], d["len"]) == (555, 1000, 1448)
    assert d["td_end"] == 200000
    assert "tcp_in_window" in f.rule


@pytest.mark.parametrize("j,kernel,severity", [
    (RULE_II, "6.1+", Severity.WARNING),  # IGNORE on the selected kernel
    (RULE_II, "pre-6.1", Severity.ERROR),  # INVALID on the selected kernel
    (RULE_I, "6.1+", Severity.ERROR),
    (RULE_I, "pre-6.1", Severity.ERROR),
    (OLD_ONLY, "6.1+", Severity.WARNING),  # INVALID only on the other generation
    (OLD_ONLY, "pre-6.1", Severity.ERROR),
])
def test_severity_follows_the_selected_kernel(j: Judgement, kernel: str, severity: Severity) -> None:
    f = one(j, kernel)
    assert f.severity == severity
    assert f.detail["verdict"] == (j.new if kernel == "6.1+" else j.old)


def test_generations() -> None:
    assert generations(RULE_I) == "both"
    assert generations(OLD_ONLY) == "<6.1"
    assert generations(Judgement("INVALID", "ACCEPT", rule="III")) == ">=6.1"
    f = one(OLD_ONLY)
    assert f.detail["kernel"] == "<6.1" and "6.1+: ACCEPT" in f.message


def test_rule_i_invalid_everywhere() -> None:
    f = one(RULE_I)
    assert "rule I: SEQ is over the upper bound" in f.message and "700 bytes over" in f.message
    assert "INVALID on every kernel" in f.message


def test_flags_rule_message() -> None:
    f = one(Judgement("INVALID", "INVALID", rule="flags", rule_old="flags", log="invalid tcp flag combination"))
    assert "invalid TCP flag combination" in f.message and f.severity == Severity.ERROR


def test_accepted_judgements_make_no_finding() -> None:
    w = WindowAnalyzer(0)
    w.judged(0, Pkt(1, 0, 0, 0x10, 0), ACCEPTED)
    assert w.finish() == [] and w.count == 0


def test_cap_and_summary_in_the_last_finding() -> None:
    w = WindowAnalyzer(0, kernel="pre-6.1")
    n = MAX_FINDINGS + 7
    for i in range(n):
        w.judged(0, Pkt(100 + i, i, 0, 0x10, 10), RULE_II)
    out = w.finish()
    assert len(out) == MAX_FINDINGS and w.count == n
    last = out[-1]
    assert last.detail["more"] == 7
    assert last.detail["more_frames"] == [100 + MAX_FINDINGS + i for i in range(7)]
    assert "7 more such segments" in last.message
    assert "more" not in out[0].detail


def test_capture_loss_downgrades() -> None:
    from pcapcheck.tcp.tracker import ACK_LOST_SEGMENT

    w = WindowAnalyzer(0)
    w.judged(0, Pkt(9, 0, 0, 0x10, 0), Judgement("INVALID", "INVALID", rule="III", bytes_over=1448), ACK_LOST_SEGMENT)
    f = w.finish()[0]
    assert f.severity == Severity.WARNING and f.detail["capture_loss"] is True
    assert "artifact of capture loss" in f.message


def test_capture_loss_is_sticky_for_bounds_i_and_iii() -> None:
    from pcapcheck.tcp.tracker import LOST_SEGMENT

    w = WindowAnalyzer(0)
    w.judged(0, Pkt(9, 0, 0, 0x10, 10), Judgement("INVALID", "INVALID", rule="III", bytes_over=10), LOST_SEGMENT)
    w.judged(0, Pkt(10, 0, 0, 0x10, 10), Judgement("INVALID", "INVALID", rule="III", bytes_over=10))
    w.judged(0, Pkt(11, 0, 0, 0x10, 10), RULE_II)
    a, b, c = w.finish()
    assert b.severity == Severity.WARNING and b.detail["capture_loss"]
    assert not c.detail["capture_loss"]


def test_unknown_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="pre-6.1"):
        WindowAnalyzer(0, kernel="5.10")


def test_real_conntrack_late_retransmission_is_rule_ii() -> None:
    """End to end with the real conntrack model: an old segment resent after > window bytes were ACKed."""
    conv = established()
    first = conv.send("c2s", b"a" * 1000, segment_size=1000)[0]
    for _ in range(12):
        conv.send("c2s", b"b" * 8192, segment_size=1448)
        conv.ack("s2c")
    late = conv.retransmit(first)
    r = analyze(conv, kernel="pre-6.1")
    f = next(x for x in r.window if x.frames[0] == late.frame)
    assert f.detail["rule"] == "II" and f.severity == Severity.ERROR
    assert f.detail["verdict_old"] == "INVALID" and f.detail["verdict_new"] == "IGNORE"


def test_normal_conversation_has_no_window_findings() -> None:
    conv = TcpConversation()
    conv.handshake()
    for _ in range(5):
        conv.send("c2s", b"q" * 4000)
        conv.ack("s2c")
        conv.send("s2c", b"r" * 9000)
        conv.ack("c2s")
    conv.close()
    assert analyze(conv).window == []
