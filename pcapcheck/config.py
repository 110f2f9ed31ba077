"""Analysis options, shared by the pipeline and the command line."""

from __future__ import annotations

from dataclasses import dataclass

KERNELS = ("6.1+", "pre-6.1")


@dataclass(frozen=True, slots=True)
class Options:
    kernel: str = "6.1+"  # which conntrack generation's verdict drives severity
    be_liberal: bool = False  # nf_conntrack_tcp_be_liberal=1: no window verdicts
    linger_ns: int = 120 * 10**9  # keep a closed conversation this long (packet time) for late packets
    linger_max: int = 4096  # ... but keep at most this many closed conversations (the oldest closed go first)
    linger_bytes: int = 12 * 2**20  # ... and at most about this much of their state (ConvState.held_bytes)
    idle_ns: int = 900 * 10**9  # finalize a conversation idle this long
    # conversations of only bare SYNs (connection attempts: a SYN flood, a scan) open at once: beyond this many
    # the oldest are finalized (a later packet of one resumes it under the same id, as part 2)
    attempts_max: int = 20_000
    timeline_head: int = 2000  # packets kept for the report: the first N ...
    timeline_tail: int = 2000  # ... the last N ...
    timeline_marked: int = 4000  # ... and up to N packets that carry a finding
    http: bool = True
