"""The public API: every exported name resolves, and the type checker's view lists exactly the same names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import stalegrad as sg


def test_every_exported_name_resolves():
    for name in sg.__all__:
        assert getattr(sg, name) is not None, name
    assert sg.train.replay is sg.replay  # a subpackage without importing it first


def test_the_type_checking_block_declares_every_export():
    tree = ast.parse(Path(sg.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    declared = {alias.asname or alias.name for node in block.body for alias in node.names}
    lazy = set(sg.__all__) - {"__version__"}
    assert declared == lazy
    assert lazy == set(sg._EXPORTS) | set(sg._SUBPACKAGES)


@pytest.mark.slow
def test_a_type_checker_sees_real_types(tmp_path):
    """mypy reads ``sg.System`` as the class, not ``Any`` (the package ships py.typed)."""
    assert (Path(sg.__file__).parent / "py.typed").is_file()
    script = tmp_path / "use.py"
    script.write_text("import stalegrad as sg\nreveal_type(sg.System)\nreveal_type(sg.simulate)\n")
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent", str(script)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert 'Revealed type is "def (n: int, K: int, compute:' in out and "-> stalegrad.spec.System" in out, out
    assert "-> stalegrad.trace.Trace" in out, out


def test_importing_the_package_loads_no_heavy_module():
    heavy = "('numpy', 'scipy', 'numba', 'ray', 'matplotlib')"
    code = f"import sys, stalegrad; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
