r"""ImageNet-pretrained ResNet weights from torchvision / timm files into the Flax backbone.

::

    from pcv.models import PCVNet
    from pcv.models.weights import load_backbone
    model = PCVNet(133, grid.num_bins, backbone="resnet50", backbone_norm="frozen",
                   pretrained="resnet50.safetensors")        # loads at initialisation
    report = load_backbone(model, "resnet50-11ad3fa6.pth")    # or later, by hand
    print(report)  # ...: 265 tensors loaded, 55 ignored (fc.* classifier, num_batches_tracked)

    python -m pcv.pretrained convert resnet50-11ad3fa6.pth resnet50.safetensors  # needs torch
    python -m pcv.pretrained check resnet50.safetensors --backbone=resnet50

Files
-----
* **safetensors** (timm's ``model.safetensors`` on the Hugging Face hub, or a
  file made by ``convert``): read with the ``safetensors`` package (numpy),
  see :func:`read_safetensors`.
* **PyTorch pickles** (``.pth``/``.pt``/``.bin``/``.ckpt``, e.g. torchvision's
  ``resnet50-11ad3fa6.pth``): need ``torch`` (not a dependency of pcv), see
  :func:`read_torch_state_dict`. Convert them once to safetensors to train
  without torch.

Names
-----
torchvision's ``resnet50``/``resnet101`` and timm's plain ``resnet50``/``resnet101``
(7x7 stem, "v1.5" = ``b`` variant, all of timm's ``resnet50.*`` tags) share
one naming: ``conv1``, ``bn1``, ``layer{1-4}.{i}.conv{1,2,3}``,
``layer{1-4}.{i}.bn{1,2,3}``, ``layer{1-4}.0.downsample.{0,1}``, ``fc``.
:func:`pcv.models.resnet.torchvision_key` maps every backbone variable to one
of these names. Other timm variants (``resnet50d``: deep stem ``conv1.0``,
average-pool shortcut ``downsample.1``) have different names or shapes and
are rejected, listing them. A prefix such as ``model.`` or ``backbone.``
before all backbone names (a training checkpoint) is found by itself, and
``module.`` (DataParallel) is stripped.

Layout
------
PyTorch conv weights are OIHW, Flax kernels HWIO: ``w.transpose(2, 3, 1, 0)``.
BatchNorm ``weight, bias, running_mean, running_var`` go to ``scale, bias,
mean, var`` of whichever norm the backbone uses: ``"batch"`` (scale/bias are
:class:`flax.nnx.Param`, mean/var :class:`flax.nnx.BatchStat`) or ``"frozen"``
(all four :class:`~pcv.models.resnet.Frozen`). Epsilon is 1e-5 in both, as in
PyTorch. ``"group"`` norm is refused: GroupNorm normalises with per-image
group statistics, which ImageNet BatchNorm weights were never trained with,
so there is no faithful mapping.

Preprocessing
-------------
torchvision and timm ResNets take ``(x / 255 - mean) / std`` with ImageNet's
``mean = (0.485, 0.456, 0.406)`` and ``std = (0.229, 0.224, 0.225)`` on RGB
in ``[0, 1]``; :func:`pcv.data.normalize_images` computes the same thing on
the 0..255 scale: ``(x - 255 mean) / (255 std)`` with
``255 mean = (123.675, 116.28, 103.53)`` and ``255 std = (58.395, 57.12, 57.375)``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from pcv.errors import MissingDependency, PcvError
from pcv.models.resnet import ResNet, torchvision_key

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# safetensors files (the safetensors package, numpy backend).
# ----------------------------------------------------------------------------


class CorruptFileError(PcvError, ValueError):
    """A weight file that is truncated or not in the format its name promises."""


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file as numpy arrays (BF16 widened to float32).

    Raises :class:`CorruptFileError` naming the file for a truncated file or
    a damaged header.
    """
    try:
        tensors = load_file(os.fspath(path))
    except (SafetensorError, ValueError) as e:
        raise CorruptFileError(f"{path}: not a valid safetensors file: {e}") from None
    return {k: (v.astype(np.float32) if v.dtype.name == "bfloat16" else v) for k, v in tensors.items()}


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file ({} if none)."""
    with safe_open(os.fspath(path), framework="numpy") as f:
        return dict(f.metadata() or {})


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (name -> array, any numpy dtype incl. bfloat16) as a safetensors file."""
    if metadata and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError(f"safetensors metadata must map str to str, got {dict(metadata)!r}")
    save_file(
        {k: np.require(np.asarray(v), requirements="C") for k, v in tensors.items()},
        os.fspath(path),
        metadata=dict(metadata) if metadata else None,
    )


# ----------------------------------------------------------------------------
# PyTorch files (need torch).
# ----------------------------------------------------------------------------

#: Keys under which training scripts nest the state dict in a checkpoint.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def _unwrap(obj, path):
    """The tensor dict inside a torch checkpoint: the object itself or a known wrapper entry."""
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        nested = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not nested:
            break
        obj = obj[nested[0]]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got a {type(obj).__name__}")
    return obj


def strip_module_prefix(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop DataParallel's ``module.`` prefix, when every name has it."""
    tensors = dict(tensors)
    while tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A PyTorch state dict file as numpy arrays (needs ``torch``).

    Accepts a plain state dict or one nested under ``"state_dict"``,
    ``"model"``, ``"model_state_dict"`` or ``"module"``; strips ``module.``.
    Loaded with ``weights_only=True`` (no arbitrary code from the pickle);
    bfloat16 tensors become float32 (numpy has no bfloat16 of its own).
    """
    try:
        import torch
    except ImportError:
        raise MissingDependency(
            f"reading the PyTorch file {path} needs torch, which pcv does not install: "
            "`pip install torch`, or convert it elsewhere with "
            "`python -m pcv.pretrained convert IN.pth OUT.safetensors` and load the .safetensors file"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types (pickle, zip, RuntimeError) for a bad file
        raise CorruptFileError(f"{path}: torch.load could not read it as a weights-only checkpoint: {e}") from e
    state = _unwrap(obj, path)
    out = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        out[str(name)] = value.numpy()
    return strip_module_prefix(out)


_TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a weight file by its extension, else by its first bytes.

    ``.safetensors`` -> :func:`read_safetensors` (numpy only); ``.pth``,
    ``.pt``, ``.bin``, ``.ckpt``, ``.tar`` or a zip/pickle file ->
    :func:`read_torch_state_dict` (needs torch). ``module.`` is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weight file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return strip_module_prefix(read_safetensors(path))
    if suffix in _TORCH_SUFFIXES:
        return read_torch_state_dict(path)
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch's zip format / a legacy pickle
        return read_torch_state_dict(path)
    if len(head) == 9 and head[8:9] == b"{":  # 8-byte length, then the JSON header
        return strip_module_prefix(read_safetensors(path))
    raise ValueError(
        f"{path}: unknown weight file type; expected .safetensors or a PyTorch file ({', '.join(_TORCH_SUFFIXES)})"
    )


# ----------------------------------------------------------------------------
# Into the backbone.
# ----------------------------------------------------------------------------

#: Source names that have no counterpart in the backbone, skipped and reported.
IGNORED_SUFFIXES = (".num_batches_tracked",)
IGNORED_MODULES = ("fc.",)  # the ImageNet classifier


class WeightMismatchError(PcvError, ValueError):
    """The weights do not fit the backbone: lists missing, unexpected and mis-shaped names.

    Attributes ``missing`` [(name, expected torch shape)], ``unexpected``
    [(name, shape)], ``mismatched`` [(name, expected, got)], ``invalid``
    [(name, reason)].
    """

    def __init__(self, source, missing=(), unexpected=(), mismatched=(), invalid=(), hint=""):
        self.missing, self.unexpected = list(missing), list(unexpected)
        self.mismatched, self.invalid = list(mismatched), list(invalid)
        lines = [f"pretrained weights {source} do not fit the backbone:"]

        def section(title, rows, fmt, limit=40):
            if rows:
                lines.append(f"  {len(rows)} {title}:")
                lines.extend("    " + fmt(*r) for r in rows[:limit])
                if len(rows) > limit:
                    lines.append(f"    ... and {len(rows) - limit} more")

        section("missing (name, expected shape)", self.missing, lambda n, s: f"{n}  expected {s}")
        section("unexpected (name, shape)", self.unexpected, lambda n, s: f"{n}  {s}")
        section(
            "with the wrong shape (name, expected, got)",
            self.mismatched,
            lambda n, e, g: f"{n}  expected {e}, got {g}",
        )
        section("invalid", self.invalid, lambda n, r: f"{n}  {r}")
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone` did: torch names loaded and ignored."""

    source: str
    prefix: str
    loaded: tuple[str, ...]
    ignored: tuple[str, ...]

    def __str__(self):
        kinds = sorted({_ignore_reason(n) for n in self.ignored})
        where = f" under prefix {self.prefix!r}" if self.prefix else ""
        return (
            f"{self.source}: {len(self.loaded)} tensors loaded{where}, "
            f"{len(self.ignored)} ignored ({', '.join(kinds) or 'none'})"
        )


def _ignore_reason(name):
    if name.endswith(IGNORED_SUFFIXES):
        return "num_batches_tracked"
    if name.startswith(IGNORED_MODULES):
        return "fc.* classifier"
    return "outside the backbone prefix"


def _backbone_of(model):
    if isinstance(model, ResNet):
        return model
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, ResNet):
        return backbone
    raise TypeError(f"expected a pcv ResNet or a model with a .backbone ResNet, got {type(model).__name__}")


def _find_prefix(names, prefix):
    """The text before the backbone names: given, or the one ``p`` with ``p + "conv1.weight"``
    and ``p + "layer1.0.conv1.weight"`` both present ("" if none: the mismatch error then lists
    what is missing)."""
    if prefix is not None:
        return prefix
    stem = "conv1.weight"
    found = sorted(
        p
        for p in (n[: -len(stem)] for n in names if n.endswith(stem))
        if (p == "" or p.endswith(".")) and f"{p}layer1.0.{stem}" in names
    )
    if len(found) > 1:
        raise ValueError(f"the weights hold several ResNets, under the prefixes {found}: pass prefix=")
    return found[0] if found else ""


def load_backbone(
    model,
    weights: str | os.PathLike | Mapping[str, np.ndarray],
    *,
    prefix: str | None = None,
) -> LoadReport:
    """Fill every variable of a ResNet backbone from torchvision/timm weights, in place.

    Args:
      model: a :class:`~pcv.models.resnet.ResNet`, or a model with one as
        ``.backbone`` (e.g. :class:`~pcv.models.PCVNet`); real or abstract
        (``nnx.eval_shape``). Its norm must be ``"batch"`` or ``"frozen"``.
      weights: a file path (see :func:`load_state_dict`) or a dict of
        torch-layout arrays (convs OIHW).
      prefix: text before the backbone's names in ``weights`` (e.g.
        ``"backbone."``); default: found from where ``conv1.weight`` is.
        Names outside the prefix are ignored and reported.

    Every backbone variable gets exactly one tensor. Missing names, unexpected
    names (other than ``fc.*`` and ``*.num_batches_tracked``, which are ignored
    and reported), wrong shapes, non-float or non-finite values all raise one
    :class:`WeightMismatchError` listing them, and nothing is changed.

    Returns a :class:`LoadReport` (names loaded and ignored).
    """
    backbone = _backbone_of(model)
    source = str(weights) if isinstance(weights, (str, os.PathLike)) else "(state dict)"
    if any(isinstance(m, nnx.GroupNorm) for _, m in nnx.iter_graph(backbone)):
        raise ValueError(
            f"cannot load {source} into a backbone with GroupNorm: ImageNet BatchNorm weights and running "
            "statistics have no GroupNorm equivalent; use backbone_norm='frozen' (or 'batch')"
        )
    tensors = load_state_dict(weights) if isinstance(weights, (str, os.PathLike)) else strip_module_prefix(weights)
    prefix = _find_prefix(tensors, prefix)

    ignored, candidates = [], {}
    for name, value in tensors.items():
        if not name.startswith(prefix):
            ignored.append(name)
            continue
        short = name[len(prefix) :]
        if short.endswith(IGNORED_SUFFIXES) or short.startswith(IGNORED_MODULES):
            ignored.append(name)
        else:
            candidates[short] = value

    missing, mismatched, invalid, updates, loaded = [], [], [], [], []
    for path, var in nnx.to_flat_state(nnx.state(backbone)):
        key = torchvision_key(path)
        value = var.get_value()
        is_kernel = path[-1] == "kernel"
        # torch layout of the expected value: HWIO -> OIHW for convs
        expected = tuple(value.shape[i] for i in (3, 2, 0, 1)) if is_kernel else tuple(value.shape)
        if key not in candidates:
            missing.append((prefix + key, expected))
            continue
        src = np.asarray(candidates.pop(key))
        if src.shape != expected:
            mismatched.append((prefix + key, expected, src.shape))
            continue
        if not np.issubdtype(src.dtype, np.floating):
            invalid.append((prefix + key, f"dtype {src.dtype}, expected floating point"))
            continue
        if not np.isfinite(src).all():
            invalid.append((prefix + key, "has NaN or infinite values"))
            continue
        if path[-1] == "var" and (src < 0).any():
            invalid.append((prefix + key, "has negative running variances"))
            continue
        if is_kernel:
            src = src.transpose(2, 3, 1, 0)
        updates.append((path, var.replace(jnp.asarray(src, value.dtype))))
        loaded.append(prefix + key)
    unexpected = [(prefix + k, tuple(np.shape(v))) for k, v in sorted(candidates.items())]
    if missing or unexpected or mismatched or invalid:
        hint = ""
        if any(".conv1.0." in n or n.endswith("conv1.0.weight") for n, _ in unexpected):
            hint = "(a deep-stem ResNet such as timm's resnet50d? only the 7x7-stem resnet50/101 layout fits)"
        raise WeightMismatchError(source, missing, unexpected, mismatched, invalid, hint)
    nnx.update(backbone, nnx.from_flat_state(updates))
    report = LoadReport(source, prefix, tuple(loaded), tuple(sorted(ignored)))
    log.info("%s", report)
    return report
