"""The layering holds: core and gateway import without torch, onnx or export; only the CLI imports export."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import edge_aae

PACKAGE = Path(edge_aae.__file__).parent


def _imports(path: Path) -> set[str]:
    """Top-level module names a file imports (anywhere in it, functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (imports counted from nothing); its stdout. It must succeed."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_core_and_gateway_import_with_torch_onnx_and_export_blocked():
    code = ("import importlib, pkgutil, sys\n"
            "for name in ('torch', 'onnx', 'export', 'matplotlib'):\n"
            "    sys.modules[name] = None  # any import of them fails\n"
            "import edge_aae.core, edge_aae.gateway\n"
            "for pkg in (edge_aae.core, edge_aae.gateway):\n"
            "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "        importlib.import_module(m.name)\n"
            "print(len(sys.modules))\n")
    fresh_python(code)


def test_only_the_cli_imports_export():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli":
            continue
        bad = sorted(n for n in _imports(path) if n == "export" or n.startswith("export."))
        if bad:
            offenders.append(f"{rel}: {', '.join(bad)}")
    assert not offenders, offenders
    cli_imports = set().union(*(_imports(p) for p in (PACKAGE / "cli").glob("*.py")))
    assert any(n.startswith("export.") for n in cli_imports)  # the CLI is the one way in


def test_core_imports_nothing_above_it():
    for path in (PACKAGE / "core").rglob("*.py"):
        above = sorted(n for n in _imports(path) if n.startswith("edge_aae.")
                       and not n.startswith("edge_aae.core"))
        assert not above, f"{path.name} imports {above}"


def test_client_does_not_reach_into_the_daemon():
    for path in (PACKAGE / "client").rglob("*.py"):
        inner = sorted(n for n in _imports(path) if n.startswith("edge_aae.gateway.")
                       and n != "edge_aae.gateway.bundle")
        assert not inner, f"{path.name} imports {inner}"


def test_the_daemon_loads_only_what_scoring_needs():
    """Every imported module stays in memory for the daemon's life: file loading, tar archives and
    the metrics server's HTTP stack are imported where they are used, not at start; paho's unused
    ``urllib.request`` (with ``http.client``, ``email``, ``tempfile``) waits for its first use."""
    code = ("import sys\n"
            "from edge_aae.gateway.daemon import Daemon\n"
            "print(' '.join(m for m in ('edge_aae.core.data', 'tarfile', 'http.server', 'csv', 'torch', "
            "'http.client', 'email', 'tempfile', 'shutil') "
            "if m in sys.modules))\n")
    out = fresh_python(code).strip()
    assert out == "", f"loaded at start: {out}"


def test_serve_through_the_cli_loads_no_file_reader():
    """`edge-aae serve` builds the whole CLI's parser first: that must not pull in the data loader."""
    code = ("import sys\n"
            "import edge_aae.cli\n"
            "print(' '.join(m for m in ('edge_aae.core.data', 'csv', 'torch', 'export') if m in sys.modules))\n")
    out = fresh_python(code).strip()
    assert out == "", f"loaded with the CLI: {out}"


def test_urllib_request_deferred_for_paho_is_the_real_module_on_first_use():
    code = ("import sys\n"
            "import edge_aae.gateway.transport\n"
            "print('http.client' in sys.modules)\n"
            "import urllib.request\n"
            "from urllib.request import Request\n"
            "print(isinstance(urllib.request.getproxies(), dict), Request.__module__)\n"
            "print(type(sys.modules['urllib.request']).__name__, 'http.client' in sys.modules)\n")
    assert fresh_python(code).split() == ["False", "True", "urllib.request", "module", "True"]
