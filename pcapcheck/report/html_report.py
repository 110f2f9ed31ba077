"""The HTML report: ``index.html`` plus one self-contained page per conversation (DESIGN 7).

A sink: the pipeline calls ``conversation(result)`` as each conversation is finalized (finalization order,
not id order), then the caller calls ``finish(totals)``. A page is rendered at once, when the page policy
allows, and only a small ConversationSummary is kept for the index, so memory does not grow with the
timelines.

Page policy. Up to PAGE_LIMIT (2,000) conversations, every conversation gets a page. Beyond that, only
conversations with a finding of severity warning or worse, those asked for (``conversations``), or all of
them with ``pages="all"``. The total is unknown while conversations arrive, so a conversation that gets a page
only under the limit is not rendered at once: its result is pickled to a spool file (a fraction of a page's
cost) and rendered by ``finish`` when the run ended with at most PAGE_LIMIT conversations; as soon as the
count passes the limit, the spool is dropped. The count is ``seen()`` when given (conversations created so far,
which a sharded run knows in every shard) and otherwise the conversations received. The run ends with exactly
the policy's set of pages.

Links between pages never break. Previous/next on a page point to the neighbouring conversations' rows in
the index (``index.html#c<id>``), which always exist (the index lists every conversation, plus an
end-of-list anchor one past the last id); a page is linked from the index only when it exists.

An output directory can be used again. ``write_index`` removes the conversation pages an earlier run left
there that this run did not write (files named as ``views.page_name`` names them, nothing else), so the
directory holds exactly this run's report.

Rendering runs beside the analysis. Building a page costs about as much CPU as analysing its packets, and the
pipeline uses one core; so, when the machine has another core, pages are rendered by one forked worker
process fed through a bounded queue (the first pages are rendered in this process, so a small run never
pays for the fork). Output is the same bytes either way; ``finish`` waits for the worker and re-raises its
error, if any.

Only this module imports jinja2. One Environment per process; its compiled templates are cached, in memory
and between runs (``_TemplateCache``).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import gc
import hashlib
import itertools
import multiprocessing
import os
import pickle
import queue
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO

import jinja2
import markupsafe
from markupsafe import Markup

from pcapcheck.analyzers.http1 import KEEP_FIRST, KEEP_LAST
from pcapcheck.findings import Severity
from pcapcheck.http.model import HttpExchange, HttpMessage
from pcapcheck.model import ConversationResult, ConversationSummary
from pcapcheck.pipeline import fewer_collections
from pcapcheck.report import records, views
from pcapcheck.spool import Spool

PAGE_LIMIT = 2000
PAGES = ("auto", "all")
WORKER_AFTER = 8  # pages rendered in this process before a worker is started
WORKER_QUEUE = 32  # conversations waiting for the worker at most (back-pressure on the pipeline)
# ... and their pickled results' bytes at most, beyond one (a keep-alive connection's 2,000 exchanges pickle to
# about 4 MB: 32 of them waiting would be most of a run's memory)
WORKER_QUEUE_BYTES = 32 * 2**20

_ENV: jinja2.Environment | None = None
_PAGE_FILE = re.compile(r"(?:in[1-9][0-9]*-)?conv-(?:0|[1-9][0-9]*)(?:-part(?:[2-9]|[1-9][0-9]+))?\.html")  # page_name's


def _fast_escape() -> Callable[[Any], str]:
    """``markupsafe.escape`` with the same text, cheaper for the values pages are made of.

    A compiled template calls ``escape`` for every ``{{ }}`` (autoescape): about 2,000 times a conversation
    page, 22 times an index row. MarkupSafe 3 made ``escape`` a Python function that builds its result with
    ``Markup(...)``, whose ``__new__`` is Python too: two calls each time, 15% of a page's rendering. Here
    a str is escaped by the same C function (``markupsafe._escape_inner``, where it exists); an int's text
    (digits, "-") needs no escaping; a Markup (a macro's result) is safe as it is; anything else goes to
    ``markupsafe.escape``.

    The result of a str or an int is that text as a plain str, not a Markup: the compiled code only ever puts
    ``escape``'s result into output (yielded, or appended to a buffer that is joined), and jinja2 wraps every
    buffer in Markup once joined (a macro's result, a ``set``, ``filter`` or ``call`` block), so no escaped text
    is escaped again. Making a Markup copied each string (``str.__new__`` on a subclass): rendering a page took
    1.3 ms with it, 0.8 ms without.
    Checked against ``markupsafe.escape`` at start-up: on any difference in text, or without the C function,
    ``markupsafe.escape`` itself is used."""
    inner = getattr(markupsafe, "_escape_inner", None)
    if inner is None:
        return markupsafe.escape

    def escape(s: Any) -> str:
        kind = type(s)
        if kind is str:
            return inner(s)  # type: ignore[no-any-return]
        if kind is int:
            return str(s)
        if kind is Markup:  # a macro's result: already safe (markupsafe.escape would copy it into a new Markup)
            return s  # type: ignore[no-any-return]
        return markupsafe.escape(s)

    probes = ["", "plain", "1 < 2 & 'a' > \"b\" &amp;", "\x00\u212a\U0001f600", 0, -12, 2**70, True, 2.5, None,
              Markup("&lt; safe"), b"1 < 2"]
    same = all(isinstance(escape(p), str) and str(escape(p)) == str(markupsafe.escape(p)) for p in probes)
    return escape if same else markupsafe.escape


ESCAPE = _fast_escape()


class _Template(jinja2.Template):
    """Templates whose compiled code calls ESCAPE where jinja2 bound ``markupsafe.escape`` (and nothing else
    changes: a jinja2 that binds another function keeps it)."""

    @classmethod
    def from_code(cls, environment: jinja2.Environment, code: Any, globals: Any,  # noqa: A002 (jinja2's name)
                  uptodate: Callable[[], bool] | None = None) -> jinja2.Template:
        template = super().from_code(environment, code, globals, uptodate)
        namespace = template.root_render_func.__globals__
        if namespace.get("escape") is markupsafe.escape:
            namespace["escape"] = ESCAPE
        return template


# The Environment's settings that shape the compiled code (part of the template cache's file names).
_SETTINGS: dict[str, Any] = {"autoescape": True, "trim_blocks": True, "lstrip_blocks": True,
                             "keep_trailing_newline": True}
TEMPLATE_CACHE_ENV = "PCAPCHECK_TEMPLATE_CACHE"  # a directory, or "off"; default: jinja2's per-user directory


class _TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs. Compiling the six templates takes about 0.1 s, a quarter of a small
    capture's whole run; loading them back takes 2 ms.

    The directory is jinja2's own per-user one (``_jinja2-cache-<uid>`` in the temporary directory, created with
    mode 0700, its owner and mode checked) unless PCAPCHECK_TEMPLATE_CACHE names another or says ``off``. File
    names carry a hash of jinja2's and Python's versions and of the Environment settings; jinja2 stores each
    template's source checksum with its code and compiles again when it differs. A file that cannot be read or
    written only means compiling, as without a cache."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # (a damaged file: marshal raises ValueError, EOFError, TypeError)
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _template_cache() -> jinja2.BytecodeCache | None:
    where = os.environ.get(TEMPLATE_CACHE_ENV, "")
    if where.lower() == "off":
        return None
    tag = hashlib.sha256(repr((jinja2.__version__, sys.version, sorted(_SETTINGS.items()))).encode()).hexdigest()
    pattern = f"pcapcheck-{tag[:16]}-%s.cache"
    try:
        if where:
            os.makedirs(where, mode=0o700, exist_ok=True)
            return _TemplateCache(where, pattern)
        return _TemplateCache(None, pattern)
    except (OSError, RuntimeError):  # (RuntimeError: jinja2 found no safe directory of its own)
        return None


def environment() -> jinja2.Environment:
    """The one jinja2 Environment: autoescape everywhere, undefined names are errors."""
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.PackageLoader("pcapcheck", "templates"),
            undefined=jinja2.StrictUndefined,
            auto_reload=False,
            bytecode_cache=_template_cache(),
            **_SETTINGS,
        )
        _ENV.template_class = _Template
        _ENV.filters["num"] = views.number
        _ENV.globals.update(first_exchanges=views.PAGE_EXCHANGES_FIRST, last_exchanges=views.PAGE_EXCHANGES_LAST,
                            marked_exchanges=views.PAGE_EXCHANGES_MARKED, kept_first=KEEP_FIRST, kept_last=KEEP_LAST)
    return _ENV


def script_hash() -> str:
    """The index's one inline script, as a Content-Security-Policy hash: no other script can run there."""
    text = environment().get_template("index.js").render()
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_conversation(result: ConversationResult, *, input_path: str | None = None,
                        timestamp: str | None = None) -> str:
    """One conversation page as text (for tests and for callers that write elsewhere)."""
    view = views.build_conversation(result, input_path=input_path, timestamp=timestamp)
    return environment().get_template("conversation.html").render(c=view)


def default_workers() -> int:
    """1 when a second core and fork() are available, else 0 (render in this process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return 1 if cores > 1 and "fork" in multiprocessing.get_all_start_methods() else 0


def _for_page(result: ConversationResult) -> ConversationResult:
    """``result`` as its page needs it, to be pickled for later or for the worker:

    - the HTTP exchanges the page does not show (views.shown_exchanges: a long keep-alive connection's first 100,
      last 20 and up to 200 with a finding) replaced by None. Their count and places stay, so the page picks the
      same ones and says how many there were; 2,064 exchanges pickled for 320 shown cost most of such a page's
      pickling;
    - a message's header fields dropped where its raw head is kept: the page shows the raw head
      (views._message_view), and the fields hold the whole head once more (up to 64 KiB, against 16 KiB of raw
      head: 320 such exchanges were 40 MB)."""
    http = result.http
    if not http:
        return result
    n = len(http)
    shown = range(n) if n <= views.PAGE_EXCHANGES_FIRST + views.PAGE_EXCHANGES_LAST + views.PAGE_EXCHANGES_MARKED \
        else views.shown_exchanges(http)
    trimmed: list[Any] = [None] * n
    for i in shown:  # (an ExchangeList reads back only the chunks of these)
        trimmed[i] = _page_exchange(http[i])
    return dataclasses.replace(result, http=tuple(trimmed))


def _page_exchange(x: Any) -> Any:
    if type(x) is not HttpExchange:
        return x
    request, response = _page_message(x.request), _page_message(x.response)
    interim = tuple(_page_message(m) for m in x.interim)
    if request is x.request and response is x.response and all(a is b for a, b in zip(interim, x.interim)):
        return x  # (nothing dropped)
    return dataclasses.replace(x, request=request, interim=interim, response=response)  # (any other field kept)


def _page_message(m: Any) -> Any:
    if m is None or not m.headers or not m.raw_head:
        return m
    page = _NEW_MESSAGE(HttpMessage)  # a copy without the fields (dataclasses.replace costs three times as much)
    page.__setstate__(m.__getstate__())
    _SET_HEADERS(page, ())
    return page


_NEW_MESSAGE = HttpMessage.__new__
_SET_HEADERS = HttpMessage.headers.__set__  # type: ignore[attr-defined]  # (the slot's, as frozen's __init__ sets)


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _render_worker(jobs: Any, errors: Any, outdir: Path, timestamp: str | None) -> None:
    """The worker process: render and write pages until ``None``. After an error it reports it
    and keeps draining the queue, so the analysis never blocks on a full queue."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; the worker is a daemon
    # what the fork copied (the analysis' state) is of no use here: kept out of every collection, so a full one
    # looks at this process's own objects only (and does not write to the memory it shares with the parent)
    gc.freeze()
    page = environment().get_template("conversation.html")
    failed = False
    with fewer_collections():  # (pages allocate as the analysis does)
        while True:
            job = jobs.get()
            if job is None:
                return
            if failed:
                continue
            try:
                name, data, path = job
                view = views.build_conversation(pickle.loads(data), input_path=path, timestamp=timestamp)
                _write_file(outdir / name, page.render(c=view))
            except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
                errors.put(traceback.format_exc())
                failed = True


_SUMMARY_FIELDS = attrgetter(*(f for f in ConversationSummary.__dataclass_fields__ if f != "page"))
_KEY = struct.Struct(">BIQIQQI?")  # see _SummarySpool; big-endian, so the packed keys sort as the tuples do
_WORST = int(max(Severity))


class _SummarySpool:
    """The index's conversations, on disk: memory must not grow with the number of conversations.

    Each ConversationSummary (about 1.4 KB in memory) is pickled to a temporary file; kept is one packed key
    per conversation (_KEY: 38 bytes): severity rank, input, id, part (a resumed conversation has its id twice
    or more), arrival, where its pickle is, and whether it has a page. The keys are a records.Spill: the last
    ones in memory, the others in sorted runs on disk; those of provisional pages stay in memory until the
    pages are settled. A page's
    name follows from the ids and the part (``views.page_name``), and whether there is one can still change (provisional
    pages dropped). ``ordered()`` reads the summaries back in the index's order (worst first, then input
    and id), one at a time.

    Once the pages are settled, ``render()`` replaces the summaries by the index rows themselves (HTML, from the
    index_rows.html template), in the index's order: each process of a sharded run renders its own
    conversations' rows, and index.html only merges them (``rows()``).
    """

    def __init__(self) -> None:
        self.keys = records.Spill(_KEY.size)  # in memory up to records.CHUNK of them, then on disk too
        self._file: Any = None
        self._end = 0
        self.rendered = False  # the entries are index rows (UTF-8), not pickled summaries

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, s: ConversationSummary) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pcapcheck-index-")  # noqa: SIM115 (closed in close())
        data = pickle.dumps(_SUMMARY_FIELDS(s), protocol=pickle.HIGHEST_PROTOCOL)  # all fields but the page
        self._file.write(data)
        # worst is -1 (no finding) .. ERROR: ERROR - worst sorts the worst first
        self.keys.add(_KEY.pack(_WORST - s.worst, s.input_index, s.id, s.part, len(self), self._end, len(data),
                                s.page is not None))
        self._end += len(data)

    # (page and drop_page are for the provisional pages: the first PAGE_LIMIT conversations' keys, in memory)
    def page(self, pos: int) -> str | None:
        _rank, k, c, p, _a, _o, _n, has_page = _KEY.unpack_from(self.keys.buf, self.keys.offset(pos))
        return views.page_name(k, c, p) if has_page else None

    def drop_page(self, pos: int) -> None:
        self.keys.buf[self.keys.offset(pos) + _KEY.size - 1] = 0

    def pages(self) -> dict[tuple[int, int], str]:
        """(input, id) -> page, for the conversations with a page (of a resumed conversation, its first part's
        that has one)."""
        out: dict[tuple[int, int], tuple[int, str]] = {}
        for _r, k, c, p, _a, _o, _n, has_page in map(_KEY.unpack, self.keys.records()):
            if has_page and ((k, c) not in out or p < out[k, c][0]):
                out[k, c] = (p, views.page_name(k, c, p))
        return {kc: name for kc, (_p, name) in out.items()}

    def page_files(self) -> set[str]:
        """Every page this run wrote (or will write), every part's."""
        return {views.page_name(k, c, p) for _r, k, c, p, _a, _o, _n, has_page in map(_KEY.unpack, self.keys.records())
                if has_page}

    def _order(self) -> Iterator[bytes]:
        """The keys in the index's order: worst first, then by input and id (big-endian: as bytes). The keys are
        left sorted by chunks (``records``): no key is read by its arrival position after this."""
        if self._file is not None:
            self._file.flush()
        return self.keys.ordered()

    def ordered(self) -> Iterator[ConversationSummary]:
        """Every summary, in the index's order, read one at a time."""
        if self.rendered:
            raise RuntimeError("the index summaries were rendered into rows already")
        return self._load(self._order())

    def _load(self, order: Iterable[bytes]) -> Iterator[ConversationSummary]:
        for key in order:
            _rank, k, c, p, _a, offset, length, has_page = _KEY.unpack(key)
            yield ConversationSummary(*pickle.loads(self._read(offset, length)),
                                      views.page_name(k, c, p) if has_page else None)

    def render(self, rows: Callable[[Iterator[ConversationSummary]], Iterable[str]]) -> None:
        """Replace the summaries by their index rows: ``rows(summaries)`` gives one row per summary, in order."""
        if self.rendered:
            return
        total = len(self)
        # the keys twice, in step: one for the summaries to render, one for the rows' new keys
        order, again = itertools.tee(self._order())
        out = tempfile.TemporaryFile(prefix="pcapcheck-index-rows-")  # noqa: SIM115 (closed in close())
        keys = records.Spill(_KEY.size)
        end = n = 0
        try:
            for text in rows(self._load(order)):
                if n == total:
                    raise RuntimeError(f"more index rows rendered than the {n} conversations")
                data = text.encode("utf-8")
                out.write(data)
                rank, k, c, p, a, _o, _n, has_page = _KEY.unpack(next(again))
                keys.add(_KEY.pack(rank, k, c, p, a, end, len(data), has_page))
                end += len(data)
                n += 1
        except BaseException:
            out.close()
            keys.close()
            raise
        if n != total:
            out.close()
            keys.close()
            raise RuntimeError(f"{n} index rows rendered for {total} conversations")
        self.close()
        self._file, self._end, self.keys, self.rendered = out, end, keys, True

    def rows(self) -> Iterator[str]:
        """Every rendered row (``render``), in the index's order, read one at a time."""
        if not self.rendered:
            raise RuntimeError("the index rows are not rendered yet")
        for key in self._order():
            _rank, _k, _c, _p, _a, offset, length, _has_page = _KEY.unpack(key)
            yield self._read(offset, length).decode("utf-8")

    def _read(self, offset: int, length: int) -> bytes:
        """Bytes of the spool; its position stays at the end, where add() writes, even if a reader stops."""
        return records.pread(self._file, length, offset)

    def export(self, target: BinaryIO) -> tuple[int, int, int]:
        """Copy the spool, rendered, into the empty file ``target`` (another process's, opened before the fork,
        read by its ``absorb``), the keys after the rows, and return where they are: (start of the rows, their
        length, the number of keys that follow them)."""
        if not self.rendered and self.keys:
            raise RuntimeError("the index rows are exported rendered")
        with os.fdopen(os.dup(target.fileno()), "wb") as out:
            start = out.tell()
            if self._file is not None:
                self._file.flush()
                self._file.seek(0)
                shutil.copyfileobj(self._file, out)
                self._file.seek(0, os.SEEK_END)
            length = out.tell() - start
            for key in self.keys.records():
                out.write(key)
        return start, length, len(self.keys)

    def absorb(self, source: BinaryIO, keys: tuple[int, int, int]) -> None:
        """Append another spool's rendered rows: ``keys`` from its ``export()``, ``source`` this process's handle
        of the file it exported to (the caller closes it)."""
        start, length, count = keys
        if not count:
            return
        if not self.rendered and self.keys:
            raise RuntimeError("rendered index rows are absorbed into rendered ones")
        self.rendered = True
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="pcapcheck-index-")  # noqa: SIM115 (closed in close())
        base = self._end
        self._file.seek(0, os.SEEK_END)
        source.seek(start)
        left = length
        while left:
            data = source.read(min(left, 1 << 20))
            if not data:
                raise OSError(f"the exported index rows end {left} bytes short")
            self._file.write(data)
            left -= len(data)
        self._end = base + length
        n = len(self)
        add, unpack, pack = self.keys.add, _KEY.unpack, _KEY.pack
        for key in records.read(source, start + length, count, _KEY.size):
            rank, k, c, p, a, offset, size, has_page = unpack(key)
            add(pack(rank, k, c, p, n + a, base + offset, size, has_page))

    def close(self) -> None:
        self.keys.close()
        if self._file is not None:
            self._file.close()
            self._file = None


class HtmlReport:
    """Sink writing ``outdir/index.html`` and the conversation pages.

    ``pages``: "auto" (the policy above) or "all". ``conversations``: ids that always get a page (in every
    input). ``timestamp``: text shown in the footer; without it the output holds no wall-clock time.
    ``inputs``: the capture paths, in input order, for the tshark commands on each page (the pages are
    written before ``finish`` gives the inputs' summaries). ``workers``: 0 renders in this process, 1 in a
    worker process after the first pages; None chooses (see ``default_workers``).
    """

    def __init__(self, outdir: str | os.PathLike[str], *, pages: str = "auto",
                 conversations: Iterable[int] = frozenset(), timestamp: str | None = None,
                 inputs: Iterable[str] = (), workers: int | None = None,
                 seen: Callable[[], int] | None = None) -> None:
        if pages not in PAGES:
            raise ValueError(f"pages must be one of {', '.join(PAGES)}, not {pages!r}")
        self.outdir = Path(outdir)
        self.pages = pages
        self.wanted = frozenset(int(c) for c in conversations)
        self.timestamp = timestamp
        self.inputs = tuple(str(p) for p in inputs)
        self.workers = default_workers() if workers is None else min(max(int(workers), 0), 1)
        env = environment()
        self._page = env.get_template("conversation.html")
        self._index = env.get_template("index.html")
        self._row = env.get_template("index_rows.html").module.row  # type: ignore[attr-defined]
        self._multi_input: bool | None = None  # how the index rows were rendered (with an input column or not)
        self._script_hash = script_hash()
        self._summaries = _SummarySpool()
        self._provisional: list[int] = []  # positions in _summaries whose page exists only under PAGE_LIMIT
        self._spool: Spool | None = None  # their pickled results, rendered by finish() when the run stays under the limit
        self._spooled: list[tuple[tuple[int, int], str | None]] = []  # each one's place in _spool, its input's path
        self._over = False  # the count passed PAGE_LIMIT: no more provisional pages
        self.seen = seen
        self._codes = views.CodeIndex()
        self._rendered = 0
        self._worker: Any = None
        self._queued: collections.deque[int] = collections.deque()  # the sizes of the jobs sent, oldest first
        self._queued_bytes = 0  # their sum (those the worker has taken are forgotten in _send)
        self._jobs: Any = None
        self._errors: Any = None
        self.outdir.mkdir(parents=True, exist_ok=True)

    def _keeps_page(self, r: ConversationResult) -> bool:
        """Whether the conversation gets a page whatever the total count."""
        return self.pages == "all" or r.id in self.wanted or (r.worst is not None and r.worst >= Severity.WARNING)

    def conversation(self, result: ConversationResult) -> None:
        keep = self._keeps_page(result)
        page = None
        if keep:
            page = views.page_name(result.input_index, result.id, result.part)
            self._render(page, result, self._input_path(result))
        elif not self._over:
            n = self.seen() if self.seen is not None else len(self._summaries) + 1
            if n > PAGE_LIMIT:
                self._drop_provisional()
            else:
                page = views.page_name(result.input_index, result.id, result.part)
                if self._spool is None:
                    self._spool = Spool("pcapcheck-pages-")  # closed in _drop_provisional / finish_pages / close
                data = pickle.dumps(_for_page(result), protocol=pickle.HIGHEST_PROTOCOL)
                self._spooled.append((self._spool.write(data), self._input_path(result)))
                self._provisional.append(len(self._summaries))
                self._summaries.keys.hold = True  # its key is patched or read by position later
        self._summaries.add(ConversationSummary.of(result, page))
        self._codes.add(result)

    def _input_path(self, result: ConversationResult) -> str | None:
        return self.inputs[result.input_index] if result.input_index < len(self.inputs) else None

    def _render(self, name: str, result: ConversationResult | bytes, path: str | None) -> None:
        """Write a page, here or in the worker; ``result`` may be pickled already (a provisional page's)."""
        self._rendered += 1
        if self._worker is None and self.workers and self._rendered > WORKER_AFTER:
            self._start_worker()
        if self._worker is None:
            # (trimmed here too: the view would turn every header field into text the page does not show)
            result = pickle.loads(result) if isinstance(result, bytes) else _for_page(result)
            view = views.build_conversation(result, input_path=path, timestamp=self.timestamp)
            _write_file(self.outdir / name, self._page.render(c=view))
        else:
            # pickled here, not by the queue's feeder thread: what waits in the queue is then bytes, a third of the
            # objects' size, and counted (WORKER_QUEUE_BYTES)
            data = result if isinstance(result, bytes) else pickle.dumps(_for_page(result),
                                                                         protocol=pickle.HIGHEST_PROTOCOL)
            self._send((name, data, path), len(data))

    def _start_worker(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._jobs = ctx.Queue(maxsize=WORKER_QUEUE)
        self._errors = ctx.Queue()
        self._worker = ctx.Process(target=_render_worker, args=(self._jobs, self._errors, self.outdir, self.timestamp),
                                   name="pcapcheck-render", daemon=True)
        self._worker.start()

    def _send(self, job: Any, size: int = 0) -> None:
        queued = self._queued
        while True:
            self._raise_worker_error()
            if queued and self._queued_bytes + size > WORKER_QUEUE_BYTES:
                try:
                    waiting = self._jobs.qsize()  # sent and not yet taken by the worker
                except NotImplementedError:  # (macOS): the count bound only
                    waiting = 0
                while len(queued) > waiting:
                    self._queued_bytes -= queued.popleft()
                if queued and self._queued_bytes + size > WORKER_QUEUE_BYTES:
                    if not self._worker.is_alive():
                        raise RuntimeError("the page-rendering worker process died")
                    time.sleep(0.005)
                    continue
            try:
                self._jobs.put(job, timeout=1)
            except queue.Full:
                if not self._worker.is_alive():
                    raise RuntimeError("the page-rendering worker process died") from None
                continue
            queued.append(size)
            self._queued_bytes += size
            return

    def _raise_worker_error(self, wait: float = 0) -> None:
        try:
            text = self._errors.get(timeout=wait) if wait else self._errors.get_nowait()
        except queue.Empty:
            return
        self.close()
        raise RuntimeError(f"rendering a conversation page failed in the worker process:\n{text}")

    def _drop_provisional(self) -> None:
        """The count passed PAGE_LIMIT: the provisional pages will not be written."""
        self._over = True
        for pos in self._provisional:
            self._summaries.drop_page(pos)
        self._provisional = []
        self._spooled = []
        self._summaries.keys.hold = False
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def finish_pages(self) -> None:
        """Write the provisional pages when the run stayed under PAGE_LIMIT, then wait for the render worker."""
        total = self.seen() if self.seen is not None else len(self._summaries)
        if self._provisional and (self._over or total > PAGE_LIMIT):
            self._drop_provisional()
        spool, self._spool = self._spool, None
        if spool is not None:
            try:
                with fewer_collections():
                    for pos, (where, path) in zip(self._provisional, self._spooled):
                        self._render(self._summaries.page(pos), spool.read(where), path)  # unpickled where rendered
            finally:
                spool.close()
        self._provisional = []
        self._spooled = []
        self._summaries.keys.hold = False
        self._wait_worker()

    def _wait_worker(self) -> None:
        if self._worker is None:
            return
        self._send(None)
        self._worker.join()
        code = self._worker.exitcode
        self._raise_worker_error(wait=0.1)
        self._worker = None
        self._queued.clear()
        self._queued_bytes = 0
        self._end_queues(wait=True)
        if code != 0:
            raise RuntimeError(f"the page-rendering worker process exited with status {code}")

    def _end_queues(self, *, wait: bool) -> None:
        """Close the worker's queues and end this process's feeder thread (a Queue's first ``put`` starts one).
        A thread left running makes any later fork of this process unsafe: the child gets a copy of every lock as
        it was, and one the thread held stays held (a process that makes reports and then forks, as the tests do
        with a sharded run after a worker's, could hang). ``wait``: the worker has read everything (its queue is
        flushed, so the thread ends at once); otherwise (an aborted run) whatever is still buffered is dropped."""
        for q in (self._jobs, self._errors):
            if q is not None:
                q.close()
                if wait:
                    q.join_thread()
                else:
                    q.cancel_join_thread()
        self._jobs = self._errors = None

    def close(self) -> None:
        """Stop the worker without waiting for its queue (an aborted run)."""
        self._summaries.close()
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        if self._worker is not None:
            self._worker.terminate()
            self._worker.join()
            self._worker = None
            self._queued.clear()
            self._queued_bytes = 0
            self._end_queues(wait=False)

    def pages_written(self) -> dict[tuple[int, int], str]:
        """(input, id) -> the conversation's page, for those with a page (after ``finish_pages``)."""
        return self._summaries.pages()

    def render_rows(self, multi_input: bool) -> None:
        """Render the index rows of this process's conversations (``multi_input``: more than one input, the rows
        have an input column), once the pages are settled (``finish_pages``). ``write_index`` does it when not
        done; a sharded run has every shard do it for its own conversations, at the same time."""
        if self._summaries.rendered:
            if self._multi_input != multi_input:
                raise RuntimeError("index rows rendered for another number of inputs")
            return
        if self._provisional:
            raise RuntimeError("index rows rendered before the pages were settled")

        row = self._row
        self._summaries.render(lambda summaries: (row(views.index_row(s), multi_input) for s in summaries))
        self._multi_input = multi_input

    def state(self, target: BinaryIO) -> tuple[tuple[int, int, int], views.CodeIndex, bool | None]:
        """What ``absorb`` needs from this report (a shard's, after ``render_rows``): its index rows and their
        keys, copied into the empty file ``target`` that the absorbing process opened before the fork, where
        they are there (``_SummarySpool.export``), the code index, and how the rows were rendered."""
        return self._summaries.export(target), self._codes, self._multi_input

    def absorb(self, source: BinaryIO, state: tuple[tuple[int, int, int], views.CodeIndex, bool | None]) -> None:
        """Add another shard's conversations to the index (their pages are written and their rows rendered,
        as this report's must be): ``state`` from its ``state(target)``, ``source`` this process's handle of
        that target."""
        keys, codes, multi_input = state
        count = keys[2]  # the other shard's conversations
        if count and ((not self._summaries.rendered and len(self._summaries)) or
                      (self._multi_input is not None and multi_input != self._multi_input)):
            raise RuntimeError("index rows are merged with rows rendered the same way")
        if count and self._multi_input is None:
            self._multi_input = multi_input
        self._summaries.absorb(source, keys)
        self._codes.merge(codes)

    def finish(self, totals: Any) -> Path:
        """Write the pages still due, then index.html from the summaries and the run's totals (pipeline.Totals)."""
        self.finish_pages()
        return self.write_index(totals)

    def write_index(self, totals: Any) -> Path:
        self.render_rows(len(totals.inputs) > 1)
        # Markup: rows the index_rows.html template rendered, every value in them escaped there
        rows = (Markup(text) for text in self._summaries.rows())
        view = views.build_index(
            rows, self._summaries.pages(), len(self._summaries), totals.inputs,
            totals.severities, totals.codes, self._codes,
            page_limit=PAGE_LIMIT, policy=self.pages, timestamp=self.timestamp,
        )
        with open(self.outdir / "index.html", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(self._index.generate(ix=view, script_hash=self._script_hash))  # streamed: 100k rows
        self.remove_stale_pages()
        return self.outdir / "index.html"

    def remove_stale_pages(self) -> list[str]:
        """Remove the conversation pages in the output directory that this run did not write (an earlier
        run's, into the same directory): only regular files with page names (``views.page_name``). Returns
        the names removed. A file that cannot be removed is left; the index never links it."""
        keep = self._summaries.page_files()
        removed = []
        try:
            entries = list(os.scandir(self.outdir))
        except OSError:
            return removed
        for e in entries:
            if e.name in keep or not _PAGE_FILE.fullmatch(e.name):
                continue
            try:
                if e.is_file(follow_symlinks=False):
                    os.unlink(e.path)
                    removed.append(e.name)
            except OSError:
                pass
        return sorted(removed)
