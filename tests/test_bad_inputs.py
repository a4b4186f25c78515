"""Bad inputs, through the command line: one `edvis: error:` line naming the file, exit 2, no traceback.

Loader-level details (every Pillow mode, resize maths, annotation syntax) are in test_dataset.py;
here each bad input goes through the verb a user would run. Checkpoints are built without
training (a freshly initialised model, saved as train saves it) and exported once per module.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edvis.cli import main
from edvis.data import load_images, open_dataset, write_dataset
from edvis.export import export_run
from edvis.models import ModelConfig, build_model
from edvis.run import CHECKPOINT_SCHEMA, Run, atomic
from edvis.run import save_checkpoint as edvis_save_checkpoint
from edvis.run.digest import sidecar, write_verified
from edvis.train import resolve_config

# --- helpers ------------------------------------------------------------------------------------


def error_line(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    """Run ``edvis argv`` in-process; assert exit 2 and one error line, no traceback; return it."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("edvis: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def train_argv(data: Path, run: Path) -> list[object]:
    return ["train", "--data", data, "--run", run, "--epochs", 1, "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class Tiny ImageNet tree, 2 train and 2 val images a class: copy it before damaging."""
    return write_dataset(tmp_path_factory.mktemp("data") / "ds", classes=3, seed=0,
                         train_per_class=2, val_per_class=2)


@pytest.fixture
def copy(data: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(data, tmp_path / "ds"))


def save_checkpoint(path: Path, num_classes: int = 3, variant: str = "paper", **override: object) -> Path:
    """A checkpoint as edvis.train writes it, of a freshly initialised model."""
    mc = ModelConfig(num_classes=num_classes, variant=variant)
    torch.manual_seed(0)
    ckpt = {"schema": CHECKPOINT_SCHEMA, "epoch": 1, "model_config": mc.to_dict(),
            "train_config": asdict(resolve_config("demo", epochs=1)),
            "model": build_model(mc).state_dict(), **override}
    edvis_save_checkpoint(path, ckpt)  # with its digest beside it
    return path


def copy_checkpoint(src: Path, dest: Path) -> None:
    """Copy a checkpoint and its recorded digest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for s, d in ((src, dest), (sidecar(src), sidecar(dest))):
        shutil.copy(s, d)


def write_config(run: Path, data: Path, num_classes: int = 3, variant: str = "paper") -> Run:
    """config.json as `edvis train --data DATA --epochs 1` writes it."""
    r = Run(run)
    mc = ModelConfig(num_classes=num_classes, variant=variant)
    r.write_config({"model": mc.to_dict(), "train": asdict(resolve_config("demo", epochs=1)),
                    "dataset": open_dataset(data).record()})
    return r


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints built once: the right model (3 classes, paper), and two foreign ones."""
    root = tmp_path_factory.mktemp("ckpt")
    return {
        "good": save_checkpoint(root / "good.pt"),
        "5 classes": save_checkpoint(root / "five.pt", num_classes=5),
        "author variant": save_checkpoint(root / "author.pt", variant="author"),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, data: Path, checkpoints: dict[str, Path]) -> Path:
    """A run folder with config, one checkpoint and its ONNX export (made once; copy before use)."""
    run = write_config(tmp_path_factory.mktemp("exported") / "run", data)
    run.checkpoint_dir.mkdir(parents=True)
    copy_checkpoint(checkpoints["good"], run.checkpoint(1))
    export_run(run.root)
    return run.root


@pytest.fixture
def run_copy(exported: Path, tmp_path: Path) -> Run:
    return Run(Path(shutil.copytree(exported, tmp_path / "run")))


# --- image files --------------------------------------------------------------------------------


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncated val JPEG", "cannot read image"),
        ("truncated train JPEG", "cannot read image"),
        ("zero-byte JPEG", "empty file"),
        ("text named .JPEG", "not a recognised image file"),
    ],
)
def test_bad_image_file(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str,
                        reason: str) -> None:
    bad = copy / ("val/images/val_1.JPEG" if "val" in damage else "train/disc/images/disc_1.JPEG")
    if damage.startswith("truncated"):
        _truncate(bad, bad.stat().st_size // 2)
    elif damage.startswith("zero"):
        bad.write_bytes(b"")
    else:
        bad.write_text("wnid\tname\n")
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line.startswith(f"edvis: error: cannot read image {bad}: ")
    assert reason in line
    assert Run(tmp_path / "run").checkpoint_epochs() == []


def test_truncated_jpeg_in_a_real_process(copy: Path, tmp_path: Path) -> None:
    bad = copy / "val/images/val_0.JPEG"
    _truncate(bad, 200)
    r = subprocess.run([sys.executable, "-m", "edvis", *map(str, train_argv(copy, tmp_path / "run"))],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"edvis: error: cannot read image {bad}: ")


def test_fixing_a_bad_image_does_not_lock_the_run(copy: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # The failed run wrote config.json (with the dataset's fingerprint) but no checkpoint; a
    # dataset changed since must be read again, not refused as "a run with other settings".
    first, second = copy / "val/images/val_0.JPEG", copy / "val/images/val_2.JPEG"
    good = first.read_bytes()
    first.write_bytes(b"")
    assert str(first) in error_line(capsys, *train_argv(copy, tmp_path / "run"))
    first.write_bytes(good)
    second.write_bytes(b"")
    assert error_line(capsys, *train_argv(copy, tmp_path / "run")) == \
        f"edvis: error: cannot read image {second}: empty file"


# --- image modes and sizes ----------------------------------------------------------------------


def _png48(path: Path, rgb16: tuple[int, int, int], side: int = 4) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), every pixel ``rgb16``."""
    row = b"\x00" + struct.pack(">3H", *rgb16) * side  # filter byte 0, then big-endian samples

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)  # 16-bit, colour type 2 (RGB)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * side))
                     + chunk(b"IEND", b""))


def test_other_modes_and_sizes_load_converted(copy: Path) -> None:
    """Val images of every awkward kind, in a Tiny ImageNet tree: loaded as 64×64 RGB."""
    images = copy / "val/images"
    for f in images.iterdir():
        f.unlink()
    Image.new("L", (64, 64), 77).save(images / "gray8.JPEG", quality=100)
    Image.new("RGBA", (64, 64), (10, 20, 30, 0)).save(images / "rgba.png")
    Image.new("CMYK", (64, 64), (0, 255, 0, 0)).save(images / "cmyk.JPEG", quality=100)
    gray16 = Image.new("I;16", (64, 64))
    gray16.putdata([32896] * 64 * 64)
    gray16.save(images / "gray16.png")
    _png48(images / "rgb48.png", (0x8080, 0xFFFF, 0x0000))
    halves = np.zeros((32, 32, 3), np.uint8)
    halves[:, :16], halves[:, 16:] = (255, 0, 0), (0, 0, 255)
    Image.fromarray(halves).save(images / "small.png")
    names = ["cmyk.JPEG", "gray8.JPEG", "gray16.png", "rgb48.png", "rgba.png", "small.png"]  # natural order
    (copy / "val/val_annotations.txt").write_text("".join(f"{n}\tdisc\n" for n in names))

    ds = open_dataset(copy)
    assert [s.path.name for s in ds.val] == names
    batch = load_images([s.path for s in ds.val])
    assert batch.shape == (6, 64, 64, 3)
    centre = [tuple(int(v) for v in img[32, 32]) for img in batch]
    assert centre[:5] == [
        (255, 0, 255),  # CMYK (0, 255, 0, 0): R = 255·(1 − C/255)·(1 − K/255) = 255, G = 0, B = 255
        (77, 77, 77),  # gray 77 copied to R, G, B (quality 100: a flat block stays exact)
        (128, 128, 128),  # 16-bit 32896 · 255 / 65535 = 128
        (128, 255, 0),  # 16-bit RGB 0x8080, 0xFFFF, 0 → 128, 255, 0
        (10, 20, 30),  # alpha 0 is dropped, not composited onto black or white
    ]
    # 32 px → 64 px, bilinear: output column x samples source x' = (x + 0.5) / 2 − 0.5, so
    # column 31 is 0.75 of source column 15 (red) and 0.25 of 16 (blue): 191.25 → 191, 63.75 → 64.
    small = batch[5]
    assert (small[:, :31] == (255, 0, 0)).all() and (small[:, 33:] == (0, 0, 255)).all()
    assert tuple(small[10, 31]) == (191, 0, 64) and tuple(small[10, 32]) == (64, 0, 191)


# --- dataset layout -----------------------------------------------------------------------------


def test_missing_wnids(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "wnids.txt").unlink()
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line.startswith(f"edvis: error: class list not found: {copy / 'wnids.txt'} ")


def test_missing_val_annotations(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (copy / "val/val_annotations.txt").unlink()
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line == f"edvis: error: validation annotations not found: {copy / 'val/val_annotations.txt'}"


def test_annotation_names_missing_file(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    annotations = copy / "val/val_annotations.txt"
    lineno = next(i for i, line in enumerate(annotations.read_text().splitlines(), 1) if line.startswith("val_3."))
    (copy / "val/images/val_3.JPEG").unlink()
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line == (f"edvis: error: {annotations}:{lineno}: validation image not found: "
                    f"{copy / 'val/images/val_3.JPEG'}")


def test_empty_class_folder(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for f in (copy / "train/ring/images").iterdir():
        f.unlink()
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line == f"edvis: error: class ring has no training images in {copy / 'train/ring/images'}"


def test_no_validation_images(copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    annotations = copy / "val/val_annotations.txt"
    annotations.write_text("")
    line = error_line(capsys, *train_argv(copy, tmp_path / "run"))
    assert line == f"edvis: error: no validation images: {annotations} lists none"


def test_imagefolder_without_validation_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "folder"
    for cls in ("cat", "dog"):
        (root / "train" / cls).mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(root / "train" / cls / "a.png")
        (root / "val" / cls).mkdir(parents=True)
    line = error_line(capsys, *train_argv(root, tmp_path / "run"))
    assert line.startswith(f"edvis: error: no validation images in {root / 'val'};")


# --- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "diff"), [("5 classes", "num_classes 5 (expected 3)"),
                                            ("author variant", "variant 'author' (expected 'paper')")])
def test_foreign_checkpoint(data: Path, tmp_path: Path, checkpoints: dict[str, Path],
                            capsys: pytest.CaptureFixture[str], kind: str, diff: str) -> None:
    run = write_config(tmp_path / "run", data)
    run.checkpoint_dir.mkdir()
    copy_checkpoint(checkpoints[kind], run.checkpoint(1))
    want = f"edvis: error: {run.checkpoint(1)} holds another model than the run {run.root}: {diff}"
    assert error_line(capsys, "export", "--run", run.root) == want
    assert error_line(capsys, *train_argv(data, run.root)) == want  # resuming from it
    assert run.onnx_epochs() == []


def test_checkpoint_whose_weights_do_not_fit_its_config(data: Path, tmp_path: Path, checkpoints: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # model_config agrees with the run (3 classes), but the weights are a 5-class model's.
    five = torch.load(checkpoints["5 classes"], weights_only=False)
    run = write_config(tmp_path / "run", data)
    save_checkpoint(run.checkpoint(1), num_classes=3, model=five["model"])
    want = f"edvis: error: {run.checkpoint(1)}: its weights do not fit its own model_config: "
    assert error_line(capsys, "export", "--run", run.root).startswith(want)
    assert error_line(capsys, *train_argv(data, run.root)).startswith(want)


@pytest.mark.parametrize("keep", [0, 1000, 1 << 20])
def test_truncated_checkpoint(data: Path, tmp_path: Path, checkpoints: dict[str, Path],
                              capsys: pytest.CaptureFixture[str], keep: int) -> None:
    run = write_config(tmp_path / "run", data)
    run.checkpoint_dir.mkdir()
    copy_checkpoint(checkpoints["good"], run.checkpoint(1))
    run.checkpoint(1).write_bytes(checkpoints["good"].read_bytes()[:keep])
    want = f"edvis: error: checkpoint {run.checkpoint(1)} is damaged: its bytes (sha256 "
    assert error_line(capsys, "export", "--run", run.root).startswith(want)
    assert error_line(capsys, *train_argv(data, run.root)).startswith(want)


def test_checkpoint_of_another_schema(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_config(tmp_path / "run", data)
    save_checkpoint(run.checkpoint(1), schema=CHECKPOINT_SCHEMA + 1)
    want = f"edvis: error: {run.checkpoint(1)} is not an edvis checkpoint of schema {CHECKPOINT_SCHEMA}"
    assert error_line(capsys, "export", "--run", run.root) == want
    assert error_line(capsys, *train_argv(data, run.root)) == want


# --- ONNX files -------------------------------------------------------------------------------


def test_truncated_onnx(run_copy: Run, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = run_copy.onnx(1)
    size = onnx.stat().st_size
    _truncate(onnx, size // 2)
    line = error_line(capsys, "render", "--run", run_copy.root, "--perturbations")
    assert line == (f"edvis: error: {onnx} is {size // 2} bytes but was exported as {size} "
                    "(truncated or replaced); run `edvis export` to write it again")
    assert not run_copy.render_dir.joinpath("clean").exists()
    # As the message says: export notices the damage and writes the file again; render then works.
    assert main(["export", "--run", str(run_copy.root)]) == 0
    assert onnx.stat().st_size == size
    assert main(["render", "--run", str(run_copy.root), "--perturbations"]) == 0


def test_damaged_onnx_of_the_right_size(run_copy: Run, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = run_copy.onnx(1)
    with open(onnx, "r+b") as f:
        f.write(b"\xff" * 4096)  # the protobuf header and graph start become garbage
    line = error_line(capsys, "render", "--run", run_copy.root, "--perturbations")
    assert line.startswith(f"edvis: error: ONNX file {onnx} is damaged: its bytes (sha256 ")
    assert line.endswith("; run `edvis export` to export it again")
    assert main(["export", "--run", str(run_copy.root)]) == 0  # its checkpoint is sound: exported again
    assert main(["render", "--run", str(run_copy.root), "--perturbations"]) == 0


# --- schema versions ----------------------------------------------------------------------------


def test_run_config_of_another_schema(run_copy: Run, data: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = json.loads(run_copy.config_path.read_text())
    assert config["schema"] == 1
    run_copy.config_path.write_text(json.dumps({**config, "schema": 2}))
    want = (f"edvis: error: {run_copy.config_path} has schema 2; this edvis reads run schema 1: "
            "use the edvis version that wrote it, or train into a new run folder")
    assert error_line(capsys, "export", "--run", run_copy.root) == want
    assert error_line(capsys, "render", "--run", run_copy.root) == want
    assert error_line(capsys, "site", "--run", run_copy.root, "--out", tmp_path / "site") == want
    assert error_line(capsys, *train_argv(data, run_copy.root)) == want
    assert not (tmp_path / "site").exists()


def test_run_config_without_schema_reads_as_schema_1(run_copy: Run) -> None:
    config = json.loads(run_copy.config_path.read_text())
    del config["schema"]  # as written before the field existed
    run_copy.config_path.write_text(json.dumps(config))
    assert run_copy.read_config() == config


def test_render_manifest_of_another_schema(run_copy: Run, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--run", str(run_copy.root), "--perturbations"]) == 0
    manifest = run_copy.render_dir / "manifest.json"
    text = manifest.read_text()
    assert json.loads(text)["schema"] == 1
    write_verified(manifest, text.replace('"schema": 1', '"schema": 2').encode())  # as another edvis wrote it
    want = (f"edvis: error: {manifest} has schema 2; this edvis reads schema 1: "
            "render again into a new run folder")
    assert error_line(capsys, "render", "--run", run_copy.root, "--perturbations") == want
    assert error_line(capsys, "site", "--run", run_copy.root, "--out", tmp_path / "site") == want


def test_damaged_json_files(run_copy: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = run_copy.export_record(1)
    record.write_text(record.read_text()[:20])
    assert error_line(capsys, "render", "--run", run_copy.root).startswith(
        f"edvis: error: missing or damaged export record {record} (run `edvis export`): ")
    run_copy.config_path.write_text("{not json")
    assert error_line(capsys, "render", "--run", run_copy.root).startswith(
        f"edvis: error: cannot read {run_copy.config_path}: ")


def test_truncated_render_unit(run_copy: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--run", str(run_copy.root), "--perturbations"]) == 0
    assert main(["analyze", "--run", str(run_copy.root)]) == 0
    unit = run_copy.render_dir / "clean" / "epoch_001.npz"
    _truncate(unit, unit.stat().st_size // 2)
    want = f"edvis: error: render unit {unit} is damaged: its bytes (sha256 "
    for stage in (["site", "--run", run_copy.root, "--out", tmp_path / "site"], ["analyze", "--run", run_copy.root,
                                                                                "--force"]):
        line = error_line(capsys, *stage)
        assert line.startswith(want) and line.endswith("; run `edvis render` to render it again"), stage
    assert main(["render", "--run", str(run_copy.root), "--perturbations"]) == 0  # renders it again
    assert main(["analyze", "--run", str(run_copy.root)]) == 0
    assert main(["site", "--run", str(run_copy.root), "--out", str(tmp_path / "site")]) == 0


# --- numbers a flag takes, and what the system refuses ------------------------------------------

BAD_FLAGS = [
    (["synth", "--out", "X", "--classes", "0"], "--classes must be >= 1 and <= 12, got 0"),
    (["synth", "--out", "X", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["synth", "--out", "X", "--val-per-class", "x"], "--val-per-class must be an integer, got 'x'"),
    (["data", "tiny-imagenet", "--out", "X", "--retries", "0"], "--retries must be >= 1, got 0"),
    (["train", "--data", "X", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--data", "X", "--workers", "-1"], "--workers must be >= 0, got -1"),
    (["train", "--data", "X", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["train", "--data", "X", "--lr", "nan"], "--lr must be a finite number, got 'nan'"),
    (["train", "--data", "X", "--dropout", "1"], "--dropout must be >= 0 and < 1, got 1"),
    (["train", "--data", "X", "--cutmix", "1.5"], "--cutmix must be >= 0 and <= 1, got 1.5"),
    (["train", "--data", "X", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["train", "--data", "X", "--recipe", "x"], "--recipe: invalid choice: 'x' (choose from 'demo', 'photo', 'author')"),
    (["train", "--data", "X", "--model", "resnet50"],
     "--model must be edvis-resnet18, cam-resnet18 or torchvision:NAME, got 'resnet50'"),
    (["train", "--data", "X", "--image-size", "16"], "--image-size must be >= 32 and <= 1024, got 16"),
    (["train", "--data", "X", "--image-size", "100000"], "--image-size must be >= 32 and <= 1024, got 100000"),
    (["render", "--batch-size", "-5"], "--batch-size must be >= 1, got -5"),
    (["render", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["analyze", "--pattern-threshold", "2"], "--pattern-threshold must be >= 0 and <= 1, got 2"),
    (["site", "--timeline-images", "-1"], "--timeline-images must be >= 0, got -1"),
    (["site", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["train"], "the following arguments are required: --data"),
    (["explain", "--method", "gradcam", "--images", "0"], "--images must be >= 1, got 0"),
    (["explain", "--method", "gradcam", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["explain", "--method", "gradcam", "--device", "tpu"],
     "--device: invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda')"),
    (["nonsense"], "COMMAND: invalid choice: 'nonsense' (choose from 'synth', 'data', 'train', 'export', 'render', "
     "'explain', 'faithfulness', 'analyze', 'site', 'gpu-check')"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_naming_it(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"edvis: error: {message}"], err  # no usage dump, no traceback


def test_synth_into_a_file_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    line = error_line(capsys, "synth", "--out", tmp_path / "file", "--classes", 1, "--train-per-class", 1,
                      "--val-per-class", 1)
    assert str(tmp_path / "file") in line and ("Not a directory" in line or "File exists" in line)
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    line = error_line(capsys, "synth", "--out", tmp_path / "ro" / "ds", "--classes", 1)
    assert str(tmp_path / "ro") in line and "Permission denied" in line


def test_permission_denied_is_one_line_naming_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    line = error_line(capsys, "synth", "--out", tmp_path / "ds", "--classes", 1, "--train-per-class", 1,
                      "--val-per-class", 1)
    assert line.startswith(f"edvis: error: {tmp_path / 'ds'}") and line.endswith(": Permission denied")
