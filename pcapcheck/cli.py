"""Command line: ``pcapcheck analyze``, ``pcapcheck summary`` and ``pcapcheck check``.

Exit codes (decided in one place, ``main``): 0 nothing at or above ``--fail-on``,
1 findings at or above it, 2 usage error, 3 no input could be read, 123 internal error
(one line; the traceback only with ``--debug``).
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import click

from pcapcheck import __version__
from pcapcheck.config import KERNELS, Options
from pcapcheck.findings import Severity
from pcapcheck.pipeline import Totals

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNREADABLE, EXIT_INTERNAL = 0, 1, 2, 3, 123
FAIL_ON = ("error", "warning", "notice", "info", "never")


class Outcome(Exception):
    """Carries the exit code out of a command to the single exit point."""

    def __init__(self, code: int) -> None:
        self.code = code


def _exit_code(totals: Totals, fail_on: str) -> int:
    if not totals.readable:
        return EXIT_UNREADABLE
    if fail_on == "never":
        return EXIT_OK
    worst = totals.worst
    return EXIT_FINDINGS if worst is not None and worst >= Severity.parse(fail_on) else EXIT_OK


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int | None) -> None:
        if total:
            sys.stderr.write(f"\rpcapcheck: {done / 2**20:,.0f} of {total / 2**20:,.0f} MiB read "
                             f"({100 * done / total:.0f}%)")
        else:
            sys.stderr.write(f"\rpcapcheck: {done / 2**20:,.0f} MiB read")
        sys.stderr.flush()

    return show


def _problems(totals: Totals) -> None:
    """Capture-level problems: one line each on stderr, naming file, offset and frame."""
    for inp in totals.inputs:
        for f in inp.findings:
            if f.code in ("capture.unreadable", "capture.truncated", "capture.corrupt"):
                click.echo(f"pcapcheck: {f.message}", err=True)


def analysis_options(f):
    """Options shared by analyze, summary and check."""
    f = click.option("--kernel", type=click.Choice(KERNELS), default="6.1+", show_default=True,
                     help="conntrack generation whose window verdict drives severity")(f)
    f = click.option("--be-liberal", is_flag=True,
                     help="emulate nf_conntrack_tcp_be_liberal=1 (no out-of-window verdicts)")(f)
    f = click.option("--no-http", is_flag=True, help="skip HTTP/1.x analysis")(f)
    return f


def _options(kernel: str, be_liberal: bool, no_http: bool) -> Options:
    return Options(kernel=kernel, be_liberal=be_liberal, http=not no_http)


def build_description(package_dir: Path | None = None) -> str:
    """How this pcapcheck was built, for ``--version``: "pure Python", or how many of its modules are C extensions
    compiled by mypyc (``make install``; an extension module is imported in place of its source)."""
    if package_dir is None:
        package_dir = Path(__file__).resolve().parent
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    compiled = [p for p in package_dir.rglob("*") if p.name.endswith(suffixes)]
    if not compiled:
        return "pure Python"
    return f"compiled by mypyc: {len(compiled)} module{'s' if len(compiled) != 1 else ''}"


def _version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"pcapcheck {__version__} ({build_description()})")
        ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_version,
              help="Show the version, and whether this build is compiled, and exit.")
@click.option("--debug", is_flag=True, help="show tracebacks of internal errors")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Forensic analysis of TCP and HTTP/1.x in packet captures.

    \b
    Example:
      pcapcheck analyze capture.pcap -o report/
      pcapcheck summary capture.pcapng
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory for index.html, one page per conversation and report.json (an earlier run's "
                   "conversation pages there are replaced or removed)")
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="error", show_default=True,
              help="exit 1 when a finding at or above this severity exists")
@click.option("--pages", type=click.Choice(["auto", "all"]), default="auto", show_default=True,
              help="auto: a page per conversation up to 2,000 conversations, then only those with warnings")
@click.option("--conversation", "conversations", type=int, multiple=True,
              help="always write the page of conversation N (tcp.stream eq N); repeatable")
@click.option("--timestamp", is_flag=True, help="record the wall-clock time of the run in the reports")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None,
              help="processes to analyze with (default: the cores, at most 2; 1 = one process)")
@analysis_options
def analyze(captures: tuple[str, ...], outdir: Path, fail_on: str, pages: str, conversations: tuple[int, ...],
            timestamp: bool, jobs: int | None, kernel: str, be_liberal: bool, no_http: bool) -> None:
    """Analyze CAPTURE files (pcap, pcapng, gzip; - for stdin) into an HTML and JSON report.

    \b
    Example:
      pcapcheck analyze incident.pcap -o report/ && xdg-open report/index.html
    """
    from pcapcheck import parallel
    from pcapcheck.report.html_report import HtmlReport
    from pcapcheck.report.json_report import JsonReport

    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.UsageError(f"cannot create the output directory {outdir}: {e.strerror}") from None
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds") if timestamp else None
    html = HtmlReport(outdir, pages=pages, conversations=frozenset(conversations), timestamp=stamp,
                      inputs=list(captures))
    js = JsonReport(outdir / "report.json", timestamp=stamp)
    try:
        totals = parallel.analyze(_options(kernel, be_liberal, no_http), captures, html, js,
                                  jobs=jobs or parallel.default_jobs(), progress=_progress_printer())
    except BaseException:
        html.close()
        js.close()
        raise
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    html.finish(totals)
    js.finish(totals)
    _problems(totals)
    _print_summary(totals, outdir)
    raise Outcome(_exit_code(totals, fail_on))


def _print_summary(totals: Totals, outdir: Path | None) -> None:
    for inp in totals.inputs:
        span = ""
        if inp.first_ns is not None and inp.last_ns is not None:
            span = f", {(inp.last_ns - inp.first_ns) / 1e9:.3f} s"
        click.echo(f"{inp.path}: {inp.frames} frames, {inp.tcp_frames} TCP, {inp.conversations} conversations{span}")
    sev = ", ".join(f"{totals.severities[s]} {s.label}" for s in sorted(totals.severities, reverse=True))
    click.echo(f"findings: {sev or 'none'}")
    top = sorted(totals.codes.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    if top:
        click.echo("codes: " + ", ".join(f"{code} x{n}" for code, n in top))
    if outdir is not None:
        click.echo(f"report: {outdir / 'index.html'}")


class _Collect:
    """A sink that keeps a one-line summary per conversation (for ``summary``)."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def export(self) -> list[tuple]:
        """The lines, for another process's ``absorb`` (a sharded run: ``parallel.collect``)."""
        return self.rows

    def absorb(self, rows: list[tuple]) -> None:
        self.rows.extend(rows)

    def conversation(self, r) -> None:
        worst = r.worst.label if r.worst is not None else "-"
        self.rows.append((r.input_index, r.id, r.part, r.client, r.server, sum(r.packets), sum(r.bytes), r.end,
                          worst, r.first_frame))


@cli.command()
@click.argument("captures", nargs=-1, required=True)
@click.option("--fail-on", type=click.Choice(FAIL_ON), default="never", show_default=True,
              help="exit 1 when a finding at or above this severity exists")
@click.option("-j", "--jobs", type=click.IntRange(min=0), default=None,
              help="processes to analyze with (default: the cores, at most 2; 1 = one process)")
@analysis_options
def summary(captures: tuple[str, ...], fail_on: str, jobs: int | None, kernel: str, be_liberal: bool,
            no_http: bool) -> None:
    """Print per-file totals and one line per conversation (ids = Wireshark's tcp.stream; a conversation
    resumed after it was finalized has a line per part: id/part).

    \b
    Example:
      pcapcheck summary capture.pcap
    """
    from pcapcheck import parallel

    sink = _Collect()
    totals = parallel.collect(_options(kernel, be_liberal, no_http), captures, sink,
                              jobs=jobs or parallel.default_jobs(), export=_Collect.export, absorb=_Collect.absorb,
                              progress=_progress_printer())
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
    _problems(totals)
    for inp in totals.inputs:
        lts = ", ".join(f"{name} ({lt}): {n}" for lt, name, n in inp.linktypes) or "none"
        click.echo(f"{inp.path}: {inp.format}{' (gzip)' if inp.compressed else ''}; link types: {lts}")
        for f in inp.findings:
            click.echo(f"  problem: [{f.code}] {f.message}")
    if sink.rows:
        click.echo(f"{'in':>2} {'conv':>5} {'client':>28} {'server':>28} {'pkts':>7} {'bytes':>10} "
                   f"{'end':<14} {'worst':<8} first")
    for row in sorted(sink.rows):
        i, cid, part, c, s, p, b, end, worst, first = row
        conv = cid if part == 1 else f"{cid}/{part}"
        click.echo(f"{i:>2} {conv:>5} {c:>28} {s:>28} {p:>7} {b:>10} {end:<14} {worst:<8} {first}")
    _print_summary(totals, None)
    raise Outcome(_exit_code(totals, fail_on))


def main(argv: list[str] | None = None) -> None:
    """The one exit point."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="pcapcheck", standalone_mode=False)
        code = EXIT_OK
    except Outcome as o:
        code = o.code
    except click.exceptions.Exit as e:  # --help, --version
        code = e.exit_code
    except click.ClickException as e:
        e.show()
        code = EXIT_USAGE
    except click.exceptions.Abort:
        click.echo("pcapcheck: aborted", err=True)
        code = EXIT_USAGE
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    except Exception as e:  # noqa: BLE001 - the internal-error exit path
        if debug:
            traceback.print_exc()
        click.echo(f"pcapcheck: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
                   err=True)
        code = EXIT_INTERNAL
    sys.exit(code)


def _register_subcommands() -> None:
    from pcapcheck.cli_check import register

    register(cli)


_register_subcommands()
