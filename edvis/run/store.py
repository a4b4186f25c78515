"""The render store: what onnxruntime computed, per (perturbation, epoch) unit. Imports no torch.

```
RUN/render/
  manifest.json               schema version, classes, dataset fingerprint, the validation index,
                              the settings rendered so far
  <perturbation>/epoch_NNN.npz one unit: N validation images, in manifest order
```

A unit is one ``.npz`` written atomically, so it is either complete or absent. It holds

| array       | dtype   | shape        | meaning                                         |
| ----------- | ------- | ------------ | ----------------------------------------------- |
| `probs`     | float16 | (N, C)       | softmax of the logits                           |
| `top5`      | int16   | (N, 5)       | class indices, most probable first              |
| `top5_prob` | float32 | (N, 5)       | their probabilities (from float32, before cast) |
| `map_true`  | float16 | (N, S, S)    | the true class's map (raw, before any norm)     |
| `map_pred`  | float16 | (N, S, S)    | the top-1 class's map                           |
| `map_top5`  | float16 | (N, 5, S, S) | the maps of the top-5 classes (clean units only)|
| `index`     | int64   | (N,)         | optional: the validation indices the unit holds |
| `meta`      | str     | ()           | JSON: epoch, perturbation, params, onnx sha256  |

A unit without ``index`` holds every validation image, in manifest order (as ``edvis render``
writes them); a unit with it holds the images it names, in its order (``edvis explain`` over a
subset).

``layers/epoch_NNN.npz`` holds, for a few validation images (``index``), the output of every
layer the ONNX file exposes (``L0``, ``L1``, …: float16 (K, channels, h, w)), named in ``meta``.

Every file of the store (manifest, units, layer files) has its digest beside it,
``<file>.sha256`` (see edvis.run.digest), written just before it; every read verifies the bytes
against it and parses from those bytes, and ``verified()`` tells what was read and its digest.
A store written before digests existed has no sidecars: ``edvis render`` renders its units again,
and every other reader refuses them ("run `edvis render`").

Units are independent files, so shards of one render can write into one store at once. Two stores
describe the same validation set when their manifests agree on the dataset fingerprint and the
validation files, labels and boxes (``same_validation_set``): only then may their units be merged
or compared.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edvis.errors import EdvisError, UsageError
from edvis.run import digest

SCHEMA_VERSION = 1
ARRAYS = ("probs", "top5", "top5_prob", "map_true", "map_pred")
LAYERS = "layers"  # folder of the per-layer outputs; never a perturbation name
# Version of what a unit holds; units of another version are rendered again.
UNIT_FORMAT = 2  # 2: clean units keep the top-5 maps
# map_top5: in clean units only (the galleries show the top-5 maps); index: in units of a subset
OPTIONAL = ("map_top5", "index")
# What np.load and json raise on a truncated, foreign or incomplete unit file.
DAMAGED = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)
RENDER_AGAIN = "run `edvis render` to render it again"


class StoreError(EdvisError):
    """The store is missing, unreadable or of another schema; names the path."""


class DamagedError(StoreError):
    """A store file's bytes do not match the digest recorded when it was written, or it has none."""


@dataclass(frozen=True)
class Unit:
    perturbation: str
    epoch: int

    @property
    def key(self) -> str:
        return f"{self.perturbation}/epoch_{self.epoch:03d}"


class RenderStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # What writes this store, for messages: a precision's store (render-int8/) has its own flag.
        # An explanation method's store (explain/<method>/) is written by `edvis explain`.
        precision = self.root.name.removeprefix("render-") if self.root.name.startswith("render-") else ""
        if self.root.parent.name == "explain":
            self.render_cmd = f"`edvis explain --method {self.root.name}`"
            self.render_again = f"run {self.render_cmd} to compute it again"
        else:
            self.render_cmd = f"`edvis render --precision {precision}`" if precision else "`edvis render`"
            self.render_again = f"run {self.render_cmd} to render it again"
        self._manifest: dict[str, Any] | None = None
        self._verified: dict[Path, str] = {}
        self._metas: dict[Path, dict[str, Any]] = {}  # of the units ``read`` parsed: ``meta`` reads no file again

    # -- manifest -----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def init(self, manifest: dict[str, Any]) -> None:
        """Create the store, or check that an existing one describes the same dataset."""
        manifest = {"schema": SCHEMA_VERSION, **manifest}
        old = None
        if self.manifest_path.exists():
            try:
                old = self.manifest()
            except DamagedError:  # damaged or of an edvis before digests: written anew
                old = None
        if old is not None:
            if old["dataset"]["fingerprint"] != manifest["dataset"]["fingerprint"]:
                raise StoreError(
                    f"{self.manifest_path} was rendered from another dataset "
                    f"(fingerprint {old['dataset']['fingerprint'][:12]}, now "
                    f"{manifest['dataset']['fingerprint'][:12]}); render into a new run folder"
                )
            # The settings rendered so far and now: a later stage expects each at every epoch.
            if "settings" in old or "settings" in manifest:
                manifest["settings"] = sorted(set(old.get("settings", [])) | set(manifest.get("settings", [])))
            if old == manifest:
                return
        text = json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        self._verified[self.manifest_path] = digest.write_verified(self.manifest_path, text.encode("utf-8"))
        self._manifest = manifest

    def manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            try:
                m = json.loads(self._read(self.manifest_path, "render manifest").decode("utf-8"))
            except FileNotFoundError:
                raise StoreError(f"no render store at {self.root} (run {self.render_cmd} first)") from None
            except (OSError, ValueError) as e:
                raise StoreError(f"cannot read {self.manifest_path}: {e}") from None
            if m.get("schema") != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.manifest_path} has schema {m.get('schema')!r}; this edvis reads schema "
                    f"{SCHEMA_VERSION}: render again into a new run folder"
                )
            self._manifest = m
        return self._manifest

    # -- units ----------------------------------------------------------------------------------
    def path(self, unit: Unit) -> Path:
        return self.root / f"{unit.key}.npz"

    def units(self) -> list[Unit]:
        out = []
        for p in sorted(self.root.glob("*/epoch_*.npz")):
            if p.parent.name != LAYERS:
                out.append(Unit(p.parent.name, int(p.stem.split("_")[1])))
        return out

    # -- every layer's output for a few images (the site's Layers page) ---------------------------
    def layers_path(self, epoch: int) -> Path:
        return self.root / LAYERS / f"epoch_{epoch:03d}.npz"

    def layer_epochs(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in (self.root / LAYERS).glob("epoch_*.npz"))

    def write_layers(self, epoch: int, index: np.ndarray, outputs: list[tuple[str, np.ndarray]],
                     meta: dict[str, Any]) -> None:
        """Store ``outputs`` [(layer name, (K, ch, h, w))] of validation images ``index`` (K,)."""
        arrays = {f"L{i}": a.astype(np.float16) for i, (_, a) in enumerate(outputs)}
        layers = [{"key": f"L{i}", "name": name, "shape": list(a.shape[1:])} for i, (name, a) in enumerate(outputs)]
        self._save(self.layers_path(epoch), {"epoch": epoch, "layers": layers, **meta},
              {"index": np.asarray(index, np.int64), **arrays})

    def read_layers(self, epoch: int) -> tuple[dict[str, Any], np.ndarray, list[tuple[str, np.ndarray]]]:
        """(meta, index, [(layer name, (K, ch, h, w) float16)]) of one epoch."""
        path = self.layers_path(epoch)
        try:
            with np.load(io.BytesIO(self._read(path, "layer outputs"))) as z:
                meta = json.loads(str(z["meta"]))
                return meta, z["index"], [(layer["name"], z[layer["key"]]) for layer in meta["layers"]]
        except FileNotFoundError:
            raise StoreError(f"layer outputs missing: {path} (run {self.render_cmd})") from None
        except DAMAGED as e:
            raise StoreError(f"cannot read layer outputs {path}: {e}; delete it and {self.render_again}") from None

    def layers_meta(self, epoch: int) -> dict[str, Any] | None:
        """The layer file's metadata, or None when it is absent."""
        return self._read_meta(self.layers_path(epoch), "layer outputs")

    def epochs(self, perturbation: str = "clean") -> list[int]:
        return sorted(u.epoch for u in self.units() if u.perturbation == perturbation)

    def perturbations(self) -> list[str]:
        return sorted({u.perturbation for u in self.units()})

    def write(self, unit: Unit, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        missing = set(ARRAYS) - set(arrays)
        if missing:
            raise UsageError(f"unit {unit.key} lacks arrays {sorted(missing)}")
        if "index" in arrays:
            index = np.asarray(arrays["index"])
            if index.shape != (len(arrays["probs"]),) or not np.issubdtype(index.dtype, np.integer):
                raise UsageError(f"unit {unit.key}: index must be ({len(arrays['probs'])},) integers, "
                                 f"got {index.dtype} {index.shape}")
            arrays = {**arrays, "index": index.astype(np.int64)}
        self._save(self.path(unit), {"perturbation": unit.perturbation, "epoch": unit.epoch, **meta}, arrays)

    def meta(self, unit: Unit) -> dict[str, Any] | None:
        """The unit's metadata, or None when the unit is absent (from the bytes ``read`` verified
        when this object read the unit already)."""
        path = self.path(unit)
        return self._metas[path] if path in self._metas else self._read_meta(path)

    def read(self, unit: Unit, keys: tuple[str, ...] = ARRAYS,
             optional: tuple[str, ...] = OPTIONAL) -> dict[str, np.ndarray]:
        """The unit's arrays named in ``keys`` (each must be there) and in ``optional`` (when
        there). The file is read once, verified against its digest and parsed from those bytes;
        an .npz member is decompressed only when asked for."""
        path = self.path(unit)
        try:
            with np.load(io.BytesIO(self._read(path, "render unit"))) as z:
                missing = [k for k in keys if k not in z.files]
                if missing:
                    raise StoreError(f"render unit {path} lacks arrays {missing}")
                if "meta" in z.files:
                    self._metas[path] = json.loads(str(z["meta"]))
                return {k: z[k] for k in keys + optional if k in z.files}
        except FileNotFoundError:
            raise StoreError(f"render unit missing: {path} (run {self.render_cmd})") from None
        except DAMAGED as e:
            raise StoreError(f"cannot read render unit {path}: {e}; delete it and {self.render_again}") from None

    # -- verified bytes -------------------------------------------------------------------------
    def verified(self) -> dict[str, str]:
        """{path relative to the store root: sha256} of every file this object has read (and
        verified) or written, as computed from those very bytes."""
        return {p.relative_to(self.root).as_posix(): d for p, d in sorted(self._verified.items())}

    def digest(self, path: Path) -> str | None:
        """The verified digest of ``path`` (a file of this store) if this object read or wrote it."""
        return self._verified.get(Path(path))

    def _read_bytes(self, path: Path, what: str) -> tuple[bytes, str]:
        try:
            data, sha = digest.read_verified(path, what, self.render_again)
        except digest.IntegrityError as e:
            raise DamagedError(str(e)) from None
        self._verified[Path(path)] = sha
        return data, sha

    def _read(self, path: Path, what: str) -> bytes:
        return self._read_bytes(path, what)[0]

    def _save(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """One .npz of ``arrays`` plus ``meta`` as a JSON string, written atomically with its digest."""
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        self._verified[path] = digest.write_verified(path, buf.getvalue())

    def _read_meta(self, path: Path, what: str = "render unit") -> dict[str, Any] | None:
        """The ``meta`` of a file ``_save`` wrote (verified), or None when the file is absent."""
        try:
            data = self._read(path, what)
        except FileNotFoundError:
            return None
        try:
            with np.load(io.BytesIO(data)) as z:
                return json.loads(str(z["meta"]))
        except DAMAGED as e:  # a foreign file: say which
            raise StoreError(f"cannot read {what} {path}: {e}; delete it and {self.render_again}") from None


def complete_epochs(store: RenderStore, exported: list[int]) -> list[int]:
    """The store's clean epochs, once the grid is known to be whole: every ``exported`` epoch (an
    ONNX file of the run) has a clean unit, and every setting the store holds or its manifest
    records as rendered (``settings``) has a unit at every clean epoch. A gap is a StoreError
    naming the missing unit (and how many more), never skipped."""
    units = set(store.units())
    epochs = sorted({u.epoch for u in units if u.perturbation == "clean"} | set(exported))
    recorded = store.manifest().get("settings", [])  # what every render so far was asked for
    settings = ["clean"] + sorted(({u.perturbation for u in units} | set(recorded)) - {"clean"})
    missing = [Unit(s, e) for s in settings for e in epochs if Unit(s, e) not in units]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise StoreError(f"render unit missing: {store.path(missing[0])}{more} (every setting is rendered at every "
                         f"exported epoch): run {store.render_cmd} to render it")
    return epochs


def same_validation_set(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two store manifests describe the same validation set: the same dataset
    fingerprint (which must be there) and the same validation files, labels and boxes, in the
    same order. A manifest without boxes reads as one whose images have none. Boxes are in the
    pixels of the images as rendered, so two stores rendered at different image sizes compare
    their files and labels only (the fingerprint covers the boxes as annotated)."""
    fingerprint = a.get("dataset", {}).get("fingerprint")
    if fingerprint is None or fingerprint != b.get("dataset", {}).get("fingerprint"):
        return False
    va, vb = a.get("val", {}), b.get("val", {})
    if va.get("files") != vb.get("files") or va.get("labels") != vb.get("labels"):
        return False
    return a.get("image_size") != b.get("image_size") or _boxes(va) == _boxes(vb)


def _boxes(val: dict[str, Any]) -> list[Any]:
    return val.get("boxes") or [None] * len(val.get("labels") or ())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def summarise(
    logits: np.ndarray, maps: np.ndarray, labels: np.ndarray, top5_maps: bool = False
) -> dict[str, np.ndarray]:
    """One unit's arrays from raw outputs: logits (N, C), maps (N, C, S, S), labels (N,).

    With ``top5_maps`` the unit also keeps the maps of the five most probable classes.
    """
    probs = softmax(logits)
    k = min(5, probs.shape[1])
    # Stable sort on -probs: ties keep the lower class index first.
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(labels))
    out = {
        "probs": probs.astype(np.float16),
        "top5": top5.astype(np.int16),
        "top5_prob": np.take_along_axis(probs, top5, axis=1).astype(np.float32),
        "map_true": maps[rows, labels].astype(np.float16),
        "map_pred": maps[rows, top5[:, 0]].astype(np.float16),
    }
    if top5_maps:
        out["map_top5"] = maps[rows[:, None], top5].astype(np.float16)  # (N, 5, S, S)
    return out
