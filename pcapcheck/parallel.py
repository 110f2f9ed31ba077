"""``pcapcheck analyze`` on several cores: the conversations are sharded across processes.

Each of n processes reads every input in full and routes every packet through its own flow table, so the
conversation ids (Wireshark's ``tcp.stream``), port reuse and eviction come out the same in all of them; each
analyzes, renders and spools only the conversations whose id is k modulo n (``Analysis(shard=(k, n))``),
keeping a few bytes of state for the others (``pipeline.Foreign``). The parent is shard 0; the others are
forked children that write their own pages and send back their index summaries, their JSON spool and their
totals, which the parent merges. The output is the same bytes as a run in one process (a test checks this).

Why this split and not a reader feeding workers: routing a packet costs a few percent of analysing it, and
reading a file a second time from the page cache costs less than sending every packet to another process.

Sharding needs inputs that can be read more than once: regular files (gzip included). Standard input, pipes
and machines without ``fork`` run in one process.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import os
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Sequence
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
    # The shards' spool files (JSON, index) go to one directory of this run: whatever a failure leaves there
    # (a shard stopped between writing and sending them) is removed with it, at once on failure, else at exit
    # (report.json is written from the JSON spools after this returns, and deletes them).
    spools = tempfile.mkdtemp(prefix="pcapcheck-shards-")
    atexit.register(shutil.rmtree, spools, True)
    try:
        for k in range(1, jobs):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_shard, args=(k, jobs, options, list(paths), html, send, spools),
                               name=f"pcapcheck-shard-{k}", daemon=True)
            proc.start()
            send.close()
            children.append((proc, recv))
        html.workers = 0  # both cores are analysing: pages are rendered by the shard that owns them
        analysis = Analysis(options, Tee(html, js), progress=progress, shard=(0, jobs))
        html.seen = analysis.seen_total
        totals = analysis.run(list(paths))
        html.finish_pages()
        for k, (proc, recv) in enumerate(children, start=1):
            try:
                message = recv.recv()
            except EOFError:
                proc.join()
                raise RuntimeError(f"analysis shard {k} died (exit status {proc.exitcode})") from None
            proc.join()
            if message[0] == "error":
                raise RuntimeError(f"analysis shard {k} failed:\n{message[1]}")
            _, shard_totals, html_state, json_spool = message
            totals.absorb_shard(shard_totals)
            html.absorb(html_state)
            js.absorb(json_spool)
    except BaseException:
        shutil.rmtree(spools, ignore_errors=True)  # with the spools js took over: the run is lost
        raise
    finally:
        for proc, recv in children:
            if proc.is_alive():
                proc.terminate()
                proc.join()
            recv.close()
    return totals


def _shard(k: int, n: int, options: Options, paths: list[str], html: HtmlReport, conn: Any, spools: str) -> None:
    """A child process: analyze shard k of n, write its pages, send the rest to the parent (spool files in
    the directory ``spools``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    gc.freeze()  # the parent's objects stay out of collections: no copy-on-write of their pages
    js = JsonReport.shard_spool(spools)
    try:
        html.workers = 0
        analysis = Analysis(options, Tee(html, js), shard=(k, n))
        html.seen = analysis.seen_total
        totals = analysis.run(paths)
        html.finish_pages()
        html.seen = None  # a bound method of the analysis: not sent back
        message: tuple = ("ok", totals, html.state(spools), js.export())
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        js.close()
        message = ("error", traceback.format_exc())
    conn.send(message)
    conn.close()
