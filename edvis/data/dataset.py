"""Read an image-classification dataset: Tiny ImageNet's official layout or an imagefolder.

Tiny ImageNet (``root/wnids.txt`` present)::

    wnids.txt                       one class id per line; the line order gives the label
    words.txt                       optional: id <TAB> comma-separated names
    train/<wnid>/images/*.JPEG
    train/<wnid>/<wnid>_boxes.txt   optional: file <TAB> x0 <TAB> y0 <TAB> x1 <TAB> y1
    val/images/*.JPEG
    val/val_annotations.txt         file <TAB> wnid [<TAB> x0 <TAB> y0 <TAB> x1 <TAB> y1]

Imagefolder (otherwise)::

    train/<class>/**/<image>        classes are the sorted folder names under train/
    val/<class>/**/<image>          val classes must also exist under train/

A tree with val/val_annotations.txt but no wnids.txt is an error (not an imagefolder), and so is
a dataset without validation images.

Train images missing from a boxes file get ``box=None``; val labels come from
val_annotations.txt. Train is ordered by (label, file name), val by file name (Tiny ImageNet)
or by (label, file name) (imagefolder); file names sort naturally, so ``x_2`` precedes ``x_10``.

Indexing only lists folders and reads the small text files; images are decoded on demand
by :func:`load_image` and :func:`load_images`. This module needs only numpy and Pillow.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edvis.data.errors import DatasetError
from edvis.data.walk import Seen, list_files, list_images, natural_key, subfolders, walk_images
from edvis.errors import UsageError

MAX_SIDE = 1 << 16  # no coordinate of a box reaches this
# The largest image edvis decodes, in pixels (64 Mi, e.g. 8192 × 8192): larger ones are refused
# naming the file, before Pillow decodes anything (and instead of its DecompressionBombWarning).
MAX_PIXELS = 1 << 26
# Our own check replaces Pillow's warning (it warns from MAX_IMAGE_PIXELS, errors from twice that).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Sample:
    """One image with its class and, when annotated, its object box."""

    path: Path  # absolute path of the image file
    label: int  # class index into Dataset.wnids
    box: Box | None  # x0, y0, x1, y1, inclusive pixel coordinates of the original image


@dataclass(frozen=True)
class Dataset:
    """A dataset's classes and its train and val samples, in a deterministic order."""

    root: Path
    layout: str  # "tiny-imagenet" or "imagefolder"
    wnids: tuple[str, ...]  # class ids; index = label
    names: tuple[str, ...]  # short human-readable class names, same order as wnids
    train: tuple[Sample, ...]
    val: tuple[Sample, ...]

    @property
    def num_classes(self) -> int:
        """Number of classes (labels run from 0 to num_classes - 1)."""
        return len(self.wnids)

    def fingerprint(self) -> str:
        """SHA-256 hex digest of the class list and every sample's path, label, box and file size.

        File contents are not read, so this stays fast on 100k images, yet it changes when
        files are added, removed, relabelled, re-boxed or rewritten with a different size.
        """
        h = hashlib.sha256()
        h.update(json.dumps([self.layout, self.wnids, self.names]).encode())
        prefix = len(str(self.root)) + 1  # samples always live under root
        for split, samples in (("train", self.train), ("val", self.val)):
            for s in samples:
                path = str(s.path)
                try:
                    size = os.stat(path).st_size
                except OSError as e:
                    raise DatasetError(f"cannot read image {path}: {e.strerror or e}") from e
                rel = path[prefix:].replace(os.sep, "/")
                h.update(f"\n{split}\t{json.dumps(rel)}\t{s.label}\t{s.box}\t{size}".encode())
        return h.hexdigest()

    def record(self) -> dict[str, Any]:
        """What a run and a render store keep about their dataset (JSON-ready)."""
        return {
            "root": str(self.root.resolve()),
            "layout": self.layout,
            "fingerprint": self.fingerprint(),
            "wnids": list(self.wnids),
            "names": list(self.names),
        }


def open_dataset(root: str | Path) -> Dataset:
    """Index the dataset at ``root`` (layout auto-detected) without opening any image."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    if (root / "wnids.txt").is_file():
        with _gc_paused():
            return _open_tiny_imagenet(root)
    if (root / "val" / "val_annotations.txt").is_file():
        # Without this check the tree would be read as an imagefolder and fail on val/images.
        raise DatasetError(
            f"class list not found: {root / 'wnids.txt'} ({root} has val/val_annotations.txt, so it "
            "looks like Tiny ImageNet, whose classes and label order come from wnids.txt)"
        )
    if (root / "train").is_dir() and (root / "val").is_dir():
        with _gc_paused():
            return _open_imagefolder(root)
    raise DatasetError(
        f"{root}: not a recognised dataset layout; expected either wnids.txt with train/ and val/ "
        "(Tiny ImageNet) or train/ and val/ each holding one sub-folder of images per class"
    )


# --- Tiny ImageNet --------------------------------------------------------------------------


def _open_tiny_imagenet(root: Path) -> Dataset:
    wnids = _read_wnids(root / "wnids.txt")
    names = _read_names(root / "words.txt", wnids)
    label_of = {w: i for i, w in enumerate(wnids)}

    train: list[Sample] = []
    seen = Seen(root)  # each real training file once, however it is linked
    for label, wnid in enumerate(wnids):
        class_dir = root / "train" / wnid
        if not class_dir.is_dir():
            raise DatasetError(f"training folder missing for class {wnid}: {class_dir}")
        image_dir = class_dir / "images"
        files = list_images(image_dir, seen)
        if not files:
            raise DatasetError(f"class {wnid} has no training images in {image_dir}")
        boxes = _read_train_boxes(class_dir / f"{wnid}_boxes.txt")
        train.extend(Sample(image_dir / f, label, boxes.get(f)) for f in files)

    val_dir = root / "val" / "images"
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetError(f"validation annotations not found: {annotations}")
    if not val_dir.is_dir():
        raise DatasetError(f"validation image folder not found: {val_dir}")
    present = set(list_files(val_dir, Seen(root)))
    val: list[Sample] = []
    seen: set[str] = set()
    for lineno, fields in _read_tsv(annotations):
        if len(fields) not in (2, 6):
            raise DatasetError(
                f"{annotations}:{lineno}: expected file, wnid, x0, y0, x1, y1 separated by tabs"
            )
        name, wnid = fields[0], fields[1]
        _check_name(name, annotations, lineno, "file name")
        if wnid not in label_of:
            raise DatasetError(f"{annotations}:{lineno}: class {wnid!r} is not in wnids.txt")
        if name not in present:
            raise DatasetError(
                f"{annotations}:{lineno}: validation image not found: {val_dir / name}"
            )
        if name in seen:
            raise DatasetError(f"{annotations}:{lineno}: {name} is annotated twice")
        seen.add(name)
        box = _parse_box(fields[2:], annotations, lineno) if len(fields) == 6 else None
        val.append(Sample(val_dir / name, label_of[wnid], box))
    if not val:
        raise DatasetError(f"no validation images: {annotations} lists none")
    val.sort(key=lambda s: natural_key(s.path.name))

    return Dataset(root, "tiny-imagenet", wnids, names, tuple(train), tuple(val))


def _read_wnids(path: Path) -> tuple[str, ...]:
    wnids = [line.strip() for line in _read_lines(path)]
    wnids = [w for w in wnids if w]
    for lineno, line in enumerate(_read_lines(path), start=1):
        _check_name(line.strip(), path, lineno, "class id")
    if not wnids:
        raise DatasetError(f"no class ids in {path}")
    duplicates = sorted(w for w, n in Counter(wnids).items() if n > 1)
    if duplicates:
        raise DatasetError(f"{path}: class ids listed more than once: {', '.join(duplicates)}")
    return tuple(wnids)


def _check_name(name: str, path: Path, lineno: int, what: str) -> None:
    """Refuse a class id or file name that would lead out of its folder (``..``, a separator)."""
    if name and (name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.sep in name):
        raise DatasetError(f"{path}:{lineno}: {what} {name!r} is not a plain name (it would lead out of the "
                           "dataset folder)")


def _read_names(path: Path, wnids: tuple[str, ...]) -> tuple[str, ...]:
    """Short name per wnid: the first comma-separated entry in words.txt, else the wnid itself."""
    wanted = set(wnids)
    found: dict[str, str] = {}
    if path.is_file():
        for line in _read_lines(path):
            wnid, _, words = line.partition("\t")
            wnid = wnid.strip()
            if wnid in wanted and wnid not in found:
                found[wnid] = words.split(",")[0].strip()
    return tuple(found.get(w) or w for w in wnids)


def _read_train_boxes(path: Path) -> dict[str, Box]:
    """File name -> box from a ``<wnid>_boxes.txt`` file; empty if the file does not exist."""
    if not path.is_file():
        return {}
    boxes: dict[str, Box] = {}
    for lineno, fields in _read_tsv(path):
        if len(fields) != 5:
            raise DatasetError(f"{path}:{lineno}: expected file, x0, y0, x1, y1 separated by tabs")
        boxes[fields[0]] = _parse_box(fields[1:], path, lineno)
    return boxes


def _parse_box(fields: Sequence[str], path: Path, lineno: int) -> Box:
    try:
        x0, y0, x1, y1 = (int(f) for f in fields)
    except ValueError:
        raise DatasetError(f"{path}:{lineno}: box coordinates must be integers") from None
    if x0 > x1 or y0 > y1:
        raise DatasetError(f"{path}:{lineno}: box has x0 > x1 or y0 > y1")
    if min(x0, y0) < 0 or max(x1, y1) >= MAX_SIDE:
        raise DatasetError(f"{path}:{lineno}: box ({x0}, {y0}, {x1}, {y1}) lies outside any image edvis reads "
                           f"(coordinates must be 0 to {MAX_SIDE - 1}); mend the line")
    return (x0, y0, x1, y1)


# --- imagefolder ----------------------------------------------------------------------------


def _open_imagefolder(root: Path) -> Dataset:
    train_dir, val_dir = root / "train", root / "val"
    classes = subfolders(train_dir)
    if not classes:
        raise DatasetError(f"no class folders in {train_dir}; expected one sub-folder per class")
    label_of = {c: i for i, c in enumerate(classes)}

    train: list[Sample] = []
    seen = Seen(root)  # every real file once, in train and val
    for label, cls in enumerate(classes):
        files = walk_images(train_dir / cls, seen)
        if not files:
            raise DatasetError(f"class {cls} has no training images in {train_dir / cls}")
        train.extend(Sample(train_dir / cls / f, label, None) for f in files)

    val: list[Sample] = []
    for cls in subfolders(val_dir):
        if cls not in label_of:
            raise DatasetError(
                f"validation class folder has no training counterpart: {val_dir / cls}"
            )
        files = walk_images(val_dir / cls, seen)
        val.extend(Sample(val_dir / cls / f, label_of[cls], None) for f in files)
    if not val:
        raise DatasetError(f"no validation images in {val_dir}; expected one sub-folder of images per class")
    # Val is grouped by class like train (file names may repeat across class folders).
    val.sort(key=lambda s: s.label)

    return Dataset(root, "imagefolder", tuple(classes), tuple(classes), tuple(train), tuple(val))


# --- shared helpers -------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building 100k+ small objects otherwise triggers
    repeated full collections that free nothing and double the time to index a dataset."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from e


def _read_tsv(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, tab-separated fields) for every non-blank line."""
    rows = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        line = line.strip()
        if line:
            rows.append((lineno, [field.strip() for field in line.split("\t")]))
    return rows


# --- image loading --------------------------------------------------------------------------

_SIXTEEN_BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def load_image(path: str | Path, size: int = 64) -> np.ndarray:
    """Decode an image as uint8 RGB of shape (size, size, 3).

    Every Pillow mode becomes RGB: alpha is dropped (not composited), palettes are expanded,
    CMYK is converted, and 16-bit grayscale ("I;16", "I") is scaled from 0..65535 to 0..255.
    Images of another size are resized with bilinear resampling. Boxes in a :class:`Sample`
    stay in the original image's pixel coordinates; Tiny ImageNet images are already 64x64,
    so there they match the default ``size`` directly.
    """
    if size < 1:
        raise UsageError(f"size must be positive, got {size}")
    try:
        with Image.open(path) as im:
            _check_pixels(path, im.size)
            # Decode fully inside the try: a truncated file raises here instead of yielding grey
            # pixels (as long as PIL.ImageFile.LOAD_TRUNCATED_IMAGES keeps its default, False).
            im.load()
            rgb = _to_rgb(im)
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except Image.UnidentifiedImageError:
        reason = "empty file" if _is_empty(path) else "not a recognised image file"
        raise DatasetError(f"cannot read image {path}: {reason}") from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit: its size is in the header
        raise DatasetError(f"cannot read image {path}: over edvis' limit of {MAX_PIXELS:,} pixels "
                           "(edvis.data.dataset.MAX_PIXELS)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise DatasetError(f"cannot read image {path}: {reason}") from e


def _check_pixels(path: str | Path, size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise DatasetError(f"cannot read image {path}: {size[0]}×{size[1]} = {size[0] * size[1]:,} pixels is over "
                           f"edvis' limit of {MAX_PIXELS:,} (edvis.data.dataset.MAX_PIXELS)")


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips these to 255 instead of scaling, so scale by hand
        # (rounding to nearest: 65535 -> 255, 32896 -> 128).
        wide = np.clip(np.asarray(im).astype(np.int64), 0, 65535)
        gray = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _is_empty(path: str | Path) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def load_images(paths: Sequence[Path], size: int = 64, workers: int = 2) -> np.ndarray:
    """Decode many images into one uint8 array of shape (N, size, size, 3), in ``paths`` order.

    Decoding runs on ``workers`` threads (Pillow releases the GIL while decoding). If several
    images fail, the DatasetError raised is the one for the earliest in ``paths``.
    """
    try:
        out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    except MemoryError:
        need = len(paths) * size * size * 3
        raise DatasetError(f"{len(paths)} images of {size} × {size} px ({need / 2**30:.1f} GiB decoded) do not fit in "
                           f"memory (a smaller --image-size; for training, --no-preload)") from None

    def load_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            out[i] = load_image(paths[i], size)

    if workers <= 1 or len(paths) <= 1:
        load_range(0, len(paths))
        return out
    # Hand out contiguous runs of images, a few per worker (capped), rather than one task each.
    chunk = min(256, -(-len(paths) // (4 * workers)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(load_range, i, min(i + chunk, len(paths)))
            for i in range(0, len(paths), chunk)
        ]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()  # don't decode the rest just to throw it away
            raise
    return out


def rendered_boxes(samples: Sequence[Any], size: int | None = None) -> list[list[int] | None]:
    """The samples' boxes clipped to their images (whose sizes are read from the file headers)
    and, with ``size``, scaled to the size × size image the model sees: inclusive pixel
    [x0, x1] of a w-pixel row covers [x0·S/w, (x1 + 1)·S/w) there, so it becomes
    [floor(x0·S/w), ceil((x1 + 1)·S/w) − 1]. A DatasetError naming the image when a box lies
    wholly outside it."""
    out: list[list[int] | None] = []
    for s in samples:
        if s.box is None:
            out.append(None)
            continue
        try:
            with Image.open(s.path) as im:
                w, h = im.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DatasetError(f"cannot read image {s.path}: {e}") from None
        x0, y0, x1, y1 = s.box
        if x0 >= w or y0 >= h:
            raise DatasetError(f"the box {s.box} of {s.path} lies outside the {w}×{h} image; mend its annotation")
        box = [x0, y0, min(x1, w - 1), min(y1, h - 1)]
        if size is not None and (w, h) != (size, size):
            box = [x0 * size // w, y0 * size // h, -(-(box[2] + 1) * size // w) - 1, -(-(box[3] + 1) * size // h) - 1]
        out.append(box)
    return out
