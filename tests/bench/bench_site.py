"""`edvis site` on a simulated full-size run: build time, site size and file count, the heaviest
class page, and that two builds are byte-identical.

The render store is fullstore.py's (200 classes × 10,000 images × 80 epochs × 9 settings, about
4.7 GB, shared with bench_analysis.py under ``$EDVIS_FULLSTORE``, default /tmp/edvis-fullstore).
The run folder, ``$EDVIS_BENCH_DIR/site-run`` (default /tmp/edvis-bench), links to that store and
adds what a site needs besides it: 10,000 validation JPEGs (64×64, smooth colour fields with a
shape, drawn from a fixed seed), a config.json, an 80-epoch metrics.jsonl and ``edvis analyze``'s
analysis.json (made once, not timed). The simulated clean units hold no top-5 maps, so the
galleries show top-1 maps; there is no layers file and no second run to compare with. Each
build runs in its own process and is timed as a whole.

The 224-px case: the same 200 classes × 50 validation images, 224×224 JPEGs and 7×7 maps (a
ResNet's at 224 px), its own store under ``$EDVIS_FULLSTORE-224``. Its images are photographs:
2×2 mosaics of four Tiny ImageNet validation images (``$EDVIS_BENCH_PHOTOS``, default the shared
subset's) resized to 224 px, so the sprite sheets weigh what a photograph's detail weighs. ``EDVIS_BENCH_224=E,S`` sets
its epochs and settings (default 80,9, the full size; 0 skips it); a smaller store measures the
sizes, which ``docs/own-model.md`` extrapolates to 80 epochs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from fullstore import REPO, ROOT, check_space, edvis_child, make_full_store
from PIL import Image

from edvis.data import open_dataset

BENCH = Path(os.environ.get("EDVIS_BENCH_DIR", "/tmp/edvis-bench"))
RUN = BENCH / "site-run"
OUT = BENCH / "site"
BUILD_S = 300.0
SITE_BYTES = 1e9
SITE_FILES = 50_000
PAGE_BYTES = 2e6
PEAK_MB = 500.0  # readers stream one class or page at a time
# Real photographs for the 224-px case's images (their detail is what weighs in the sprite sheets).
PHOTOS = Path(os.environ.get("EDVIS_BENCH_PHOTOS", str(REPO.parent / "shared" / "data" / "tiny-imagenet-200-subset20"
                                                   / "val" / "images")))


def write_images(data: Path, files: list[str], seed: int = 0, size: int = 64, photos: Path | None = None) -> None:
    """The validation images the manifest names, if not there yet: size × size JPEGs that compress
    like photos (a smooth 4×4 colour field upsampled, a darker disc, a little noise); with
    ``photos`` (a folder of JPEGs, e.g. Tiny ImageNet's validation images), each image is instead
    a 2×2 mosaic of four of them resized to size × size, for a photograph's detail in the sheets."""
    marker = data / "complete.json"
    want = {"images": len(files), "seed": seed, **({"size": size} if size != 64 else {}),
            **({"photos": str(photos)} if photos else {})}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return
    if photos is not None:
        sources = sorted(photos.glob("*.JPEG"))
        for n, rel in enumerate(files):
            quad = [np.asarray(Image.open(sources[(4 * n + k) % len(sources)]).convert("RGB").resize((64, 64)))
                    for k in range(4)]
            mosaic = np.concatenate([np.concatenate(quad[:2], 1), np.concatenate(quad[2:], 1)], 0)
            path = data / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mosaic).resize((size, size), Image.Resampling.BICUBIC).save(path, quality=90)
        marker.write_text(json.dumps(want))
        return
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    k = size / 64
    for rel in files:
        field = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(field).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
        cx, cy, r = [int(k * v) for v in rng.integers(12, 52, 2).tolist() + [int(rng.integers(6, 16))]]
        image[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] *= 0.4
        image += rng.normal(0, 4, image.shape)
        path = data / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    marker.write_text(json.dumps(want))


def write_layout(data: Path, manifest: dict) -> None:
    """Around the validation images, the rest of a Tiny ImageNet folder: class lists, the
    validation annotations (labels and boxes from the manifest) and one training image per class."""
    wnids, names = manifest["dataset"]["wnids"], manifest["dataset"]["names"]
    (data / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (data / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in zip(wnids, names)))
    val = manifest["val"]
    (data / "val" / "val_annotations.txt").write_text("".join(
        f"{Path(f).name}\t{wnids[label]}\t" + "\t".join(map(str, box)) + "\n"
        for f, label, box in zip(val["files"], val["labels"], val["boxes"])))
    first = data / val["files"][0]
    for w in wnids:
        image = data / "train" / w / "images" / f"{w}_0.JPEG"
        if not image.exists():
            image.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(first, image)


def write_run_files(root: Path, epochs: int = 80, model: str = "edvis-resnet18", image_size: int = 64) -> None:
    """config.json and metrics.jsonl of an 80-epoch run of the author's recipe."""
    config = {"model": {"name": model, "variant": "author", "num_classes": 200, "image_size": image_size},
              "train": {"recipe": "author", "epochs": epochs, "batch_size": 100, "optimizer": "sgd", "lr": 1e-4},
              "dataset": {"root": str(root / "data"), "layout": "simulated"}}
    (root / "config.json").write_text(json.dumps(config, indent=1))  # the store names no dataset folder: this one
    rows = [{"epoch": e, "train_loss": 5.3 - 3 * e / epochs, "val_loss": 5.2 - 2.5 * e / epochs,
             "train_top1": 0.6 * e / epochs, "val_top1": 0.5 * e / epochs, "train_top5": 0.85 * e / epochs,
             "val_top5": 0.75 * e / epochs, "lr": 1e-4, "seconds": 540.0} for e in range(1, epochs + 1)]
    (root / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def build(out: Path, run: Path = RUN) -> tuple[float, float, str]:
    """Seconds, peak RSS (MB) and log of one `edvis site` process into ``out`` (emptied first)."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.monotonic()
    rss, proc = edvis_child("site", "--run", str(run), "--out", str(out))
    return time.monotonic() - t, rss, proc.stderr


def tree(out: Path) -> dict[str, tuple[int, str]]:
    """Every file of a site: relative path -> (size, sha256)."""
    return {p.relative_to(out).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(out.rglob("*")) if p.is_file()}


def class_page_bytes(out: Path, files: dict[str, tuple[int, str]]) -> tuple[int, str]:
    """The largest class page with everything it loads: its HTML, CSS, JS, data and sprite."""
    shared = sum(files[f][0] for f in ("static/edvis.css", "static/edvis.js", "data/common.js"))
    worst = (0, "")
    for page in (out / "classes").glob("*.html"):
        key = page.name.split("-", 1)[0]
        total = files[f"classes/{page.name}"][0] + shared
        total += sum(files.get(f"data/{key}.{ext}", (0, ""))[0] for ext in ("js", "png", "jpg"))
        worst = max(worst, (total, page.name))
    return worst


def prepare(run_dir: Path, store_root: Path, image_size: int = 64, map_size: int = 8, epochs: int = 80,
            settings: int = 9, model: str = "edvis-resnet18", photos: Path | None = None) -> None:
    """The run folder of a simulated full-size run, analysed (not timed)."""
    store = make_full_store(store_root, epochs=epochs, settings=settings, image_size=image_size, map_size=map_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "render").exists():
        (run_dir / "render").symlink_to(store.root.resolve(), target_is_directory=True)
    write_images(run_dir / "data", store.manifest()["val"]["files"], size=image_size, photos=photos)
    write_layout(run_dir / "data", store.manifest())
    make_full_store(store_root, epochs=epochs, settings=settings, image_size=image_size, map_size=map_size,
                    fingerprint=open_dataset(run_dir / "data").fingerprint())  # the site checks it
    write_run_files(run_dir, epochs, model, image_size)
    edvis_child("analyze", "--run", str(run_dir))


def measure(run_dir: Path, out: Path, what: str) -> list[dict]:
    """Two builds of ``run_dir``'s site: the rows of the table, each named after ``what``."""
    first, rss, log = build(out / "a", run_dir)
    print(f"bench: {what} site built in {first:.0f}s, peak RSS {rss:.0f} MB", file=sys.stderr, flush=True)
    a = tree(out / "a")
    second, _, _ = build(out / "b", run_dir)
    b = tree(out / "b")
    size = sum(s for s, _ in a.values())
    page, name = class_page_bytes(out / "a", a)
    same = a == b
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if differ:
        print(f"bench: builds differ in {len(differ)} file(s), e.g. {differ[:5]}", file=sys.stderr)
    return [
        {"benchmark": f"site: {what} build (s)", "measured": f"{first:.0f} s (again: {second:.0f} s), peak RSS {rss:.0f} MB",
         "ratio": first / BUILD_S, "target": f"≤ {BUILD_S:.0f} s", "met": first <= BUILD_S},
        {"benchmark": f"site: {what} build peak memory (MB RSS)", "measured": f"{rss:.0f} MB",
         "ratio": rss / PEAK_MB, "target": f"≤ {PEAK_MB:.0f} MB", "met": rss <= PEAK_MB},
        {"benchmark": f"site: size of the {what} site (MB)", "measured": f"{size / 1e6:.0f} MB",
         "ratio": size / SITE_BYTES, "target": "≤ 1000 MB", "met": size <= SITE_BYTES},
        {"benchmark": f"site: files in the {what} site", "measured": f"{len(a)} files",
         "ratio": len(a) / SITE_FILES, "target": f"≤ {SITE_FILES}", "met": len(a) <= SITE_FILES},
        {"benchmark": f"site: {what} heaviest class page with all it loads (MB)", "measured": f"{page / 1e6:.2f} MB ({name})",
         "ratio": page / PAGE_BYTES, "target": "≤ 2 MB", "met": page <= PAGE_BYTES},
        {"benchmark": f"site: {what} two builds byte-identical", "measured": "identical" if same else f"{len(differ)} differ",
         "ratio": None, "target": "identical", "met": same},
    ]


def run() -> list[dict]:
    check_space(1.5e9, "two sites about")
    t = time.monotonic()
    prepare(RUN, ROOT)
    print(f"bench: full-size run ready in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    rows = measure(RUN, OUT, "full-size")
    return rows + run_224()


def run_224() -> list[dict]:
    """The 224-px case (``EDVIS_BENCH_224``: its epochs and settings, or 0 to skip it)."""
    spec = os.environ.get("EDVIS_BENCH_224", "80,9")
    if spec.strip() == "0":
        return []
    epochs, settings = (int(v) for v in spec.split(","))
    t = time.monotonic()
    photos = PHOTOS if PHOTOS.is_dir() else None
    if photos is None:
        print(f"bench: {PHOTOS} not found: the 224-px images are drawn, which compress better than photographs",
              file=sys.stderr, flush=True)
    prepare(BENCH / "site-run-224", Path(f"{ROOT}-224"), image_size=224, map_size=7, epochs=epochs,
            settings=settings, model="torchvision:resnet50", photos=photos)
    print(f"bench: 224-px run ready in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    what = "224-px" + ("" if (epochs, settings) == (80, 9) else f" ({epochs} epochs × {settings} settings)")
    return measure(BENCH / "site-run-224", BENCH / "site-224", what)


if __name__ == "__main__":
    for row in run():
        print(row)
