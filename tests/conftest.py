"""Shared test set-up: hypothesis profiles, paths to fixtures and the shared corpus."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # so tests can import fixtures.builder

FIXTURES = ROOT / "fixtures"
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"

# Quick by default (make test stays well under 10 minutes on 2 cores); thorough on demand:
# pytest --hypothesis-profile=ci
settings.register_profile("default", max_examples=50, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"the shared corpus is not here ({CORPUS}): real-capture tests need ../shared/corpus")
    return CORPUS


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (apt-get install -y tshark): cross-checks against Wireshark skipped")
    return path


def fixture_path(name: str) -> Path:
    p = FIXTURES / name
    if not p.exists():
        raise FileNotFoundError(f"{p} is missing: run `python fixtures/make_fixtures.py`")
    return p


def interpreted(*modules: ModuleType) -> None:
    """Skip the calling test where one of ``modules`` is compiled (``make test-compiled`` runs the suite against
    the build with the per-packet path compiled by mypyc): the test watches that code by patching, subclassing or
    inspecting it, or feeds it values its annotations exclude, which compiled code refuses. Interpreted, as always
    in make test, it runs."""
    compiled = [m.__name__ for m in modules if not (m.__file__ or "").endswith(".py")]
    if compiled:
        pytest.skip(f"needs {', '.join(compiled)} interpreted (patched, subclassed or inspected, or given values its "
                    "annotations exclude), and it is compiled here")
