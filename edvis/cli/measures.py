"""``edvis explain`` (the standard methods, pytorch-grad-cam) and ``edvis faithfulness``
(deletion, insertion and Average Drop, onnxruntime): their flags and what they run."""

from __future__ import annotations

import argparse
from pathlib import Path

from edvis.cli.args import DEFAULT_RUN, POSITIVE, SEED, pick_device
from edvis.errors import UsageError
from edvis.run.lock import writer_lock

__all__ = ["add_explain", "add_faithfulness"]


def cmd_explain(a: argparse.Namespace) -> None:
    from edvis.explain import METHODS, SANITY_IMAGES, explain_run, sanity_run

    if a.method is None and not a.sanity:
        raise UsageError("--method is required (a method, or all), unless --sanity is given")
    if a.method in ("all", None):
        methods = list(METHODS)
    else:
        methods = list(dict.fromkeys(a.method.split(",")))
        for m in methods:
            if m not in METHODS:
                raise UsageError(f"--method must be one of {', '.join(METHODS)}, a comma list of them, or all, "
                                 f"got {m!r}")
    device = pick_device(a.device)
    if a.sanity:
        with writer_lock(a.run, "explain.sanity"):
            sanity_run(a.run, methods, layer=a.layer, images=a.images or SANITY_IMAGES, seed=a.seed,
                       batch_size=a.batch_size, device=device, data_root=a.data)
        return
    for method in methods:
        with writer_lock(a.run, f"explain.{method}"):
            explain_run(a.run, method, layer=a.layer, images=a.images, seed=a.seed, batch_size=a.batch_size,
                        device=device, data_root=a.data, settings=a.settings, epochs=a.epochs)


def cmd_faithfulness(a: argparse.Namespace) -> None:
    from edvis.faithfulness import faithfulness_run

    with writer_lock(a.run, "faithfulness"):
        faithfulness_run(a.run, images=a.images, steps=a.steps, seed=a.seed, epochs=a.epochs, settings=a.settings,
                         provider=a.provider, batch_size=a.batch_size, data_root=a.data)


def add_explain(sub: argparse._SubParsersAction) -> None:
    """edvis explain: a standard method's maps (pytorch-grad-cam) for every epoch and rendered setting."""
    x = sub.add_parser("explain", help="compute a standard explanation method's maps (pytorch-grad-cam) for every "
                       "epoch checkpoint and rendered setting",
                       description="Fill RUN/explain/METHOD (a render store) with the method's raw maps of the true and "
                       "the top-1 class, at the layer's own resolution, for every checkpoint and every setting in "
                       "RUN/render; units already computed from the same checkpoint are skipped. Details: docs/explain.md.")
    x.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    x.add_argument("--method", metavar="NAME",
                   help="gradcam, gradcam++, xgradcam, layercam, eigencam, scorecam, a comma list of them, or all "
                   "for the six (required without --sanity; with it, default all)")
    x.add_argument("--sanity", action="store_true",
                   help="instead, write RUN/explain/sanity.npz: at the final checkpoint, the maps of a cascading "
                   "randomisation of the layers (last first) and of a random other class, for --images images (default 8)")
    x.add_argument("--layer", help="tapped layer to explain: conv1, layer1 … layer4, and for edvis-resnet18 expand, up1 "
                   "and maps (default: maps for edvis-resnet18, the model's own map layer; layer4 for cam-resnet18)")
    x.add_argument("--images", type=POSITIVE, metavar="K",
                   help="explain a seeded subset of K validation images (default: all of them; 64 for scorecam)")
    x.add_argument("--seed", type=SEED, default=0,
                   help="seed of the image subset and of the random perturbations, as in `edvis render` (default 0)")
    x.add_argument("--batch-size", type=POSITIVE,
                   help="images per batch (default 64 on the CPU, 256 on CUDA); for scorecam, masked images per forward pass")
    x.add_argument("--settings", nargs="+", metavar="NAME",
                   help="settings explained, each rendered in RUN/render (default: every rendered setting)")
    x.add_argument("--epochs", type=_epochs_spec, metavar="all|E1,E2",
                   help="checkpoints explained: all, or a comma list of epoch numbers and the words first and last "
                   "(default all)")
    x.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto picks CUDA when PyTorch sees a GPU, else the CPU (default auto)")
    x.add_argument("--data", type=Path, help="dataset folder, if it moved since rendering (default: the render manifest's)")
    x.set_defaults(func=cmd_explain)


def _epochs_spec(text: str) -> str:
    """An argparse ``type`` for ``--epochs``: all, or a comma list of epoch numbers, first and last."""
    items = [s.strip() for s in text.split(",")]
    if text.strip() != "all" and not all(s in ("first", "last") or (s.isdigit() and int(s) >= 1) for s in items):
        raise argparse.ArgumentTypeError(f"must be all or a comma list of epochs (numbers >= 1, first, last), got {text!r}")
    return text


def add_faithfulness(sub: argparse._SubParsersAction) -> None:
    """edvis faithfulness: deletion, insertion and Average Drop of every map source."""
    f = sub.add_parser("faithfulness", help="deletion/insertion curves and Average Drop of the model's maps, the "
                       "explanation methods' and two references, by onnxruntime",
                       description="Write RUN/faithfulness/<setting>/epoch_NNN.npz: for a seeded subset of validation "
                       "images, the true class's probability as the cells each method ranks highest are blurred "
                       "(deletion) or restored (insertion), and under the method's map as a mask (Average Drop). "
                       "Files up to date are skipped. Definitions: docs/faithfulness.md.")
    f.add_argument("--run", type=Path, default=Path(DEFAULT_RUN), help=f"run folder (default {DEFAULT_RUN})")
    f.add_argument("--images", type=POSITIVE, default=64,
                   help="validation images measured, a seeded subset spread over the classes (default 64)")
    f.add_argument("--steps", type=POSITIVE, default=16, help="steps of each curve, from no cell to all (default 16)")
    f.add_argument("--seed", type=SEED, default=0, help="seed of the image subset and the random order (default 0)")
    f.add_argument("--settings", nargs="+", default=["clean"], metavar="NAME",
                   help="settings measured, each rendered in RUN/render (default: clean)")
    f.add_argument("--epochs", type=_epochs_spec, default="all", metavar="all|E1,E2",
                   help="exported epochs measured: all, or a comma list of epoch numbers and the words first and "
                   "last (default all)")
    f.add_argument("--provider", default="auto", choices=["auto", "cpu", "cuda"],
                   help="onnxruntime execution provider: auto uses CUDA when a GPU is present (default auto)")
    f.add_argument("--batch-size", type=POSITIVE, help="images per inference batch (default 256 on the CPU, 2048 on CUDA)")
    f.add_argument("--data", type=Path, help="dataset folder, if it moved since training (default: the one in RUN/config.json)")
    f.set_defaults(func=cmd_faithfulness)
