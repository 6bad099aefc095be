r"""ImageNet-pretrained ResNet weights from torchvision / timm files into the Flax backbone.

::

    from pcv.models import PCVNet
    from pcv.models.pretrained import load_backbone
    model = PCVNet(133, grid.num_bins, backbone="resnet50", backbone_norm="frozen",
                   pretrained="resnet50.safetensors")        # loads at initialisation
    report = load_backbone(model, "resnet50-11ad3fa6.pth")    # or later, by hand
    print(report)  # ...: 265 tensors loaded, 55 ignored (fc.* classifier, num_batches_tracked)

    python -m pcv.models.pretrained convert resnet50-11ad3fa6.pth resnet50.safetensors  # needs torch
    python -m pcv.models.pretrained check resnet50.safetensors --backbone resnet50

Files
-----
* **safetensors** (timm's ``model.safetensors`` on the Hugging Face hub, or a
  file made by ``convert``): read with numpy alone, see :func:`read_safetensors`.
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

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from pcv.models.resnet import BACKBONES, ResNet, build_backbone, torchvision_key

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------
# safetensors, in numpy.
# ----------------------------------------------------------------------------

#: safetensors dtype code -> numpy dtype of the stored little-endian bytes.
#: ``BF16`` is stored as raw 16-bit words and widened to float32 on reading.
SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NUMPY_TO_SAFETENSORS = {v.newbyteorder("="): k for k, v in SAFETENSORS_DTYPES.items() if k != "BF16"}
_MAX_HEADER = 100 * 2**20  # the format's own limit on the JSON header (100 MB)


class CorruptFileError(ValueError):
    """A weight file that is truncated or not in the format its name promises."""


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32: they are float32's upper 16 bits."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file, as numpy arrays (BF16 widened to float32).

    Format: 8 bytes little-endian ``N``; ``N`` bytes of JSON
    ``{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}``
    (plus an optional ``"__metadata__"`` of strings); then the data buffer, in
    which every tensor is ``[begin, end)``, C order, little-endian, and the
    tensors cover the buffer exactly. Raises :class:`CorruptFileError`, naming
    the file (and tensor), for a truncated file or an inconsistent header.
    """
    path = Path(path)
    raw = bytearray(path.stat().st_size)  # one buffer, read into; the arrays view it (and are writable)
    with open(path, "rb") as f:
        got = f.readinto(raw)
    del raw[got:]  # (only if the file shrank meanwhile)

    def bad(msg):
        return CorruptFileError(f"{path}: not a valid safetensors file: {msg}")

    if len(raw) < 8:
        raise bad(f"{len(raw)} bytes, shorter than the 8-byte header length (truncated?)")
    n = int.from_bytes(raw[:8], "little")
    if n > _MAX_HEADER:
        raise bad(f"header length {n} is over the format's limit of {_MAX_HEADER} bytes")
    if 8 + n > len(raw):
        raise bad(f"header of {n} bytes does not fit in the {len(raw)}-byte file (truncated?)")
    try:
        header = json.loads(bytes(raw[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, expected an object")
    buffer = memoryview(raw)[8 + n :]

    tensors, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and {"dtype", "shape", "data_offsets"} <= info.keys()):
            raise bad(f"tensor {name!r}: header entry {info!r} lacks dtype/shape/data_offsets")
        code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if code not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {name!r}: dtype {code!r} is not one of {sorted(SAFETENSORS_DTYPES)}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise bad(f"tensor {name!r}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise bad(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
        begin, end = offsets
        dtype = SAFETENSORS_DTYPES[code]
        size = math.prod(shape) * dtype.itemsize
        if not 0 <= begin <= end or end - begin != size:
            raise bad(f"tensor {name!r}: data_offsets {offsets} hold {end - begin} bytes, {code}{shape} needs {size}")
        if end > len(buffer):
            raise bad(
                f"tensor {name!r} ends at byte {end} of the data, which has only {len(buffer)} bytes (truncated?)"
            )
        array = np.frombuffer(buffer, dtype, math.prod(shape), begin).reshape(shape)
        tensors[name] = bf16_to_float32(array) if code == "BF16" else array.astype(dtype.newbyteorder("="), copy=False)
        spans.append((begin, end, name))

    # The format has the tensors tile the buffer: a gap or an overlap means a
    # damaged header, and bytes past the last tensor a damaged file.
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise bad(f"tensor {name!r} starts at byte {begin} of the data, expected {position} (gap or overlap)")
        position = end
    if position != len(buffer):
        raise bad(f"{len(buffer) - position} bytes after the last tensor")
    return tensors


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``__metadata__`` strings of a safetensors file ({} if none)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return dict(json.loads(f.read(n)).get("__metadata__", {}))


def write_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (name -> array) as a safetensors file, in name order.

    Any dtype of :data:`SAFETENSORS_DTYPES` (numpy, or ``ml_dtypes.bfloat16``
    = ``jnp.bfloat16`` for BF16). The JSON header is padded with spaces to a
    multiple of 8 bytes so that 8-byte tensors are aligned in the file.
    """
    header: dict = {}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError(f"safetensors metadata must map str to str, got {dict(metadata)!r}")
        header["__metadata__"] = dict(metadata)
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        if array.dtype.name == "bfloat16":
            code, data = "BF16", array.view(np.uint16).astype("<u2")
        elif array.dtype in _NUMPY_TO_SAFETENSORS:
            code = _NUMPY_TO_SAFETENSORS[array.dtype]
            data = array.astype(SAFETENSORS_DTYPES[code])
        else:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} has no safetensors code")
        data = np.ascontiguousarray(data).tobytes()
        header[name] = {"dtype": code, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for chunk in chunks:
            f.write(chunk)


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
        raise ImportError(
            f"reading the PyTorch file {path} needs torch, which pcv does not install: "
            "`pip install torch`, or convert it elsewhere with "
            "`python -m pcv.models.pretrained convert IN.pth OUT.safetensors` and load the .safetensors file"
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
        f"{path}: unknown weight file type; expected .safetensors or a PyTorch file "
        f"({', '.join(_TORCH_SUFFIXES)})"
    )


# ----------------------------------------------------------------------------
# Into the backbone.
# ----------------------------------------------------------------------------

#: Source names that have no counterpart in the backbone, skipped and reported.
IGNORED_SUFFIXES = (".num_batches_tracked",)
IGNORED_MODULES = ("fc.",)  # the ImageNet classifier


class WeightMismatchError(ValueError):
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


# ----------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------


def _convert(args) -> int:
    if Path(args.output).suffix.lower() != ".safetensors":
        raise ValueError(f"output {args.output} should end in .safetensors")
    tensors = load_state_dict(args.input)
    write_safetensors(args.output, tensors, {"format": "pt", "source": Path(args.input).name})
    print(f"wrote {len(tensors)} tensors to {args.output}")
    return 0


def _check(args) -> int:
    # Abstract: no random init to compute, the load fills every variable.
    backbone = nnx.eval_shape(lambda: build_backbone(args.backbone, norm=args.norm, rngs=nnx.Rngs(0)))
    report = load_backbone(backbone, args.file, prefix=args.prefix)
    print(report)
    if args.verbose:
        print("ignored:", *report.ignored, sep="\n  ")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pcv.models.pretrained", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="PyTorch state dict (.pth) -> .safetensors (needs torch)")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(run=_convert)
    p = sub.add_parser("check", help="load a weight file into a backbone and print what was loaded")
    p.add_argument("file")
    p.add_argument("--backbone", default="resnet50", choices=sorted(BACKBONES))
    p.add_argument("--norm", default="frozen", choices=("batch", "frozen"))
    p.add_argument("--prefix", default=None, help="text before the backbone names (default: found)")
    p.add_argument("-v", "--verbose", action="store_true", help="list the ignored names")
    p.set_defaults(run=_check)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ImportError, ValueError) as e:  # bad file or weights: the message says which
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
