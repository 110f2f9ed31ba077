"""``pcapcheck analyze`` on several cores: the conversations are sharded across processes.

Each of n processes reads every input in full and routes every packet through its own flow table, so the
conversation ids (Wireshark's ``tcp.stream``), port reuse and eviction come out the same in all of them; each
analyzes, renders and spools only the conversations whose id is k modulo n (``Analysis(shard=(k, n))``),
keeping a few bytes of state for the others (``pipeline.Foreign``). The parent is shard 0; the others are
forked children that write their own pages, index rows and JSON, each file followed by its packed records of
where each conversation lies in it, and send back their totals and where those records start; the parent
merges them. The output is the same bytes as a run in one process (a test
checks this).

A child's spooled JSON and index summaries go to two files the parent opened, without a name, just before
forking it: nothing is left on disk however either process ends (even killed), and no name is shared.

Why this split and not a reader feeding workers: routing a packet costs a few percent of analysing it, and
reading a file a second time from the page cache costs less than sending every packet to another process.

Sharding needs inputs that can be read more than once: regular files (gzip included). Standard input, pipes
and machines without ``fork`` run in one process.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pcapcheck.config import Options
from pcapcheck.pipeline import Analysis, Totals
from pcapcheck.report.html_report import HtmlReport
from pcapcheck.report.json_report import JsonReport
from pcapcheck.report.sinks import Tee

MAX_DEFAULT_JOBS = 2  # each process holds its own interpreter (~35 MiB): more would break the memory bound


def default_jobs() -> int:
    """The processes to use by default: the cores this process may run on, at most MAX_DEFAULT_JOBS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_JOBS))


def shardable(paths: Sequence[str]) -> bool:
    """Whether every input can be read once per process: regular files, and fork() is available."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    return all(p != "-" and os.path.isfile(p) for p in paths)


def analyze(options: Options, paths: Sequence[str], html: HtmlReport, js: JsonReport, *, jobs: int,
            progress: Callable[[int, int | None], None] | None = None) -> Totals:
    """Run the analysis into ``html`` and ``js`` with up to ``jobs`` processes; return the run's totals.

    On return every page is written and ``html``/``js`` hold all conversations: the caller writes the index
    and report.json (``html.finish(totals)``, ``js.finish(totals)``) as after a single-process run.
    """
    if jobs <= 1 or not shardable(paths):
        analysis = Analysis(options, Tee(html, js), progress=progress)
        html.seen = analysis.seen_total
        totals = analysis.run(list(paths))
        html.finish_pages()
        return totals
    ctx = multiprocessing.get_context("fork")
    children = []
    files: list[Any] = []  # every shard's two spool files, closed here unless js took them over
    try:
        for k in range(1, jobs):
            json_spool = tempfile.TemporaryFile(prefix="pcapcheck-json-shard-")  # noqa: SIM115 (closed below)
            files.append(json_spool)
            index_spool = tempfile.TemporaryFile(prefix="pcapcheck-index-shard-")  # noqa: SIM115 (closed below)
            files.append(index_spool)
            proc, recv = _start(ctx, k, _shard, (k, jobs, options, list(paths), html), (json_spool, index_spool))
            children.append((proc, recv, json_spool, index_spool))
        html.workers = 0  # both cores are analysing: pages are rendered by the shard that owns them
        analysis = Analysis(options, Tee(html, js), progress=progress, shard=(0, jobs))
        html.seen = analysis.seen_total
        totals = analysis.run(list(paths))
        html.finish_pages()
        html.render_rows(len(totals.inputs) > 1)  # while the other shards render theirs
        for k, (proc, recv, json_spool, index_spool) in enumerate(children, start=1):
            _, shard_totals, html_state, json_index = _receive(k, proc, recv)
            totals.absorb_shard(shard_totals)
            html.absorb(index_spool, html_state)
            files.remove(index_spool)
            index_spool.close()
            files.remove(json_spool)  # js closes it
            js.absorb(json_spool, json_index)
    finally:
        _stop((proc, recv) for proc, recv, _, _ in children)
        for f in files:
            f.close()
    return totals


def _start(ctx: Any, k: int, target: Callable[..., None], args: tuple, more: tuple = ()) -> tuple[Any, Any]:
    """Fork shard k's process: ``target(*args, conn, *more)``, ``conn`` the end of a pipe it sends its one
    message on; returns (the process, the parent's end)."""
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, send, *more), name=f"pcapcheck-shard-{k}", daemon=True)
    proc.start()
    send.close()
    return proc, recv


def _stop(children: Iterable[tuple[Any, Any]]) -> None:
    """Stop the shard processes still running (a failed or interrupted run) and close their pipes."""
    for proc, recv in children:
        if proc.is_alive():
            proc.terminate()
            proc.join()
        recv.close()


def _receive(k: int, proc: Any, recv: Any) -> tuple:
    """Shard k's message, once it has ended: ("ok", totals, ...); its error or death raised here."""
    try:
        message = recv.recv()
    except EOFError:
        proc.join()
        raise RuntimeError(f"analysis shard {k} died (exit status {proc.exitcode})") from None
    proc.join()
    if message[0] == "error":
        raise RuntimeError(f"analysis shard {k} failed:\n{message[1]}")
    return message


def _shard(k: int, n: int, options: Options, paths: list[str], html: HtmlReport, conn: Any, json_spool: Any,
           index_spool: Any) -> None:
    """A child process: analyze shard k of n, write its pages, spool its JSON and index rows into the two files
    the parent opened for it, and send the parent the rest."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    gc.freeze()  # the parent's objects stay out of collections: no copy-on-write of their pages
    js = JsonReport.shard_spool(json_spool)
    try:
        html.workers = 0
        analysis = Analysis(options, Tee(html, js), shard=(k, n))
        html.seen = analysis.seen_total
        totals = analysis.run(paths)
        html.finish_pages()
        html.render_rows(len(totals.inputs) > 1)
        html.seen = None  # a bound method of the analysis: not sent back
        message: tuple = ("ok", totals, html.state(index_spool), js.export())
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        js.close()
        message = ("error", traceback.format_exc())
    conn.send(message)
    conn.close()


def collect(options: Options, paths: Sequence[str], sink: Any, *, jobs: int, export: Callable[[Any], Any],
            absorb: Callable[[Any, Any], None],
            progress: Callable[[int, int | None], None] | None = None) -> Totals:
    """Run the analysis into a plain ``sink`` with up to ``jobs`` processes; return the run's totals.

    For sinks that keep what they need in memory (``pcapcheck summary``'s lines): each child gets a forked
    copy of ``sink`` (as it is before the run) for its shard, and sends back ``export(its sink)``, which the
    parent hands to ``absorb(sink, exported)``. Conversations arrive in no particular order, as in one
    process (finalization order): a sink that prints sorts first.
    """
    if jobs <= 1 or not shardable(paths):
        return Analysis(options, sink, progress=progress).run(list(paths))
    ctx = multiprocessing.get_context("fork")
    children = []
    try:
        for k in range(1, jobs):
            children.append(_start(ctx, k, _collect_shard, (k, jobs, options, list(paths), sink, export)))
        totals = Analysis(options, sink, progress=progress, shard=(0, jobs)).run(list(paths))
        for k, (proc, recv) in enumerate(children, start=1):
            message = _receive(k, proc, recv)
            totals.absorb_shard(message[1])
            absorb(sink, message[2])
    finally:
        _stop(children)
    return totals


def _collect_shard(k: int, n: int, options: Options, paths: list[str], sink: Any, export: Callable[[Any], Any],
                   conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    gc.freeze()
    try:
        totals = Analysis(options, sink, shard=(k, n)).run(paths)
        message: tuple = ("ok", totals, export(sink))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        message = ("error", traceback.format_exc())
    conn.send(message)
    conn.close()
