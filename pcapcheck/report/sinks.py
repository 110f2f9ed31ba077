"""Combining report sinks: the pipeline feeds one sink, the command line usually wants several."""

from __future__ import annotations

from typing import Any, Protocol

from pcapcheck.model import ConversationResult


class ReportSink(Protocol):
    def conversation(self, result: ConversationResult) -> None: ...

    def finish(self, totals: Any) -> Any: ...


class Tee:
    """Hands each conversation, then the totals, to every sink in order: ``Tee(JsonReport(p), HtmlReport(d))``."""

    def __init__(self, *sinks: ReportSink) -> None:
        self.sinks = sinks

    def conversation(self, result: ConversationResult) -> None:
        for s in self.sinks:
            s.conversation(result)

    def finish(self, totals: Any) -> list[Any]:
        return [s.finish(totals) for s in self.sinks]
