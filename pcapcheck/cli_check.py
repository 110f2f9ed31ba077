"""``pcapcheck check``: the click command over :mod:`pcapcheck.check`.

``pcapcheck.cli`` calls :func:`register` on its group; the command raises ``pcapcheck.cli.Outcome`` with
its exit code (0 every capture meets its expectation, 1 any capture fails or errs, 2 usage) so that
``main`` stays the one exit point.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import click

from pcapcheck.config import Options

EPILOG = """\b
Expectation files: <capture>.expect.yaml (or .expect.json) beside each capture, or
in --expect-dir named after the capture's path below the directory argument with
'/' replaced by '__'. Format and matching rules: docs/check.md.

\b
Examples:
  pcapcheck check incidents/ --junit out.xml
  pcapcheck check incidents/new.pcap --update     # then review: git diff
  pcapcheck check corpus/ --expect-dir tests/corpus_expect --json
"""


def register(group: click.Group) -> None:
    """Add ``check`` to ``group`` (pcapcheck.cli's ``cli``, or a copy in tests)."""
    # Imported here, not at the top: pcapcheck.cli imports this module while it is being defined.
    from pcapcheck.cli import EXIT_USAGE, Outcome, analysis_options

    @group.command("check", epilog=EPILOG)
    @click.argument("paths", metavar="PATH...", nargs=-1, required=True,
                    type=click.Path(exists=True, path_type=str))
    @click.option("--expect-dir", type=click.Path(file_okay=False, path_type=str),
                  help="directory holding the expectation files (default: beside each capture)")
    @click.option("--update", is_flag=True,
                  help="write or refresh expectation files from the current findings (refused when CI is set)")
    @click.option("--junit", "junit", type=click.Path(dir_okay=False, path_type=Path),
                  help="write JUnit XML: one test case per capture")
    @click.option("--json", "as_json", is_flag=True, help="print the results as JSON instead of the summary")
    @click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
                  help="captures analyzed in parallel processes  [default: number of CPUs]")
    @click.option("-v", "--verbose", is_flag=True, help="also list the captures that pass")
    @analysis_options
    def check(paths: tuple[str, ...], expect_dir: str | None, update: bool, junit: Path | None, as_json: bool,
              jobs: int | None, verbose: bool, kernel: str, be_liberal: bool, no_http: bool) -> None:
        """Check captures against their expectation files; exit 1 when a verdict changed.

        PATH: capture files (pcap, pcapng, gzip) or directories, searched recursively
        for *.pcap, *.pcapng and *.cap, each optionally .gz.
        """
        from pcapcheck import check as chk  # here: every other command starts without it (about 60 ms)

        if update:
            ci = chk.ci_value()
            if ci is not None:
                raise click.UsageError(f"--update refused: CI is set (CI={ci}); expectation files are written on "
                                       "a developer machine and reviewed in a diff, never in CI")
            if junit is not None or as_json:
                raise click.UsageError("--update writes expectation files: run it without --junit and --json")
        if expect_dir is not None and not update and not os.path.isdir(expect_dir):
            raise click.UsageError(f"--expect-dir {expect_dir}: no such directory")
        try:
            cases = chk.discover(paths, expect_dir)
        except chk.DiscoveryError as e:
            raise click.UsageError(str(e)) from None
        if not cases:
            raise click.UsageError(f"no captures in {', '.join(paths)}: looked for *.pcap, *.pcapng and *.cap "
                                   "(each optionally .gz)")
        options = Options(kernel=kernel, be_liberal=be_liberal, http=not no_http)
        started = time.perf_counter()
        results = chk.run_check(cases, options, jobs=jobs or chk.default_jobs(), compare_results=not update)
        elapsed = time.perf_counter() - started
        if update:
            updates = chk.update_expectations(results)
            for line in chk.update_lines(updates, verbose):
                click.echo(line)
            raise Outcome(1 if any(u.action == "error" for u in updates) else 0)
        if as_json:
            click.echo(chk.json_report(results), nl=False)
        else:
            for line in chk.summary_lines(results, verbose):
                click.echo(line)
        if junit is not None:
            try:
                junit.write_bytes(chk.junit_xml(results, elapsed))
            except OSError as e:
                click.echo(f"pcapcheck: cannot write {junit}: {e.strerror or e}", err=True)
                raise Outcome(EXIT_USAGE) from None
        raise Outcome(chk.exit_code(results))
