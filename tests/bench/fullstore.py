"""A simulated full-size render store for benchmarks: random values, real shapes, a fixed seed.

``make_full_store(root)`` writes ``root/render`` (so ``root`` works as a RUN folder for
``edvis analyze``; a site benchmark adds the config and metrics it needs) holding, by default,
200 classes × 10,000 validation images × 80 epochs × 9 settings (clean, the five severities
of ``gaussian_noise``, gray, blur3, bgr): 720 units, about 4.7 GB. The values are random but
shaped like a learning model's: the true class's logit grows with the epoch at a per-class
speed and shrinks with the severity, so accuracy, confusion and corruption error all vary.

Units already present are kept, so an interrupted build resumes and a finished one is reused;
``root/simulated.json`` records the parameters and a store made with others is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edvis.run import RenderStore, Unit, atomic

SETTINGS = ["clean", "gaussian_noise-1", "gaussian_noise-2", "gaussian_noise-3", "gaussian_noise-4",
            "gaussian_noise-5", "gray", "blur3", "bgr", "blur5", "brg", "sp0.0005", "sp0.005"]
MAP_SIZE = 8
IMAGE_SIZE = 64

# Shared by the benchmarks that use the store.
REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("EDVIS_FULLSTORE", "/tmp/edvis-fullstore"))
UNIT_BYTES = 6.6e6  # one simulated unit on disk
UNITS = 80 * 9  # the default store's units

# Runs an edvis command, then prints this process's peak RSS (KiB on Linux) as the last line.
CHILD = """
import resource, sys
from edvis.cli import main
rc = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""


def edvis_child(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``edvis ARGS`` in its own process: (peak RSS in MB, the finished process); raises
    with its stderr when it fails."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"edvis {args[0]} failed:\n{proc.stderr}")
    return int(proc.stdout.split()[-1]) / 1024, proc


def check_space(extra: float, hint: str) -> int:
    """The number of the store's units still to write; fails early, naming the folder, when they
    and ``extra`` bytes do not fit on its disk."""
    missing = max(0, UNITS - len(list((ROOT / "render").glob("*/epoch_*.npz"))))
    ROOT.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ROOT).free
    if missing * UNIT_BYTES + extra > free:
        raise RuntimeError(f"{ROOT}: the simulated store needs {missing * UNIT_BYTES / 1e9:.1f} GB more and "
                           f"{hint} {extra / 1e9:.1f} GB; {free / 1e9:.1f} GB free (set EDVIS_FULLSTORE to another folder)")
    return missing


def make_full_store(root: str | Path, classes: int = 200, images: int = 10_000, epochs: int = 80,
                    settings: int = 9, seed: int = 0,
                    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
                    fingerprint: str | None = None, image_size: int = IMAGE_SIZE, map_size: int = MAP_SIZE) -> RenderStore:
    """Write (or reuse) the simulated store under ``root/render`` and return it.

    ``fingerprint`` is that of a dataset folder written for the store's validation index (the
    site benchmark's, which the site checks); the units do not depend on it, so giving one to an
    existing store rewrites its manifest alone. Without it, the store keeps the one it has."""
    if not 1 <= settings <= len(SETTINGS):
        raise ValueError(f"settings must be in [1, {len(SETTINGS)}], got {settings}")
    root = Path(root)
    params = {"classes": classes, "images": images, "epochs": epochs, "settings": settings, "seed": seed}
    if (image_size, map_size) != (IMAGE_SIZE, MAP_SIZE):  # (the default store's marker predates them)
        params.update(image_size=image_size, map_size=map_size)
    marker = root / "simulated.json"
    if marker.exists() and json.loads(marker.read_text()) != params:
        raise ValueError(f"{root} holds a simulated store made with {marker.read_text().strip()}, not {params}")
    atomic.write_json(marker, params)

    rng = np.random.default_rng([seed, 0])
    labels = rng.permutation(np.arange(images) % classes)
    x0 = rng.integers(0, image_size - 16, images)
    y0 = rng.integers(0, image_size - 16, images)
    x1 = np.minimum(x0 + rng.integers(8, image_size, images), image_size - 1)
    y1 = np.minimum(y0 + rng.integers(8, image_size, images), image_size - 1)
    speed = rng.uniform(0.3, 1.5, classes)  # how fast each class is learned
    store = RenderStore(root / "render")
    if store.manifest_path.exists():
        kept = store.manifest()["dataset"]["fingerprint"]
        if fingerprint is not None and fingerprint != kept:
            store.manifest_path.unlink()
            store = RenderStore(root / "render")
        else:
            fingerprint = kept
    store.init({
        "dataset": {"fingerprint": fingerprint or f"simulated-{classes}-{images}-{seed}", "layout": "simulated", "root": "",
                    "wnids": [f"n{c:08d}" for c in range(classes)], "names": [f"class {c}" for c in range(classes)]},
        "val": {"files": [f"val/images/val_{i}.JPEG" for i in range(images)], "labels": labels.tolist(),
                "boxes": np.stack([x0, y0, x1, y1], axis=1).tolist()},
        "image_size": image_size,
        "map_size": map_size,
    })
    todo = [Unit(s, e) for s in SETTINGS[:settings] for e in range(1, epochs + 1)]
    todo = [u for u in todo if not store.path(u).exists()]
    rows = np.arange(images)
    for n, unit in enumerate(todo, 1):
        k = SETTINGS.index(unit.perturbation)
        severity = int(unit.perturbation[-1]) if unit.perturbation.startswith("gaussian_noise") else (1 if k else 0)
        r = np.random.default_rng([seed, 1, k, unit.epoch])
        logits = r.standard_normal((images, classes), dtype=np.float32)  # (N, C)
        logits[rows, labels] += (5 * speed[labels] * unit.epoch / epochs - 0.6 * severity).astype(np.float32)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        k5 = min(5, classes)
        top = np.argpartition(-probs, k5 - 1, axis=1)[:, :k5]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(probs, top, axis=1), axis=1), axis=1)
        maps = r.random((2, images, map_size, map_size), dtype=np.float32)  # (2, N, S, S)
        store.write(unit, {
            "probs": probs.astype(np.float16),
            "top5": top.astype(np.int16),
            "top5_prob": np.take_along_axis(probs, top, axis=1),
            "map_true": maps[0].astype(np.float16),
            "map_pred": maps[1].astype(np.float16),
        }, {"simulated": True})
        if n % 40 == 0 or n == len(todo):
            log(f"fullstore: wrote {n}/{len(todo)} units under {store.root}")
    return store
