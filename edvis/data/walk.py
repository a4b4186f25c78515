"""Listing a dataset's image files safely: links are followed only while they stay inside the
dataset root, each real file (device, inode) is taken once and each real folder entered once, so
a link loop adds nothing and a linked duplicate counts once; names sort naturally (``x_2``
before ``x_10``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edvis.data.errors import DatasetError

_DIGITS = re.compile(r"(\d+)")
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def subfolders(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder``."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def walk_images(folder: Path, seen: Seen) -> list[str]:
    """Image paths under ``folder`` (recursively, relative, '/'-separated), naturally sorted.

    Symbolic links are followed while they stay inside the dataset root, but each real folder is
    entered and each real file (device, inode) taken once, whatever links lead to it: a link loop
    adds nothing, and a file linked twice (here or anywhere ``seen`` has been) counts once.
    """
    found: list[str] = []
    entered: set[tuple[int, int]] = set()
    stack = [("", folder)]
    seen.check_inside(folder)
    while stack:
        prefix, here = stack.pop()
        st = here.stat()
        if (st.st_dev, st.st_ino) in entered:
            continue
        entered.add((st.st_dev, st.st_ino))
        with os.scandir(here) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    if e.is_symlink():
                        seen.check_inside(e.path)
                    stack.append((prefix + e.name + "/", Path(e.path)))
                elif e.is_file() and is_image_name(e.name) and seen.first_time(e, st.st_dev):
                    found.append(prefix + e.name)
    return sorted(found, key=natural_key)


class Seen:
    """The real files (device, inode) already taken, and the root no link may lead out of."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.keys: set[tuple[int, int]] = set()

    def check_inside(self, path: str | Path) -> None:
        """Refuse ``path`` when it (through links) leads outside the dataset root."""
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise DatasetError(f"{path} leads outside the dataset root {self.root} (to {real}); "
                               "copy what it links to into the dataset")

    def first_time(self, entry: os.DirEntry, dev: int) -> bool:
        """Whether ``entry``'s real file is not taken yet (and take it); a link must stay inside."""
        if entry.is_symlink():
            self.check_inside(entry.path)
            st = os.stat(entry.path)
            key = (st.st_dev, st.st_ino)
        else:
            key = (dev, entry.inode())
        if key in self.keys:
            return False
        self.keys.add(key)
        return True


def is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_files(folder: Path, seen: Seen) -> list[str]:
    """Names of the regular files in ``folder`` (each real file once, see :class:`Seen`); empty
    if the folder does not exist."""
    try:
        with os.scandir(folder) as entries:
            seen.check_inside(folder)
            dev = folder.stat().st_dev
            return [e.name for e in entries if e.is_file() and seen.first_time(e, dev)]
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_images(folder: Path, seen: Seen) -> list[str]:
    return sorted((f for f in list_files(folder, seen) if is_image_name(f)), key=natural_key)


def natural_key(name: str) -> tuple[list[str | int], str]:
    """Sort key putting ``x_2`` before ``x_10``; ties (``x_02``, ``x_2``) are broken by the name."""
    # Splitting on a captured group alternates text, number, text, ..., so the odd positions
    # are always numbers and two keys never compare a str with an int.
    parts: list[str | int] = _DIGITS.split(name)
    parts[1::2] = map(int, parts[1::2])
    return parts, name
