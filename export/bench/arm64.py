"""The gateway on ARM64, proven under emulation (``make arm64-check``; minutes, root, not in ``make test``).

    python -m export.bench.arm64 [--work DIR] [--cache DIR] [--update BENCHMARKS.md]

On an x86-64 Debian machine with no Docker daemon and no ARM hardware:

1. builds a Debian arm64 root filesystem with ``mmdebstrap`` and runs it under ``qemu-user-static``
   (binfmt_misc), installs the **base** package's dependencies into a venv there from PyPI's aarch64
   wheels (``--only-binary=:all:``, so nothing builds from source; no torch), and caches the
   prepared root filesystem as one tarball keyed on the suite, the Debian packages and the
   dependency list;
2. trains a small model on synthetic data here, exports it twice (``--target x86_64`` and
   ``--target arm64``), installs this checkout's package (a pure-Python wheel, no dependencies)
   into the emulated venv;
3. inside the emulated root filesystem: checks torch is absent, counts the unfused weight
   ``DequantizeLinear`` nodes of the arm64 bundle in the target's onnxruntime, scores the synthetic
   test set with the arm64 bundle; here: the same data with the x86 bundle and with the arm64 bundle,
   and compares decisions and scores;
4. runs ``edge-aae serve`` inside the emulated root filesystem against a mosquitto on the host, next
   to a host daemon with the same bundle under another gateway id, replays the test set to both,
   and compares the alerts that arrive.

Emulated speed is not a benchmark: the timings are reported as a functional check only.

Facts this relies on (Debian 12, QEMU 7.2): ``binfmt_misc`` may need mounting; ``import onnxruntime``
crashes in its CPU detection when it reads the host's x86 ``/proc/cpuinfo``, so an ARM-format one is
bind-mounted over it; ``QEMU_CPU=cortex-a72`` (a Raspberry Pi 4's core) is much faster to emulate
than QEMU's default ``max``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from export.bench.common import markdown_table, update_section
from export.quantize import count_weight_dequant

ROOT = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
DEBIAN_PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
VENV = "/opt/edge-aae"
QEMU_CPU = "cortex-a72"
ROOTFS_FORMAT = 1  # bump when the preparation steps change
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "qemu-aarch64-static": "qemu-user-static",
              "update-binfmts": "binfmt-support"}

# What a Raspberry Pi 4 reports; onnxruntime's cpuinfo parser needs an ARM-format file.
ARM_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    for i in range(4)) + "Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


class Arm64CheckError(RuntimeError):
    """A step of the check could not run; the message says which and how to fix it."""


def log(msg: str) -> None:
    """One progress line (this is a command-line tool)."""
    print(f"[arm64-check] {msg}", flush=True)


def run(cmd: list[str], timeout_s: float = 1800, env: dict[str, str] | None = None,
        what: str = "") -> str:
    """Run ``cmd``; on failure raise with its last output lines."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-25:])
        raise Arm64CheckError(f"{what or cmd[0]} failed (exit {p.returncode}): {' '.join(cmd)[:300]}\n{tail}")
    return p.stdout


def ensure_host_tools() -> None:
    """``mmdebstrap``, ``qemu-aarch64-static`` and ``update-binfmts``; installs them with apt when root."""
    missing = [pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Arm64CheckError(f"missing host packages {', '.join(missing)}: install them with "
                              f"`apt-get install -y {' '.join(missing)}` (root, Debian)")
    log(f"installing {' '.join(missing)} from Debian's packages")
    run(["apt-get", "install", "-y", *missing], what="apt-get install")


def ensure_binfmt() -> None:
    """Mount ``binfmt_misc`` when it is not, and enable the aarch64 interpreter."""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], what="mounting binfmt_misc")
    run(["update-binfmts", "--enable", "qemu-aarch64"], what="update-binfmts --enable qemu-aarch64")
    entry = binfmt / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        raise Arm64CheckError(f"{entry} is not enabled: aarch64 binaries cannot run here")


def base_dependencies() -> list[str]:
    """The package's base dependencies (no extras: what a gateway installs)."""
    deps: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return deps


def cache_key(deps: list[str]) -> str:
    """Key of the prepared root filesystem: suite, Debian packages, dependency list, format."""
    text = json.dumps([SUITE, DEBIAN_PACKAGES, sorted(deps), ROOTFS_FORMAT])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def mounted(rootfs: Path) -> Iterator[None]:
    """``/proc`` (with an ARM ``cpuinfo`` over the host's) and ``/dev`` inside ``rootfs``, undone after."""
    fake = rootfs / "tmp" / "arm-cpuinfo"
    fake.write_text(ARM_CPUINFO)
    done: list[Path] = []
    try:
        for target, args in ((rootfs / "proc", ["-t", "proc", "proc"]), (rootfs / "dev", ["--rbind", "/dev"]),
                             (rootfs / "proc" / "cpuinfo", ["--bind", str(fake)])):
            run(["mount", *args, str(target)], what=f"mounting {target}")
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def chroot(rootfs: Path, cmd: list[str], timeout_s: float = 1800, what: str = "") -> str:
    """Run ``cmd`` in the emulated root filesystem (one thread, the Pi 4's core)."""
    env = {"PATH": f"{VENV}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
           "QEMU_CPU": QEMU_CPU, "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    return run([shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), *cmd], timeout_s=timeout_s, env=env,
               what=what)


def prepare_rootfs(rootfs: Path, cache: Path) -> dict[str, Any]:
    """Restore the cached root filesystem into ``rootfs``, or build and cache it. Returns timings."""
    deps = base_dependencies()
    tarball = cache / f"rootfs-{SUITE}-arm64-{cache_key(deps)}.tar"
    t0 = time.monotonic()
    if tarball.exists():
        log(f"restoring the cached root filesystem {tarball}")
        rootfs.mkdir(parents=True)
        run(["tar", "-xf", str(tarball), "-C", str(rootfs)], what="restoring the cached root filesystem")
        return {"rootfs": "cached", "rootfs_s": time.monotonic() - t0, "tarball": tarball}
    log(f"building a Debian {SUITE} arm64 root filesystem with mmdebstrap (minutes)")
    run(["mmdebstrap", "--arch=arm64", "--variant=apt", f"--include={DEBIAN_PACKAGES}", SUITE, str(rootfs)],
        what="mmdebstrap")
    built_s = time.monotonic() - t0
    # the host's own CA certificates (a proxy's included), so pip inside reaches PyPI as the host does
    local_cas = Path("/usr/local/share/ca-certificates")
    if local_cas.is_dir():
        shutil.copytree(local_cas, rootfs / "usr/local/share/ca-certificates", dirs_exist_ok=True)
    with mounted(rootfs):
        chroot(rootfs, ["update-ca-certificates"], what="update-ca-certificates")
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():  # certificates the host trusts without a file under local_cas
            with (rootfs / "etc/ssl/certs/ca-certificates.crt").open("a") as f:
                f.write(host_bundle.read_text())
        log("creating the venv and installing the base dependencies from PyPI's aarch64 wheels")
        chroot(rootfs, ["python3", "-m", "venv", VENV], what="python3 -m venv")
        chroot(rootfs, [f"{VENV}/bin/pip", "install", "-q", "--no-cache-dir", "--only-binary=:all:", *deps],
               what="pip install (aarch64 wheels only)")
    cache.mkdir(parents=True, exist_ok=True)
    run(["tar", "-cf", str(tarball) + ".part", "-C", str(rootfs), "."], what="caching the root filesystem")
    os.replace(str(tarball) + ".part", tarball)
    return {"rootfs": "built", "rootfs_s": time.monotonic() - t0, "mmdebstrap_s": built_s, "tarball": tarball}


def wheel_versions(rootfs: Path) -> dict[str, str]:
    """Installed distributions in the emulated venv with the wheel tag they came from."""
    out = chroot(rootfs, [f"{VENV}/bin/python", "-c", (
        "import importlib.metadata as m, json, platform\n"
        "r = {}\n"
        "for d in m.distributions():\n"
        "    w = d.read_text('WHEEL') or ''\n"
        "    tags = [l.split(':', 1)[1].strip() for l in w.splitlines() if l.startswith('Tag:')]\n"
        "    r[d.metadata['Name']] = d.version + (' (' + tags[-1] + ')' if tags else '')\n"
        "r['machine'] = platform.machine()\n"
        "print(json.dumps(r))")], what="listing the emulated venv")
    return dict(json.loads(out.strip().splitlines()[-1]))


def train_and_export(work: Path) -> tuple[Path, Path, Path]:
    """Synthetic data, a short training run, and the x86_64 and arm64 bundles. Returns (test csv, x86, arm64)."""
    from edge_aae.core.data import load_series
    from edge_aae.train import synth
    from edge_aae.train.config import TrainConfig
    from edge_aae.train.detector import AAEDetector
    from export.bundle import build_bundle

    synth.write_dataset(work / "data", synth.generate(seed=0, train_rows=6000, test_rows=6000), seed=0)
    det = AAEDetector(TrainConfig(epochs=8, threads=1)).fit(load_series(work / "data/train.csv"))
    det.save(work / "run")
    bundles = []
    for target in ("x86_64", "arm64"):
        rep = build_bundle(work / "run", work / f"bundle-{target}", version="1.0.0", target=target)
        log(f"exported for {target}: {rep.default_kind} {rep.int8_quantization} ({rep.default_reason})")
        bundles.append(work / f"bundle-{target}")
    return work / "data/test.csv", bundles[0], bundles[1]


def static_models(work: Path, bundle: Path, test_csv: Path) -> tuple[Path, Path]:
    """Static INT8 (int8 activations) of the bundle's FP32 graph for arm64, and the test windows as .npy.

    The bundle ships what passed the parity gate, which may be INT8 weights-only; this model is
    quantized the arm64 way whatever the gate said, so the target's integer kernels are exercised.
    """
    from edge_aae.core.data import load_series
    from edge_aae.core.manifest import FP32_MODEL
    from edge_aae.core.windows import series_windows
    from edge_aae.train.detector import AAEDetector
    from export.quantize import quantize_int8

    det = AAEDetector.load(work / "run")
    out = work / "static-arm64.onnx"
    quantize_int8(bundle / FP32_MODEL, out, det.load_calibration()["train"], "arm64", keep_fp32=("code",))
    windows, _ = series_windows(load_series(test_csv, label_col="label"), det.config_.window_len)
    np.save(work / "windows.npy", windows.astype(np.float32))
    return out, work / "windows.npy"


RUN_ONNX = """
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], sess_options=so, providers=["CPUExecutionProvider"])
w = np.load(sys.argv[2])
name = s.get_inputs()[0].name
np.save(sys.argv[3], np.concatenate([s.run(None, {name: w[i:i + 256]})[0] for i in range(0, len(w), 256)]))
"""


def agreement(sa: np.ndarray, sb: np.ndarray, da: np.ndarray, db: np.ndarray) -> dict[str, float]:
    """Decision agreement of flags ``da``/``db`` and the largest relative difference of scores ``sa``/``sb``."""
    rel = np.abs(sa - sb) / np.maximum(np.abs(sb), 1e-6)
    return {"windows": float(sa.size), "agreement": float(np.mean(da == db)), "max_rel_diff": float(rel.max()),
            "flagged_a": float(da.sum()), "flagged_b": float(db.sum())}


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``score`` and ``is_anomaly`` columns of a scores CSV."""
    header = path.read_text().splitlines()[0].split(",")
    raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(header.index("score"),
                                                                      header.index("is_anomaly")), dtype=str)
    return raw[:, 0].astype(np.float64), np.isin(raw[:, 1], ["1", "True", "true"])


def compare(a: Path, b: Path) -> dict[str, float]:
    """:func:`agreement` of two scores CSVs (their own thresholds' flags)."""
    sa, da = read_scores(a)
    sb, db = read_scores(b)
    if sa.shape != sb.shape:
        raise Arm64CheckError(f"{a} has {sa.size} windows, {b} has {sb.size}")
    return agreement(sa, sb, da, db)


def serve_both(rootfs: Path, work: Path, bundle: Path, test_csv: Path) -> dict[str, Any]:
    """The emulated daemon and a host daemon with the same bundle, one broker, the same replay."""
    from edge_aae.core.data import load_series
    from edge_aae.devtools.daemon_process import DaemonProcess, write_config
    from edge_aae.devtools.mosquitto import Mosquitto
    from edge_aae.devtools.mqtt_recorder import Recorder, publisher
    from edge_aae.devtools.replay import publish_acked, reading_batches

    broker = Mosquitto(work / "broker")
    broker.start()
    rec = Recorder(broker.port, "edge-aae/#")
    inside = rootfs / "check"
    arm_cfg = write_config(inside / "gw-arm.toml", Path("/check") / bundle.name, Path("/check/outbox-arm"),
                           gateway="gw-arm")
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8", "QEMU_CPU": QEMU_CPU}
    arm_log = (work / "daemon-arm.log").open("wb")
    arm = subprocess.Popen([shutil.which("chroot") or "/usr/sbin/chroot", str(rootfs), f"{VENV}/bin/edge-aae",
                            "serve", "--config", f"/check/{arm_cfg.name}", "--broker", broker.url], stdout=arm_log,
                           stderr=subprocess.STDOUT, env=env)
    host = DaemonProcess(work, write_config(work / "gw-x86.toml", bundle, work / "outbox-x86", gateway="gw-x86"),
                         broker.url)

    def online(r: Recorder, gw: str) -> bool:
        return any(m.get("state") == "online" for t, p, _ in r.messages if t == f"edge-aae/{gw}/status" and p
                   for m in [json.loads(p)])

    def stats(r: Recorder, gw: str) -> dict[str, Any]:
        msgs = [json.loads(p) for t, p, _ in r.messages if t == f"edge-aae/{gw}/status" and p]
        on = [m for m in msgs if m.get("state") == "online"]
        return dict(on[-1].get("stats", {})) if on else {}

    try:
        t0 = time.monotonic()
        if not rec.wait_for(lambda r: online(r, "gw-arm") and online(r, "gw-x86"), 300):
            raise Arm64CheckError("the emulated daemon did not come online within 300 s:\n"
                                  + (work / "daemon-arm.log").read_text(errors="replace")[-2000:])
        start_s = time.monotonic() - t0
        data = load_series(test_csv, label_col="label")
        pub = publisher(broker.port, "arm64-check-replayer", max_inflight=1000)
        t1 = time.monotonic()
        for p in reading_batches(data, 20):
            for gw in ("gw-arm", "gw-x86"):
                publish_acked(pub, f"edge-aae/{gw}/sensors/pump1", p)
        n_windows = len(data.timestamps) - (json.loads((bundle / "manifest.json").read_text())["window_len"] - 1)
        done = rec.wait_for(lambda r: all(stats(r, gw).get("windows_scored", 0) >= n_windows
                                          for gw in ("gw-arm", "gw-x86")), 900)
        stream_s = time.monotonic() - t1
        time.sleep(2)
        pub.disconnect()

        def alerts(gw: str) -> list[tuple[Any, ...]]:
            return sorted((t.split("/")[3], m.get("event"), m.get("ts"), m.get("since"),
                           [c.get("channel") for c in m.get("top_channels") or []][:1])
                          for t, p, _ in rec.messages if t.startswith(f"edge-aae/{gw}/") and t.endswith("/alert")
                          and p for m in [json.loads(p)])

        arm_alerts, x86_alerts = alerts("gw-arm"), alerts("gw-x86")
        return {"daemon_start_s": start_s, "stream_s": stream_s, "all_scored": done,
                "windows_arm": stats(rec, "gw-arm").get("windows_scored", 0), "windows_expected": n_windows,
                "alerts_arm": len(arm_alerts), "alerts_x86": len(x86_alerts),
                "alerts_identical": arm_alerts == x86_alerts}
    finally:
        rec.close()
        arm.terminate()
        try:
            arm.wait(30)
        except subprocess.TimeoutExpired:
            arm.kill()
        arm_log.close()
        host.close()
        broker.stop()


def check(work: Path, cache: Path) -> dict[str, Any]:
    """Every step above; returns the figures for the report."""
    t_all = time.monotonic()
    ensure_host_tools()
    ensure_binfmt()
    rootfs = work / "rootfs"
    res: dict[str, Any] = prepare_rootfs(rootfs, cache)
    log(f"root filesystem ready ({res['rootfs']}, {res['rootfs_s']:.0f} s)")
    t0 = time.monotonic()
    test_csv, x86, arm = train_and_export(work)
    res["train_export_s"] = time.monotonic() - t0
    log("building this checkout's wheel (pure Python, no dependencies)")
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(work / "wheel"), str(ROOT)], what="pip wheel")
    inside = rootfs / "check"
    inside.mkdir()
    wheel = next((work / "wheel").glob("edge_aae-*.whl"))
    shutil.copy(wheel, inside / wheel.name)
    static, windows = static_models(work, arm, test_csv)
    for src in (arm, x86, test_csv, static, windows):
        (shutil.copytree if src.is_dir() else shutil.copy)(src, inside / src.name)
    (inside / "run_onnx.py").write_text(RUN_ONNX)
    with mounted(rootfs):
        t0 = time.monotonic()
        chroot(rootfs, [f"{VENV}/bin/pip", "install", "-q", "--no-index", "--no-deps", f"/check/{wheel.name}"],
               what="installing edge-aae into the emulated venv")
        res["wheels"] = wheel_versions(rootfs)
        chroot(rootfs, [f"{VENV}/bin/python", "-c", "import importlib.util, sys; "
                        "sys.exit(importlib.util.find_spec('torch') is not None)"], what="checking torch is absent")
        chroot(rootfs, [f"{VENV}/bin/python", "-c", (
            "import onnxruntime as ort\n"
            "so = ort.SessionOptions(); so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL\n"
            "so.optimized_model_filepath = '/check/optimized.onnx'; so.intra_op_num_threads = 1\n"
            "so.log_severity_level = 3\n"
            f"ort.InferenceSession('/check/{static.name}', sess_options=so)")],
               what="optimizing the static INT8 arm64 model with the target's onnxruntime")
        res["unfused_arm64"] = count_weight_dequant(inside / "optimized.onnx")
        log("static INT8 (int8 activations) on the emulated arm64 and here")
        chroot(rootfs, [f"{VENV}/bin/python", "/check/run_onnx.py", f"/check/{static.name}",
                        f"/check/{windows.name}", "/check/static-on-arm64.npy"], what="static INT8 on arm64")
        run([sys.executable, str(inside / "run_onnx.py"), str(static), str(windows), str(work / "static-on-x86.npy")],
            what="static INT8 here")
        thr = json.loads((arm / "manifest.json").read_text())["models"]["model.fp32.onnx"]["threshold"]
        on_arm, on_x86 = np.load(inside / "static-on-arm64.npy"), np.load(work / "static-on-x86.npy")
        res["static"] = agreement(on_arm, on_x86, on_arm > float(thr), on_x86 > float(thr))
        log("scoring the test set on the emulated arm64 with the arm64 bundle")
        t1 = time.monotonic()
        chroot(rootfs, [f"{VENV}/bin/edge-aae", "score", f"/check/{arm.name}", "--data", f"/check/{test_csv.name}",
                        "--out", "/check/scores-arm64-on-arm64.csv"], what="edge-aae score on arm64")
        res["score_arm_s"] = time.monotonic() - t1
        res["install_score_s"] = time.monotonic() - t0
        for bundle, name in ((x86, "x86-on-x86"), (arm, "arm64-on-x86")):
            run([sys.executable, "-m", "edge_aae.cli", "score", str(bundle), "--data", str(test_csv),
                 "--out", str(work / f"scores-{name}.csv")], what=f"edge-aae score ({name})")
        res["vs_x86_bundle"] = compare(inside / "scores-arm64-on-arm64.csv", work / "scores-x86-on-x86.csv")
        res["vs_same_bundle_on_x86"] = compare(inside / "scores-arm64-on-arm64.csv", work / "scores-arm64-on-x86.csv")
        log("edge-aae serve on the emulated arm64 and on the host, one broker, the same replay")
        t1 = time.monotonic()
        res["serve"] = serve_both(rootfs, work, arm, test_csv)
        res["serve_s"] = time.monotonic() - t1
    for kind in ("x86_64", "arm64"):
        shipped = json.loads((work / f"bundle-{kind}" / "manifest.json").read_text())["models"]["model.onnx"]
        res[f"quantization_{kind}"] = f"{shipped['kind']} {shipped.get('quantization', '')}".strip()
    res["total_s"] = time.monotonic() - t_all
    return res


def verdict(res: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """(check, passed, figures) rows."""
    v, s, srv = res["vs_x86_bundle"], res["vs_same_bundle_on_x86"], res["serve"]
    return [
        ("machine inside the root filesystem is aarch64", res["wheels"].get("machine") == "aarch64",
         res["wheels"].get("machine", "?")),
        ("arm64 bundle on arm64 vs the same bundle on x86: decisions", s["agreement"] == 1.0,
         f"{s['agreement']:.2%} of {int(s['windows'])} windows agree, max relative score difference "
         f"{s['max_rel_diff']:.1e}"),
        ("arm64 bundle on arm64 vs the x86 bundle on x86: decisions", v["agreement"] >= 0.99,
         f"{v['agreement']:.2%} agree ({int(v['flagged_a'])} vs {int(v['flagged_b'])} flagged), max relative "
         f"score difference {v['max_rel_diff']:.1e}"),
        ("static INT8 (int8 activations) on arm64 vs the same model on x86: decisions",
         res["static"]["agreement"] >= 0.999,
         f"{res['static']['agreement']:.2%} agree at the FP32 threshold, max relative score difference "
         f"{res['static']['max_rel_diff']:.1e}"),
        ("unfused weight DequantizeLinear in the target's optimized static INT8 graph", res["unfused_arm64"] == 0,
         str(res["unfused_arm64"])),
        ("edge-aae serve on arm64: every window scored, alerts arrive", bool(srv["all_scored"]) and
         srv["alerts_arm"] > 0, f"{srv['windows_arm']:,} of {srv['windows_expected']:,} windows, "
                                f"{srv['alerts_arm']} alert events"),
        ("alerts from the arm64 daemon identical to a host daemon's (same bundle, same replay)",
         bool(srv["alerts_identical"]), f"{srv['alerts_arm']} vs {srv['alerts_x86']}"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the check, print the table, optionally write it into BENCHMARKS.md."""
    ap = argparse.ArgumentParser(prog="python -m export.bench.arm64")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one, removed after)")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                    / "edge-aae" / "arm64", help="where the prepared root filesystem is cached")
    ap.add_argument("--update", type=Path, help="write the result into this BENCHMARKS.md")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("error: the arm64 check needs root (mmdebstrap, binfmt_misc, chroot, mounts)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edge-aae-arm64-")))
        work.mkdir(parents=True, exist_ok=True)
        try:
            res = check(work, args.cache)
        except Arm64CheckError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    rows = verdict(res)
    table = markdown_table(["check", "result", "figures"], [[c, "pass" if ok else "FAIL", f] for c, ok, f in rows])
    wheels = ", ".join(f"{k} {v}" for k, v in sorted(res["wheels"].items()) if k != "machine")
    srv = res["serve"]
    timings = (f"root filesystem {res['rootfs']} in {res['rootfs_s']:.0f} s; train and export here "
               f"{res['train_export_s']:.0f} s; install and score {int(res['vs_x86_bundle']['windows']):,} windows "
               f"under emulation {res['install_score_s']:.0f} s (scoring {res['score_arm_s']:.0f} s); emulated daemon "
               f"online in {srv['daemon_start_s']:.0f} s, replay scored in {srv['stream_s']:.0f} s; "
               f"whole check {res['total_s']:.0f} s")
    print(table)
    print(f"aarch64 wheels: {wheels}")
    print(f"timings (emulated, functional only): {timings}")
    if args.update:
        update_section(args.update, "arm64", (
            "## ARM64 under emulation (functional check, not a speed figure)\n\n"
            f"Debian {SUITE} arm64 root filesystem (mmdebstrap, qemu-user-static, `QEMU_CPU={QEMU_CPU}`), the base "
            f"package from PyPI's aarch64 wheels (`--only-binary=:all:`, no torch). Bundles: x86_64 "
            f"`{res['quantization_x86_64']}`, arm64 `{res['quantization_arm64']}`. Synthetic test set (seed 0).\n\n"
            f"{table}\n\naarch64 wheels: {wheels}.\n\nTimings under emulation (a functional check; emulated speed "
            f"says nothing about a real gateway): {timings}."), "make arm64-check")
        print(f"updated {args.update}")
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
