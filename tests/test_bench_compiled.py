"""bench/compiled.py, the mypyc experiment: the parts that need no compiler. Its patch of frozen.py must still apply
to the module as it is (a change there would otherwise surface only when someone runs the experiment), and the
patched builders must give the same objects for the classes pcapcheck builds with them; a report that differs in
one file must be caught."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_bench_gen import ROOT, _load

compiled = _load("compiled")


def _unpatched(text: str) -> str:
    """frozen.py's source, as the repository has it; skips in the compiled copy (bench/compiled.py --suite), where
    frozen.py is patched already and the patch cannot apply again."""
    if compiled.is_patched(text):
        pytest.skip("frozen.py is the compiled copy's, patched already (bench/compiled.py --suite)")
    return text


def _patched_frozen():
    source = compiled.compat_source(_unpatched((ROOT / "pcapcheck" / "frozen.py").read_text()))
    spec = importlib.util.spec_from_loader("frozen_patched", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules["frozen_patched"] = module  # (dataclasses look the module up)
    try:
        exec(compile(source, "frozen_patched.py", "exec"), module.__dict__)
    finally:
        del sys.modules["frozen_patched"]
    return module


def test_the_frozen_patch_applies_and_changes_nothing_for_python_classes() -> None:
    frozen = _patched_frozen()

    @dataclass(frozen=True, slots=True)
    class Point:
        x: int
        y: int

    make = frozen.frozen_maker(Point)
    assert make(1, 2) == Point(1, 2) and type(make(1, 2)) is Point
    assert frozen.frozen_builder(Point) is not None


def test_the_frozen_patch_takes_the_constructor_of_a_class_without_slots() -> None:
    """A mypyc-compiled class has no __slots__: the builders fall back to it."""
    frozen = _patched_frozen()

    @dataclass(frozen=True)
    class Plain:
        x: int

    assert frozen.frozen_maker(Plain) is Plain
    assert frozen.frozen_builder(Plain) is None


def test_the_patch_fails_loudly_when_frozen_py_changed() -> None:
    with pytest.raises(compiled.Failed, match="frozen.py changed"):
        compiled.compat_source("def frozen_builder(cls):\n    return cls\n")


def test_module_paths() -> None:
    assert compiled.module_paths(["seq", "tcp/tracker.py"]) == ["pcapcheck/seq.py", "pcapcheck/tcp/tracker.py"]
    with pytest.raises(compiled.Failed, match="no module"):
        compiled.module_paths(["tcp/nothing"])


def test_suite_runs_the_tests_named_or_all_of_them() -> None:
    """``--suite -- ARGS``: options go to pytest with the whole suite; test paths (or node ids) replace it."""
    assert compiled.pytest_targets([]) == ["tests"]
    assert compiled.pytest_targets(["-x", "-k", "rst"]) == ["tests", "-x", "-k", "rst"]
    assert compiled.pytest_targets(["tests/test_rst.py", "-x"]) == ["tests/test_rst.py", "-x"]
    assert compiled.pytest_targets(["tests/test_seq.py::test_lt"]) == ["tests/test_seq.py::test_lt"]
    assert compiled.pytest_targets(["tests/no_such_test.py"]) == ["tests", "tests/no_such_test.py"]


def test_differences_names_every_file_that_differs(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        (d / "index.html").write_text("same")
    (a / "report.json").write_text("1")
    (b / "report.json").write_text("2")
    (a / "conv-1.html").write_text("only here")
    assert compiled.differences(a, b) == ["conv-1.html", "report.json"]
    assert compiled.differences(a, a) == []


def test_timed_measures_a_command_and_fails_on_its_exit_status() -> None:
    wall, cpu = compiled.timed([sys.executable, "-c", "sum(range(10**6))"], "a loop")
    assert wall > 0 and cpu > 0
    with pytest.raises(compiled.Failed, match="a failure failed: boom"):
        compiled.timed([sys.executable, "-c", "import sys; sys.exit('boom')"], "a failure")


def test_the_patch_tests_skip_only_on_a_patched_frozen_py() -> None:
    """In the compiled copy (--suite) frozen.py is patched already: the tests of the patch skip there, and only there."""
    text = _unpatched((ROOT / "pcapcheck" / "frozen.py").read_text())  # (in the compiled copy this test skips too)
    assert not compiled.is_patched(text) and _unpatched(text) == text
    with pytest.raises(pytest.skip.Exception, match="patched already"):
        _unpatched(compiled.compat_source(text))


def test_interpreted_skips_only_where_a_module_is_compiled() -> None:
    """tests.conftest.interpreted: what lets --suite leave out the tests that watch compiled code by patching it."""
    from types import ModuleType

    from tests.conftest import interpreted

    source, compiled_one = ModuleType("pcapcheck.x"), ModuleType("pcapcheck.y")
    source.__file__, compiled_one.__file__ = "/a/pcapcheck/x.py", "/a/pcapcheck/y.cpython-311-x86_64-linux-gnu.so"
    interpreted(source)  # nothing happens
    with pytest.raises(pytest.skip.Exception, match=r"needs pcapcheck\.y interpreted"):
        interpreted(source, compiled_one)


def test_the_modules_it_compiles_type_check(tmp_path: Path) -> None:
    """mypyc trusts the annotations of the modules it compiles: where mypy finds an error, the compiled code can
    raise TypeError or crash (docs/performance.md, "A compiled core, measured"). mypy is no pcapcheck dependency;
    make bench-compiled installs it into the venv, and where it is this keeps the experiment's modules clean."""
    try:
        import mypy.api
    except ImportError:
        pytest.skip("mypy is not installed (make bench-compiled installs it): the compiled modules' annotations "
                    "are not checked")
    files = [str(ROOT / f) for f in compiled.module_paths(list(compiled.DEFAULT_MODULES))]
    out, err, status = mypy.api.run(["--ignore-missing-imports", "--follow-imports=silent",
                                     "--cache-dir", str(tmp_path), *files])
    assert status == 0, out + err
