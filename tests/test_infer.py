"""The CUDA render path's parts that run anywhere: batch size from free memory, the prefetching
producer, I/O binding (here bound to the CPU), and the free-memory query."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edvis.infer import batch_for_memory, cuda_free_bytes, infer_bound, prefetch

MIB = 1 << 20


@pytest.mark.parametrize(("free", "want"), [
    (8 << 30, 2048),  # half of 8 GiB is 4096 MiB; a 64 × 64 image takes 512 · 4096 B = 2 MiB
    (3 << 30, 512),  # 1536 MiB holds 768 images: the power of two below
    (139 << 30, 4096),  # an H200 holds 35,584: capped
    (40 * MIB, 32),  # 10 images: never below 32
    (None, 1024),  # nvidia-smi could not say
])
def test_the_batch_is_the_power_of_two_that_half_the_free_memory_holds(free, want):
    assert batch_for_memory(free, 64) == want


def test_a_larger_image_takes_a_smaller_batch():
    assert batch_for_memory(8 << 30, 128) == 512  # 8 MiB an image: 4096 MiB / 8 MiB


def test_prefetch_yields_the_same_batches_in_the_same_order():
    images = np.arange(10 * 2, dtype=np.uint8).reshape(10, 2)
    got = list(prefetch(images, 3))
    assert [i for i, _ in got] == [0, 3, 6, 9]
    for i, b in got:
        assert b.flags["C_CONTIGUOUS"] and np.array_equal(b, images[i : i + 3])
    assert len(got[-1][1]) == 1


def test_prefetch_raises_the_producers_error_and_stops_early():
    class Broken:
        def __len__(self) -> int:
            return 9

        def __getitem__(self, key: slice) -> np.ndarray:
            if key.start == 6:
                raise OSError("disk gone at 6")
            return np.zeros((3, 2), np.uint8)

    seen = []
    with pytest.raises(OSError, match="disk gone at 6"):
        for i, _ in prefetch(Broken(), 3):
            seen.append(i)
    assert seen == [0, 3]
    first = next(iter(prefetch(np.zeros((100, 2), np.uint8), 1)))  # abandoned after one: no hang
    assert first[0] == 0


def _model(path: Path) -> None:
    """images uint8 (B, 4, 4, 3) → logits (B, 3): the per-channel mean; maps (B, 3, 4, 4)."""
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["x"], ["maps"], perm=[0, 3, 1, 2]),
        helper.make_node("ReduceMean", ["maps", "axes"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", 4, 4, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 3]),
         helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["B", 3, 4, 4])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))


def test_bound_inference_gives_what_session_run_gives(tmp_path: Path):
    _model(tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    logits, maps = infer_bound(session, images, 3, device="cpu")
    assert logits.shape == (7, 3) and maps.shape == (7, 3, 4, 4)
    assert np.array_equal(maps, images.transpose(0, 3, 1, 2).astype(np.float32))
    np.testing.assert_allclose(logits, images.reshape(7, 16, 3).mean(axis=1), rtol=1e-6)
    want = [session.run(["logits", "maps"], {"images": images[i : i + 3]}) for i in range(0, 7, 3)]
    assert np.array_equal(logits, np.concatenate([w[0] for w in want]))


def test_free_memory_is_asked_of_nvidia_smi_for_the_visible_device(tmp_path: Path, monkeypatch):
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'args'}\necho 81234\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert cuda_free_bytes() == 81234 * MIB
    assert "--id=2" in (tmp_path / "args").read_text()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert cuda_free_bytes() is None
