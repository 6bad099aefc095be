"""Writing a trained model as a self-contained bundle (``python -m pcv.export``'s library part).

The bundle (:mod:`pcv.inference.bundle`: ``bundle.json``,
``weights.safetensors``, ``forward.jax_export``, ``postprocess.jax_export``,
``pcv_portable.py``) holds the weights, the label space, the input geometry
and post-processing settings (the work dir's calibrated ones when it has
them), and the whole image -> panoptic computation serialised with
:mod:`jax.export` (StableHLO). Whoever receives it runs it with jax, numpy
and Pillow::

    model = pcv.load_exported("model_dir")    # or pcv_portable.load_exported without pcv
    result = model(image)                     # uint8 [H, W, 3], any size -> ids, segments_info

Input sizes: fixed, not symbolic. The network is exported for the one
padded shape the work dir evaluates at (``(1, Hp, Wp, 3)``), exactly as the
:class:`pcv.Predictor` compiles it: every image is resized (bilinear) and
padded to that shape on the host and the answer is mapped back to the
image's size. A symbolic height and width would give other images other
rescalings than the Predictor's, hence other answers, and the
post-processing's static shapes (instance slots, connected-component
iterations) are chosen for the fixed map. One shape also means one
compilation when the bundle is loaded.

Platforms: ``cpu`` always; ``cuda`` and ``tpu`` too by default. Lowering
for an accelerator does not need one; a platform whose lowering fails on
this machine is left out and named.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from safetensors.numpy import save_file

from pcv import __version__
from pcv.config import OUTPUT_STRIDE
from pcv.data import resize
from pcv.data.batching import PAD_COLOR
from pcv.errors import ConfigError, ExportError
from pcv.inference import bundle, segments
from pcv.inference.predictor import Predictor, forward_body, post_body
from pcv.models.build import named_leaves

PLATFORMS = ("cpu", "cuda", "tpu")

#: The modules that make up a bundle's own loader, ``pcv_portable.py``, in order.
LOADER_MODULES = (resize, segments, bundle)
#: Marks the lines of those modules that import one another: in the one-file loader they are left out.
INLINED = "# portable: inlined"


def loader_source() -> str:
    """The text of ``pcv_portable.py``: the loader's modules as one file that needs nothing of pcv.

    The bundle's loader is :mod:`pcv.inference.bundle` with the host-side code
    it uses (:mod:`pcv.data.resize`, :mod:`pcv.inference.segments`) pasted in
    front, so that a bundle runs with jax, numpy and Pillow alone and pcv keeps
    one copy of each function. Each module's docstring and ``from __future__``
    line are dropped (the file has one of each, the loader's own), as are the
    imports marked ``# portable: inlined``.
    """
    parts = []
    for module in LOADER_MODULES:
        text = Path(module.__file__).read_text()
        tree = ast.parse(text)
        lines = text.splitlines(keepends=True)
        drop = set()
        for node in tree.body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]:
                drop.update(range(node.lineno - 1, node.end_lineno))
            elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
                drop.update(range(node.lineno - 1, node.end_lineno))
        kept = [line for i, line in enumerate(lines) if i not in drop and not line.rstrip().endswith(INLINED)]
        parts.append(f"# --- {module.__name__} ---\n" + "".join(kept).strip("\n") + "\n")
    doc = ast.get_docstring(ast.parse(Path(bundle.__file__).read_text()))
    return f'"""{doc}\n"""\n\nfrom __future__ import annotations\n\n' + "\n\n".join(parts)


def _export(fn, args, platforms: Sequence[str], log) -> jax.export.Exported:
    """``jax.export`` for as many of ``platforms`` as lower here (cpu must)."""
    try:
        return jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*args)
    except Exception as first:  # noqa: BLE001  (a lowering rule missing for one platform: try each)
        if len(platforms) == 1:
            raise ExportError(f"cannot export for {platforms[0]}: {type(first).__name__}: {first}") from first
    kept = []
    for platform in platforms:
        try:
            jax.export.export(jax.jit(fn), platforms=(platform,))(*args)
            kept.append(platform)
        except Exception as e:  # noqa: BLE001
            log(f"not exported for {platform}: {type(e).__name__}: {str(e).splitlines()[0]}")
    if "cpu" not in kept:
        raise ExportError("cannot export for cpu")
    return jax.export.export(jax.jit(fn), platforms=tuple(kept))(*args)


def export_bundle(predictor: Predictor, out_dir, *, config=None, platforms=PLATFORMS, overwrite=False, log=print):
    """Write ``predictor`` as a bundle into ``out_dir`` (module docstring); returns the manifest.

    ``config``: the run's :class:`pcv.config.Config`, kept in the manifest
    (provenance, and what ``--config.init_from`` reads). ``out_dir`` must
    not hold a bundle already unless ``overwrite``.
    """
    out = Path(out_dir)
    if (out / bundle.MANIFEST).exists() and not overwrite:
        raise ExportError(f"{out} already holds an exported model; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder")
    if "cpu" not in platforms:
        raise ConfigError(f"--platforms={','.join(platforms)}: cpu must be one of them")
    names, arrays, treedef = named_leaves(predictor.model_state)
    hp, wp = predictor.geometry.pad_shape
    image_spec = jax.ShapeDtypeStruct((1, hp, wp, 3), np.uint8)
    weight_specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]
    forward = forward_body(predictor.graphdef, predictor.grid, predictor.flip)
    thing_mask = tuple(bool(t) for t in predictor.label_space.thing_mask)
    post = post_body(predictor.grid, thing_mask, predictor.inference)

    def network(weights, images):
        return forward(jax.tree_util.tree_unflatten(treedef, weights), images)

    def postprocess(semantic, votes):
        return post(semantic, votes, (hp, wp))

    logits = jax.eval_shape(network, weight_specs, image_spec)
    exported_net = _export(network, (weight_specs, image_spec), platforms, log)
    exported_post = _export(postprocess, (logits["semantic"], logits["votes"]), exported_net.platforms, log)

    labels = predictor.label_space
    geometry = predictor.geometry
    manifest = {
        "format": bundle.FORMAT,
        "version": bundle.FORMAT_VERSION,
        "pcv_version": __version__,
        "jax_version": jax.__version__,
        "step": predictor.step,
        "platforms": list(exported_net.platforms),
        "input": {"shape": [1, hp, wp, 3], "dtype": "uint8", "sizes": "fixed"},
        "geometry": {
            "short_side": geometry.short_side,
            "max_size": geometry.max_size,
            "pad_shape": list(geometry.pad_shape),
            "fit_size": list(geometry.fit_size),
            "pad_color": [int(c) for c in PAD_COLOR],
            "output_stride": OUTPUT_STRIDE,
        },
        "labels": {
            "categories": [dict(c) for c in labels.categories],
            "category_ids": list(labels.category_ids),
            "thing_mask": [bool(t) for t in labels.thing_mask],
            "names": list(labels.names),
        },
        "inference": dataclasses.asdict(predictor.inference),
        "flip": predictor.flip,
        "grid": [list(level) for level in predictor.grid.spec],
        "weights": names,
        "config": config.to_dict() if config is not None else None,
    }
    # Everything is written into a fresh folder next to the target, which then replaces it whole.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        host = jax.device_get(arrays)
        save_file({n: np.ascontiguousarray(a) for n, a in zip(names, host)}, str(staging / bundle.WEIGHTS))
        (staging / bundle.FORWARD).write_bytes(exported_net.serialize())
        (staging / bundle.POSTPROCESS).write_bytes(exported_post.serialize())
        (staging / bundle.LOADER).write_text(loader_source())
        manifest["files"] = {
            name: bundle.sha256(staging / name) for name in (bundle.WEIGHTS, bundle.FORWARD, bundle.POSTPROCESS)
        }
        (staging / bundle.MANIFEST).write_text(json.dumps(manifest, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        for f in staging.iterdir():  # mkdtemp's and safetensors' private modes -> the usual ones
            f.chmod(0o666 & ~umask)
        staging.chmod(0o777 & ~umask)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
