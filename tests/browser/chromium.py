"""A dependency-free headless Chromium runner for the report's browser tests.

Plain subprocess: ``--screenshot`` for pictures, ``--dump-dom`` for the DOM after scripts ran, and
``--enable-logging=stderr --v=0`` to collect console messages (Chromium prints them to stderr as
``INFO:CONSOLE:12] "message", source: file:///... (12)``; older builds ``CONSOLE(12)]``). Set-up installs the Debian packages when they are missing
and the tests run as root; otherwise the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("chromium", "chromium-driver")
NAMES = ("chromium", "chromium-browser", "google-chrome")


def find() -> str | None:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def ensure() -> tuple[str | None, str]:
    """(path to the browser, reason when there is none)."""
    path = find()
    if path:
        return path, ""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None, "chromium is not installed and the tests are not running as root (apt-get install chromium)"
    if not shutil.which("apt-get"):
        return None, "chromium is not installed and there is no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env, capture_output=True,
                              text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"installing chromium failed: {e}"
    path = find()
    if path:
        return path, ""
    tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
    return None, f"apt-get install chromium failed: {tail[0]}"


@dataclass(frozen=True)
class Run:
    dom: str
    console: tuple[str, ...]  # console messages and uncaught errors the page produced
    stderr: str


_CONSOLE = re.compile(r'CONSOLE[:(]\d+\)?\] "(.*)", source: (.*)')
_ERROR_HINT = re.compile(r"Uncaught|Refused to|Content Security Policy|ERR_|Failed to load", re.I)


def _base(browser: str, profile: Path) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]


def dump_dom(browser: str, url: str, profile: Path, timeout: int = 120) -> Run:
    cmd = _base(browser, profile) + ["--virtual-time-budget=3000", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    console = tuple(m.group(0) for m in _CONSOLE.finditer(done.stderr))
    console += tuple(line for line in done.stderr.splitlines() if "CONSOLE" not in line and "file://" in line
                     and _ERROR_HINT.search(line))
    return Run(done.stdout, console, done.stderr)


def screenshot(browser: str, url: str, png: Path, profile: Path, size: str = "1400,2000", timeout: int = 120) -> Run:
    cmd = _base(browser, profile) + [f"--screenshot={png}", f"--window-size={size}", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    console = tuple(m.group(0) for m in _CONSOLE.finditer(done.stderr))
    return Run("", console, done.stderr)
