"""The README's journeys run top to bottom, as written, on a fresh folder.

Every fenced block that the README marks with ``<!-- run by tests/test_readme.py -->`` runs in
document order in one empty folder (``sh`` blocks with bash, ``python`` blocks with this
interpreter). Two edits keep the run short on a CPU-only machine, and only these: training runs
2 epochs, and ``--device cuda`` becomes ``--device cpu``. Blocks that need a remote broker or
the shared data sets are not marked; the broker journeys are covered against a real mosquitto
by the gateway and client tests.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- run by tests/test_readme.py -->"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def marked_blocks() -> list[tuple[str, str]]:
    """(language, code) of every marked block, in document order."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for part in text.split(MARK)[1:]:
        m = FENCE.match(part.lstrip("\n"))
        assert m, f"README: {MARK} must sit right above a fenced block"
        blocks.append((m.group(1), m.group(2)))
    return blocks


def shorten(lang: str, code: str) -> str:
    """The only edits: 2 training epochs and the CPU instead of CUDA."""
    if lang == "python":
        return re.sub(r"epochs=\d+", "epochs=2", code)
    code = code.replace("--device cuda", "--device cpu")
    return re.sub(r"edge-aae train (?!.*--epochs)", "edge-aae train --epochs 2 ", code)


def test_the_readme_marks_the_local_journeys():
    langs = [lang for lang, _ in marked_blocks()]
    assert langs.count("sh") >= 4
    assert "python" in langs
    joined = "\n".join(code for _, code in marked_blocks())
    for step in ("edge-aae synth", "edge-aae train", "edge-aae score", "edge-aae export", "edge-aae verify",
                 "edge-aae eval", "--print-default-config", "AAEDetector.load"):
        assert step in joined, f"README: no marked block runs {step!r}"


def test_readme_journeys_run_top_to_bottom(tmp_path):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               MPLBACKEND="Agg")
    for i, (lang, code) in enumerate(marked_blocks()):
        code = shorten(lang, code)
        cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block {i + 1} ({lang}) failed:\n{code}\n--- stderr\n{proc.stderr[-3000:]}"
        assert "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "bundles/pump/manifest.sig").is_file()
    assert (tmp_path / "eval-out/metrics.json").is_file()
    assert (tmp_path / "samples.csv").is_file()
    assert "[update]" in (tmp_path / "gateway.toml").read_text(encoding="utf-8")
