"""Writing files whole or not at all, strict JSON, PNG bytes: on a local disk or ``gs://``.

:func:`write_atomic` writes to a temporary name and renames (locally) or
uploads one object (GCS, where an object appears only when its upload
completes), so a crash or a full disk never leaves a file that looks
complete. An OS error becomes a :class:`~pcv.errors.WorkdirError` naming
the file.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath
from PIL import Image

from pcv.errors import WorkdirError
from pcv.runtime.paths import is_cloud


def describe_os_error(e: OSError) -> str:
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)


def write_atomic(path: epath.Path, data: bytes | str) -> None:
    """Write ``path`` whole or not at all; an OS error (no space, no permission) raises :class:`WorkdirError`."""
    data = data.encode() if isinstance(data, str) else data
    path = epath.Path(path)
    try:
        if is_cloud(path):
            path.write_bytes(data)  # an object appears only once its upload completed
            return
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.remove(tmp)
    except OSError as e:
        raise WorkdirError(f"cannot write {path}: {describe_os_error(e)}") from e


def finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities replaced by None (strict JSON), numpy scalars as Python ones."""
    if isinstance(obj, Mapping):
        return {(str(k) if not isinstance(k, str) else k): finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON (no NaN) of ``obj``, ending in a newline."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False) + "\n"


def write_json(path: epath.Path, obj: Any, indent: int | None = 1) -> None:
    write_atomic(path, json_text(obj, indent))


def read_json(path: epath.Path, what: str = "file") -> Any:
    try:
        text = epath.Path(path).read_text()
    except FileNotFoundError:
        raise WorkdirError(f"{path} does not exist") from None
    except OSError as e:
        raise WorkdirError(f"cannot read {what} {path}: {describe_os_error(e)}") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise WorkdirError(f"{path} is not valid JSON ({e})") from None


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def encode_png(image) -> bytes:

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()
