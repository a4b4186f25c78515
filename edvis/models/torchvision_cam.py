"""Any torchvision classifier with a pooled linear head, as a ``(logits, maps)`` network.

``--model torchvision:NAME`` builds ``torchvision.models.get_model(NAME, num_classes=C)`` and
finds its head *from the model*: :func:`torch.fx.symbolic_trace` (through ``nn.Sequential``
containers, every other module a leaf) gives the graph of its forward; walking back from the
output, the output must be an ``nn.Linear`` (the classifier), and between it and a global average
pooling (``AdaptiveAvgPool2d(1)``, ``F.adaptive_avg_pool2d(x, 1)`` or a mean over the two spatial
axes) only these may stand:

* shape-only operations (flatten, view, reshape, squeeze) and ``Dropout`` / ``Identity``;
* modules that act on each position alone: after the flatten ``nn.Linear``, ``LayerNorm`` and
  element-wise activations (on the last axis), before it ``LayerNorm2d``, ``BatchNorm2d`` and
  element-wise activations. They are *moved ahead of the pooling* (applied at every
  position of the feature map), which turns the head into a pooled linear one.

The input of the pooling is the last feature map f (B, K, h, w); the model's maps are the class
activation maps of the classifier (W, b) over it, bias included, as ``cam-resnet18``'s:
M_c = W_c · g(f) + b_c, where g is the moved modules, and the logits W · mean(g(f)) + b are
exactly the spatial mean of the maps. Dropout is applied to the pooled vector, as torchvision does
(a functional ``F.dropout`` in the head becomes an ``nn.Dropout`` of its probability).

What qualifies: ResNet, ResNeXt, Wide ResNet, RegNet, MobileNetV2, EfficientNet (V1, V2), DenseNet
(its ReLU after the features is part of f) have a pooling then dropout and one linear layer: their
logits are torchvision's own. MobileNetV3 (Linear → Hardswish → Dropout → Linear) and ConvNeXt
(LayerNorm2d → Flatten → Linear) qualify with their head's per-position part moved ahead of the
pooling: a different function from torchvision's for the same weights (the norm or the hidden
layer sees each position, not the pooled vector). Anything else between the pooling and the last
linear layer (a class token, a non-global pooling, no linear layer at the end) is refused with one
line naming the model and what was found.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from edvis.errors import UsageError

PREFIX = "torchvision:"
MAX_TAPS = 5

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Hardsigmoid,
                nn.LeakyReLU, nn.ELU, nn.Mish, nn.PReLU)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_SHAPE_FUNCS = (torch.flatten, torch.squeeze, torch.reshape)
_SHAPE_METHODS = ("flatten", "view", "reshape", "squeeze")


class HeadError(UsageError):
    """A torchvision model whose head is not global pooling then a linear layer."""


def torchvision_names() -> list[str]:
    """The classification models torchvision's registry builds."""
    import torchvision.models

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_name(name: str) -> str:
    """``NAME`` of ``torchvision:NAME``; a UsageError naming --model for one torchvision lacks."""
    arch = name.removeprefix(PREFIX)
    if arch not in torchvision_names():
        raise UsageError(f"--model {name}: torchvision has no classification model {arch!r} "
                         f"(torchvision.models.list_models(module=torchvision.models) lists them)")
    return arch


def _per_position(module: nn.Module, after_flatten: bool) -> bool:
    """Whether ``module`` acts on each position alone: on (B, K) vectors along their last axis
    (``after_flatten``), or on (B, K, 1, 1) maps one position at a time."""
    from torchvision.models.convnext import LayerNorm2d

    if after_flatten:
        return isinstance(module, (nn.Linear, nn.LayerNorm, nn.Identity, *_ACTIVATIONS))
    return isinstance(module, (LayerNorm2d, nn.BatchNorm2d, nn.Identity, *_ACTIVATIONS))


class _Tracer(fx.Tracer):
    """Traces through plain ``nn.Sequential`` containers; every other module is one leaf node
    (a block's own control flow, e.g. stochastic depth's training switch, stays inside it)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return type(m).forward is not nn.Sequential.forward


def _is_global_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    def one(size: Any) -> bool:
        return size == 1 or (isinstance(size, (tuple, list)) and tuple(size) == (1, 1))

    if node.op == "call_module":
        m = modules[str(node.target)]
        return isinstance(m, nn.AdaptiveAvgPool2d) and one(m.output_size)
    if node.op == "call_function" and node.target in (F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d):
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return one(size)
    dims = None
    if node.op == "call_method" and node.target == "mean":
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    elif node.op == "call_function" and node.target is torch.mean:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return isinstance(dims, (tuple, list)) and sorted(int(d) % 4 for d in dims) == [2, 3]


def _is_shape_op(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], (nn.Flatten, nn.Identity, *_DROPOUTS))
    if node.op == "call_function":
        return node.target in _SHAPE_FUNCS or node.target is F.dropout  # find_head keeps its p
    return node.op == "call_method" and node.target in _SHAPE_METHODS


def _describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{type(modules[str(node.target)]).__name__} ({node.target})"
    return str(getattr(node.target, "__name__", node.target))


def _dropout_p(node: fx.Node) -> float:
    """The probability of a functional ``F.dropout(x, p, training)`` node (torch's default 0.5)."""
    p = node.args[1] if len(node.args) > 1 else node.kwargs.get("p", 0.5)
    if not isinstance(p, (int, float)):
        raise HeadError(f"F.dropout with a probability computed at run time ({p}) in the head")
    return float(p)


def find_head(traced: fx.GraphModule, label: str) -> tuple[fx.Node, list[str | float], list[tuple[str, bool]], str]:
    """(the feature node the global pooling reads, the head's dropouts (a module's path, or the
    probability of a functional ``F.dropout``), the per-position modules' paths with whether they
    act after the flatten (on (B, K), not (B, K, 1, 1)), the classifier's path), or a HeadError
    naming ``label`` and what stands in the way."""
    modules = dict(traced.named_modules())
    out = next(n for n in traced.graph.nodes if n.op == "output")
    node = out.args[0]
    if not (isinstance(node, fx.Node) and node.op == "call_module" and isinstance(modules[str(node.target)], nn.Linear)):
        found = _describe(node, modules) if isinstance(node, fx.Node) else type(node).__name__
        raise HeadError(f"--model {label}: its output is not a linear layer (it is {found}); edvis needs a "
                        f"head of global average pooling then one linear layer for class activation maps")
    classifier = str(node.target)
    dropouts: list[str | float] = []
    moved: list[tuple[str, bool]] = []
    flattened = False
    node = node.args[0]
    while True:
        if not isinstance(node, fx.Node) or node.op in ("placeholder", "get_attr"):
            raise HeadError(f"--model {label}: no global average pooling feeds its last linear layer "
                            f"{classifier}; edvis needs a head of global average pooling then one linear layer")
        if _is_global_pool(node, modules):
            break
        if _is_shape_op(node, modules):
            if node.op == "call_module" and isinstance(modules[str(node.target)], _DROPOUTS):
                dropouts.insert(0, str(node.target))
            elif node.op == "call_function" and node.target is F.dropout:
                # the trace fixed its `training` flag; the model applies an nn.Dropout of its p instead
                dropouts.insert(0, _dropout_p(node))
            elif not (node.op == "call_module" and isinstance(modules[str(node.target)], nn.Identity)):
                flattened = True  # walking backwards: what comes earlier acts before the flatten
        elif node.op == "call_module" and _per_position(modules[str(node.target)], not flattened):
            moved.insert(0, (str(node.target), not flattened))  # seen before a flatten: acts after it
        else:
            raise HeadError(f"--model {label}: between its last linear layer {classifier} and a global "
                            f"average pooling stands {_describe(node, modules)}, which is neither a shape "
                            f"operation nor a per-position layer; edvis needs a pooled linear head")
        node = node.args[0]
    return node.args[0], dropouts, moved, classifier


def _body(traced: fx.GraphModule, feature: fx.Node) -> fx.GraphModule:
    """The traced model cut after ``feature``: (B, 3, H, W) → the last feature map."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in traced.graph.nodes:
        if node.op == "output":
            break
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node is feature:
            break
    graph.output(env[feature])
    body = fx.GraphModule(traced, graph)
    body.graph.eliminate_dead_code()
    body.recompile()
    body.delete_all_unused_submodules()
    return body


class TorchvisionCam(nn.Module):
    """A torchvision classifier returning ``(logits, maps)``: maps (B, C, h, w) are the class
    activation maps of its classifier over its last feature map, bias included, so that the
    logits (B, C) are their spatial mean (see the module docstring)."""

    def __init__(self, config: Any, net: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        self.arch = check_name(config.name)
        if net is None:
            from torchvision.models import get_model

            probe(config.name, config.image_size)  # refuses an unfit model before building it
            net = get_model(self.arch, weights=None, num_classes=config.num_classes)
        traced = fx.GraphModule(net, _Tracer().trace(net.eval()))
        feature, dropouts, moved, classifier = find_head(traced, config.name)
        self.body = _body(traced, feature)
        # Where each part sits in torchvision's own state dict (for --pretrained).
        self.paths = {"moved": [p for p, _ in moved], "dropout": [d for d in dropouts if isinstance(d, str)],
                      "fc": classifier}
        self.after_flatten = [after for _, after in moved]
        self.moved = nn.ModuleList(net.get_submodule(p) for p, _ in moved)
        # a functional F.dropout of the head becomes a module, so that it follows train() / eval()
        self.dropout = nn.ModuleList(nn.Dropout(d) if isinstance(d, float) else net.get_submodule(d) for d in dropouts)
        self.fc: nn.Linear = net.get_submodule(classifier)  # type: ignore[assignment]

    def head_input(self, f: Tensor) -> Tensor:
        """The feature map with the head's per-position modules applied at every position."""
        for module, after in zip(self.moved, self.after_flatten):
            if after:  # a module of (B, K) vectors, acting on the last axis: applied to (B, h, w, K)
                # (no reshape: the exported graph keeps static map sizes)
                f = module(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            else:
                f = module(f)
        return f

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.head_input(self.body(x))  # (B, K, h, w)
        pooled = f.mean(dim=(2, 3))
        for d in self.dropout:
            pooled = d(pooled)
        logits = self.fc(pooled)  # (B, C)
        maps = F.conv2d(f, self.fc.weight[:, :, None, None], self.fc.bias)  # (B, C, h, w)
        return logits, maps

    def taps(self) -> list[tuple[str, str]]:
        """Layer taps for the Layers page, (name, submodule path): the output of the last module
        at each spatial resolution of the body, the last :data:`MAX_TAPS` resolutions."""
        return torchvision_taps(self.config.name, self.config.image_size)

    def load_pretrained(self, spec: str) -> str:
        """Start from the weights ``spec`` names: ``imagenet`` (torchvision's DEFAULT weights of the
        architecture, through its weights API) or the path of a state dict of the same torchvision
        model. The classifier is loaded when its shape fits, else kept at its initialisation."""
        state, source = torchvision_state(self.arch, spec)
        return source + load_torchvision_state(self, state, source)


def torchvision_taps(name: str, image_size: int) -> list[tuple[str, str]]:
    """(name, submodule path) of the taps of ``torchvision:NAME`` at ``image_size``, without
    building it (see :meth:`TorchvisionCam.taps`); the last is the end of the last feature map:
    the body's output itself (path ``body``) when functions follow its last module, named after
    both (DenseNet's ``features.norm5+relu``)."""
    return [(path, "body" if "+" in path else f"body.{path}") for path in probe(name, image_size)[1]]


def _stage_outputs(body: fx.GraphModule, x: Tensor) -> tuple[Tensor, list[str]]:
    """``body(x)`` and the paths of the modules whose outputs end each spatial resolution."""
    shapes: dict[str, tuple[int, ...]] = {}
    calls: dict[str, int] = {}
    for node in body.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    hooks = []
    for path in calls:
        def keep(module: nn.Module, args: Any, output: Any, path: str = path) -> None:
            if isinstance(output, Tensor) and output.dim() == 4:
                shapes[path] = tuple(output.shape)
        hooks.append(body.get_submodule(path).register_forward_hook(keep))
    try:
        with torch.no_grad():
            f = body(x)
    finally:
        for h in hooks:
            h.remove()
    last: dict[tuple[int, ...], str] = {}
    for node in body.graph.nodes:
        path = str(node.target)
        if node.op == "call_module" and calls.get(path) == 1 and path in shapes:
            last.pop(shapes[path][2:], None)
            last[shapes[path][2:]] = path  # the last module of each resolution, in order
    taps = list(last.values())[-MAX_TAPS:]
    # Functions after the last module (DenseNet's F.relu): the last tap is the body's own output,
    # the feature map the maps are made of, named "<module>+<function>…" (see torchvision_taps).
    tail: list[str] = []
    for node in body.graph.nodes:
        if node.op == "call_module":
            tail = []
        elif node.op in ("call_function", "call_method"):
            tail.append(node.name)
    if tail and taps and tuple(f.shape[2:]) in last and last[tuple(f.shape[2:])] == taps[-1]:
        taps[-1] = "+".join([taps[-1], *tail])
    return f, taps


@functools.cache
def probe(name: str, image_size: int) -> tuple[int, list[str]]:
    """(side of the maps, the tapped modules' paths) of ``torchvision:NAME`` at ``image_size``,
    from a model on the meta device (shapes only); a UsageError naming --image-size when the image
    is too small for the model."""
    from torchvision.models import get_model

    try:
        with torch.device("meta"):
            net = get_model(check_name(name), weights=None, num_classes=2)
    except NotImplementedError:  # a builder that reads tensor values (RegNet's widths): on the CPU
        net = get_model(check_name(name), weights=None, num_classes=2).to("meta")
    model = TorchvisionCam(_Probe(name, image_size), net).eval()
    try:
        f, taps = _stage_outputs(model.body, torch.empty(1, 3, image_size, image_size, device="meta"))
    except RuntimeError as e:
        raise UsageError(f"--image-size {image_size}: too small for {name} ({str(e).splitlines()[0][:200]})") from None
    if f.dim() != 4 or f.shape[-1] != f.shape[-2]:
        raise UsageError(f"--model {name}: at {image_size} px its last feature map is {tuple(f.shape[1:])}, not square")
    return int(f.shape[-1]), taps


class _Probe:
    def __init__(self, name: str, image_size: int) -> None:
        self.name, self.image_size, self.num_classes = name, image_size, 2


def torchvision_state(arch: str, spec: str) -> tuple[dict[str, Tensor], str]:
    """The state dict ``--pretrained spec`` names for ``arch`` and a label for messages."""
    from edvis.models.networks import fetch_weights, read_state_dict

    if spec != "imagenet":
        return read_state_dict(spec, f"a torchvision {arch} state dict"), str(Path(spec).expanduser())
    from torchvision.models import get_model_weights

    weights = get_model_weights(arch).DEFAULT
    label = f"torchvision {type(weights).__name__}.{weights.name}"
    state = fetch_weights(weights, label, "state dict")
    return state, label


def load_torchvision_state(model: TorchvisionCam, state: dict[str, Any], source: str) -> str:
    """Copy a torchvision state dict (torchvision's own key names) into ``model``, strictly but for
    the classifier; returns what was done with the classifier, for the log."""
    from edvis.models.networks import PretrainedError
    from edvis.models.networks import _few as few

    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PretrainedError(f"{source}: not a state dict (a dict of tensors)")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = {**{k: f"body.{k}" for k in model.body.state_dict()},
           **{f"{p}.{k}": f"moved.{i}.{k}" for i, p in enumerate(model.paths["moved"])
              for k in model.moved[i].state_dict()}}
    fc = {f"{model.paths['fc']}.{k}": f"fc.{k}" for k in model.fc.state_dict()}
    mine = model.state_dict()
    missing = [k for k in own if k not in state]
    foreign = [k for k in state if k not in own and k not in fc]
    if missing or foreign:
        what = f"missing {few(missing)}" if missing else f"unexpected keys {few(foreign)}"
        raise PretrainedError(f"{source}: not a torchvision {model.arch} state dict ({what})")
    wrong = [k for k, mk in own.items() if state[k].shape != mine[mk].shape]
    if wrong:
        k = wrong[0]
        raise PretrainedError(f"{source}: {k} has shape {tuple(state[k].shape)}, {model.arch} needs "
                              f"{tuple(mine[own[k]].shape)}" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))
    fits = all(k in state and state[k].shape == mine[mk].shape for k, mk in fc.items())
    new = {mk: state[k] for k, mk in (own | (fc if fits else {})).items()}
    model.load_state_dict({**mine, **new}, strict=True)
    if fits:
        return " (classifier included)"
    return f" (classifier {model.paths['fc']} left at its initialisation: {model.config.num_classes} classes)"


def is_torchvision(name: str) -> bool:
    return name.startswith(PREFIX)

