"""The gateway image and the base install: no torch, paths that exist, a non-root user."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile.arm64"


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multistage_arm64_slim_python():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2
    assert all("--platform=linux/arm64" in f for f in froms)
    image = re.search(r"PYTHON_IMAGE=python:(\d+)\.(\d+)-slim", DOCKERFILE.read_text())
    assert image
    assert (int(image[1]), int(image[2])) >= (3, 11)


def test_dockerfile_installs_no_torch_and_the_base_package_only():
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "torch" not in runs.replace("find_spec('torch')", "")
    assert "[train]" not in runs
    assert "[dev]" not in runs
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not [d for d in base if d.lower().startswith(("torch", "onnx>", "onnx=", "matplotlib"))]


def test_dockerfile_copies_paths_that_exist():
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            for s in sources:
                assert (ROOT / s).exists(), f"Dockerfile.arm64 copies {s}, which does not exist"


def test_dockerfile_runs_serve_as_non_root_with_volumes_and_health_check():
    ins = instructions()
    users = [rest for word, rest in ins if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" and "heartbeat" in rest for word, rest in ins)
    assert any(word == "VOLUME" and "models" in rest and "config" in rest for word, rest in ins)
    entry = [rest for word, rest in ins if word == "ENTRYPOINT"]
    assert entry
    assert '"edge-aae", "serve"' in entry[-1]


def test_image_and_firmware_configs_agree_on_paths():
    """The health check reads the heartbeat the configs' outbox writes; everything written is in the state volume."""
    ins = instructions()
    volumes = json.loads(next(rest for word, rest in ins if word == "VOLUME"))
    health = next(rest for word, rest in ins if word == "HEALTHCHECK")
    heartbeat = re.search(r"(/\S+/heartbeat)", health)[1]
    state = next(v for v in volumes if v.endswith("/state"))
    config_volume = next(v for v in volumes if v.endswith("/config"))
    for path in sorted((ROOT / "firmware_configs").glob("*.toml")):
        cfg = tomllib.loads(path.read_text())
        if path.stem == "x86-dev":  # a workstation, not the image: paths relative to the repository
            assert cfg["models"]["default"] == "../bundles/pump", "x86-dev must serve the README's bundles/pump"
            continue
        outbox = cfg["outbox"]["dir"]
        assert f"{outbox}/heartbeat" == heartbeat, f"{path.name}: outbox.dir {outbox} vs health check {heartbeat}"
        assert outbox.startswith(state + "/"), f"{path.name}: outbox.dir must be in the state volume {state}"
        models_dir = cfg["update"]["models_dir"]
        assert models_dir.startswith(state + "/"), f"{path.name}: update.models_dir must be writable ({state})"
        assert not models_dir.startswith(config_volume), path.name
        default = cfg["models"]["default"]
        assert any(default.startswith(v + "/") for v in volumes), f"{path.name}: models.default outside the volumes"


def _sections():
    import dataclasses

    from edge_aae.gateway.config import GatewayConfig

    out = {}
    for f in dataclasses.fields(GatewayConfig):
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(value):
            out[f.name] = value
    return out


def test_print_default_config_lists_every_key_with_its_default():
    import dataclasses
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "serve", "--print-default-config"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    doc = tomllib.loads(p.stdout)
    sections = _sections()
    assert set(sections) == {"broker", "models", "runtime", "stream", "alerting", "publish", "outbox",
                             "homeassistant", "update", "metrics", "monitor", "feedback"}
    for name, default in sections.items():
        assert name in doc, name
        keys = {f.name for f in dataclasses.fields(default)} - {"assets"}  # assets: a commented example
        assert keys == set(doc[name]), (name, keys ^ set(doc[name]))
        for key in keys:
            assert doc[name][key] == getattr(default, key), f"{name}.{key}"
    assert {"gateway_id", "topic_root"} <= set(doc)
    # every line that sets a key says what it does
    undocumented = [line for line in p.stdout.splitlines() if re.match(r"^[a-z_]+ = ", line) and "#" not in line]
    assert not undocumented, undocumented


def test_every_firmware_config_carries_every_section():
    for path in sorted((ROOT / "firmware_configs").glob("*.toml")):
        doc = tomllib.loads(path.read_text())
        missing = set(_sections()) - set(doc)
        assert not missing, f"{path.name} lacks {sorted(missing)}"


def test_the_default_config_passes_check_config_once_it_names_a_bundle(bundle, tmp_path):
    import subprocess
    import sys

    from edge_aae.gateway.config import default_config_text

    text = default_config_text().replace('default = ""', f'default = "{bundle}"', 1)
    (tmp_path / "gw.toml").write_text(text)
    p = subprocess.run([sys.executable, "-m", "edge_aae.cli", "serve", "--check-config", str(tmp_path / "gw.toml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
