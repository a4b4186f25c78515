"""int8 on the CPU against float32 and torch eager, in one run, on the demo's last epoch.

The demo run is $EDVIS_DEMO_RUN (default runs/default, what `make site` trains); without it, the
renderer benchmark's run (bench_render.build_run, far less trained) stands in. Its int8 files are
made in a copy under $EDVIS_BENCH_DIR, calibrated on 256 training images (seed 0).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(os.environ.get("EDVIS_BENCH_DIR", "/tmp/edvis-bench")) / "precision"
DEMO = Path(os.environ.get("EDVIS_DEMO_RUN", "runs/default"))


def run() -> list[dict]:
    import torch
    from bench_render import build_run, rate, session

    from edvis.data import load_images, open_dataset
    from edvis.models import Uint8Input, build_model
    from edvis.precision import compare_sessions, convert_run
    from edvis.run import Run, RunError, load_checkpoint

    source = DEMO if (DEMO / "onnx").is_dir() else build_run()
    copy = ROOT / "run"
    last = Run(source).onnx_epochs()[-1]
    if not (copy / "onnx").is_dir():  # the last epoch only
        shutil.rmtree(ROOT, ignore_errors=True)
        for folder in ("onnx", "checkpoints"):
            (copy / folder).mkdir(parents=True)
            for f in (source / folder).glob(f"epoch_{last:03d}.*"):
                shutil.copy2(f, copy / folder / f.name)
        shutil.copy2(source / "config.json", copy / "config.json")
    convert_run(copy, "int8", calibration=256, seed=0)
    r, q = Run(copy), Run(copy, "int8")
    epoch = r.onnx_epochs()[-1]
    ds = open_dataset(r.read_config()["dataset"]["root"])
    images = load_images([s.path for s in ds.val])
    import numpy as np

    labels = np.array([s.label for s in ds.val])
    report = compare_sessions(session(r.onnx(epoch)), session(q.onnx(epoch)), images, labels)
    try:
        ckpt = load_checkpoint(r.checkpoint(epoch))
    except RunError:  # a demo run trained before checkpoints had digests
        ckpt = torch.load(r.checkpoint(epoch), map_location="cpu", weights_only=False)
    mc = ckpt["model_config"]
    model = build_model(mc)
    model.load_state_dict(ckpt["model"])
    wrapped = Uint8Input(model, mc["mean"], mc["std"]).eval()

    def eager(batch):
        with torch.inference_mode():
            wrapped(torch.from_numpy(batch))

    t_rate = rate(eager, images)
    i8, f32 = report["img_s"], report["reference_img_s"]
    name = "demo" if source == DEMO else "bench run"
    return [
        {"benchmark": f"render: int8 vs fp32 onnxruntime vs torch eager, {name} epoch {epoch}, {len(images)} images, "
                      f"{torch.get_num_threads()} threads (img/s)",
         "measured": f"{i8:.0f} vs {f32:.0f} vs {t_rate:.0f}", "ratio": i8 / f32, "target": "≥ 1.5 (int8/fp32)",
         "met": i8 / f32 >= 1.5},
        {"benchmark": f"render: int8 top-1 agreement with fp32 ({name}); map |dev| max "
                      f"{report['map_max_abs_dev']:.3g}, mean {report['map_mean_abs_dev']:.3g}",
         "measured": f"{report['top1_agreement']:.2%}", "ratio": report["top1_agreement"], "target": "≥ 0.99",
         "met": report["top1_agreement"] >= 0.99},
    ]
