"""Start a run from a trained model: ``--config.init_from=<work dir or exported bundle>[:step]``.

    python -m pcv.train --config=custom:<prepared dir> --workdir=runs/mine \\
        --config.init_from=workdir/coco_r50            # newest checkpoint of a run
    ... --config.init_from=gs://bucket/run:20000       # a given step
    ... --config.init_from=exported/model_dir          # a bundle of python -m pcv.export

What is copied, variable by variable (names as in :func:`pcv.models.build.named_leaves`):

- every variable whose name and shape are the same in both models: the
  backbone, FPN and fusion layers, BatchNorm statistics, and the vote head
  when the grids are the same;
- the semantic head class by class: a class of the new label space takes
  the weights of the source class *of the same name*; classes without one
  keep their fresh initialisation. Same shape alone is never enough here:
  two label spaces of 7 classes need not be the same 7;
- anything else (another backbone width, another grid's vote head) keeps
  its fresh initialisation.

The optimizer starts fresh and the run counts its steps from 0. The
trainer prints what was copied, mapped and re-initialised. ``init_from`` is
read only when the work dir has no checkpoint: a restarted run resumes from
its own.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from pcv.errors import ConfigError
from pcv.inference import bundle
from pcv.inference.predictor import restore_model
from pcv.models.build import named_leaves
from pcv.runtime.paths import as_path
from pcv.runtime.workdir import CONFIG, Workdir

#: The semantic head's variables: their last axis is the class.
SEMANTIC_HEAD = "params.semantic_head."


@dataclasses.dataclass
class Source:
    """A trained model's variables by name, and its class names (train-id order)."""

    description: str
    step: int | None
    weights: dict[str, np.ndarray]
    class_names: tuple[str, ...]


def parse(spec: str) -> tuple[str, int | None]:
    """``"path[:step]"`` -> ``(path, step)``; a ``gs://`` scheme's colon is not a step."""
    match = re.fullmatch(r"(.+):(\d+)", spec)
    if match:
        return match.group(1), int(match.group(2))
    return spec, None


def read_source(spec: str) -> Source:
    """The model ``init_from`` names: a bundle folder (``bundle.json``) or a trained work dir."""
    path_text, step = parse(spec)
    path = as_path(path_text)
    if (path / bundle.MANIFEST).exists():
        if str(path).startswith("gs://"):
            raise ConfigError(f"init_from={spec}: exported models are read from a local folder")
        manifest, weights = bundle.read_weights(Path(str(path)))
        if step is not None and step != manifest.get("step"):
            raise ConfigError(f"init_from={spec}: the bundle holds step {manifest.get('step')}, not {step}")
        names = tuple(manifest["labels"]["names"])
        return Source(f"exported model {path}", manifest.get("step"), weights, names)
    wd = Workdir(path)
    if not wd.has_config():
        raise ConfigError(
            f"init_from={spec}: {path} is neither a trained work dir ({CONFIG}) nor an exported model "
            f"({bundle.MANIFEST})"
        )

    _, labels, _, step, model_state = restore_model(wd, step)
    names, leaves, _ = named_leaves(jax.device_get(model_state))
    return Source(f"work dir {path}", step, dict(zip(names, map(np.asarray, leaves))), tuple(labels.names))


@dataclasses.dataclass
class Transfer:
    """What :func:`transfer` did."""

    copied: list[str]
    reinitialised: list[tuple[str, str]]  # (name, why)
    mapped: list[tuple[str, str]]  # (class name in the new label space, the same in the source)
    unmatched_classes: list[str]
    unused: list[str]  # source variables nothing took

    def lines(self, source: Source, num_classes: int) -> list[str]:
        total = len(self.copied) + len(self.reinitialised)
        step = f" step {source.step}" if source.step is not None else ""
        out = [f"init_from {source.description}{step}: copied {len(self.copied)} of {total} variables"]
        mapped = len(self.mapped)
        dropped = [n for n in source.class_names if n not in {b for _, b in self.mapped}]
        if mapped == num_classes and not dropped and [a for a, _ in self.mapped] == list(source.class_names):
            out.append(f"  semantic head: all {num_classes} classes, the same names")
        else:
            names = ", ".join(a for a, _ in self.mapped[:8]) + (" ..." if mapped > 8 else "")
            line = f"  semantic head: {mapped} of {num_classes} classes mapped by name" + (
                f" ({names})" if mapped else ""
            )
            line += f", {len(self.unmatched_classes)} re-initialised"
            if dropped:
                shown = ", ".join(dropped[:5]) + (" ..." if len(dropped) > 5 else "")
                line += f"; the source's {shown} not in this label space"
            out.append(line)
        for name, why in self.reinitialised:
            out.append(f"  re-initialised {name}: {why}")
        if self.unused:
            out.append(f"  not used from the source: {len(self.unused)} variable(s), e.g. {self.unused[0]}")
        return out


def transfer(model_state, source: Source, class_names: Sequence[str]) -> tuple[dict, Transfer]:
    """``model_state`` (a fresh one) with the source's variables copied in (module docstring).

    Returns the new state (numpy leaves, same structure) and the :class:`Transfer` record.
    """
    names, leaves, treedef = named_leaves(jax.device_get(model_state))
    source_index = {n: i for i, n in enumerate(source.class_names)}
    rows = [(t, source_index[n]) for t, n in enumerate(class_names) if n in source_index]
    record = Transfer(
        copied=[],
        reinitialised=[],
        mapped=[(class_names[t], source.class_names[s]) for t, s in rows],
        unmatched_classes=[n for n in class_names if n not in source_index],
        unused=[],
    )
    out, used = [], set()
    for name, leaf in zip(names, leaves):
        leaf = np.asarray(leaf)
        theirs = source.weights.get(name)
        if theirs is None:
            record.reinitialised.append((name, "not in the source"))
            out.append(leaf)
            continue
        used.add(name)
        if name.startswith(SEMANTIC_HEAD):
            if theirs.shape[:-1] != leaf.shape[:-1]:
                record.reinitialised.append((name, f"shape {theirs.shape} in the source, {leaf.shape} here"))
                out.append(leaf)
                continue
            new = leaf.copy()
            for t, s in rows:
                new[..., t] = theirs[..., s]
            if rows:
                record.copied.append(name)
            else:
                record.reinitialised.append((name, "no class of the same name in the source"))
            out.append(new)
            continue
        if theirs.shape != leaf.shape:
            record.reinitialised.append((name, f"shape {theirs.shape} in the source, {leaf.shape} here"))
            out.append(leaf)
            continue
        record.copied.append(name)
        out.append(theirs.astype(leaf.dtype))
    record.unused = sorted(set(source.weights) - used)
    return jax.tree_util.tree_unflatten(treedef, out), record
