"""setuptools' build, for one choice setup.cfg cannot express: with PCAPCHECK_COMPILE=1 in the environment, the
modules listed under ``[pcapcheck:compiled]`` in setup.cfg are compiled into C extensions by mypyc (part of mypy,
which must then be installed in the building environment: ``pip install --no-build-isolation``), beside their
unchanged source; without it, pcapcheck is built as pure Python. ``make install`` does the former (and the latter
where it cannot compile, or with PURE=1) into .venv. PCAPCHECK_COMPILE_MODULES (the same names, comma- or
space-separated) compiles another set, for measurements (in the environment of a fresh make install).

The compiled build gives the same reports byte for byte (bench/compiled.py checks it) and runs the same test suite
(make test-compiled); docs/performance.md, "The compiled build", says what it buys.
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The files to compile: PCAPCHECK_COMPILE_MODULES, or setup.cfg's list (names relative to pcapcheck/)."""
    names = os.environ.get("PCAPCHECK_COMPILE_MODULES", "").strip()
    if not names:
        cfg = configparser.ConfigParser()
        cfg.read(HERE / "setup.cfg")
        names = cfg["pcapcheck:compiled"]["modules"]
    files = []
    for name in re.split(r"[\s,]+", names.strip()):
        rel = f"pcapcheck/{name.removesuffix('.py')}.py"
        if not (HERE / rel).is_file():
            raise SystemExit(f"setup.py: no module {rel} to compile")
        files.append(rel)
    return files


ext_modules = []
if os.environ.get("PCAPCHECK_COMPILE") == "1":
    from mypyc.build import mypycify  # (mypy in the building environment: see the module's doc)

    # mypy checks the compiled modules and follows their imports for the types, but reports (and fails on) errors
    # only in the modules it compiles: the interpreted ones are not held to mypyc's standard
    ext_modules = mypycify(["--ignore-missing-imports", "--follow-imports=silent", *compiled_modules()], opt_level="3")

setup(ext_modules=ext_modules)
