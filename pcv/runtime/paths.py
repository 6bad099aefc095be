"""Paths of work dirs and outputs: a local folder or ``gs://bucket/path``, nothing else.

Both go through ``etils.epath`` (gcsfs for files, tensorstore for checkpoint
arrays); other URL schemes are refused rather than taken for a local folder.
"""

from __future__ import annotations

import os

from etils import epath

from pcv.errors import WorkdirError

SCHEMES = ("gs",)


def as_path(path: str | os.PathLike) -> epath.Path:
    """A local folder (absolute, ``~`` expanded) or a ``gs://`` URL; other URLs raise :class:`WorkdirError`."""
    text = os.fspath(path) if not isinstance(path, str) else path
    if "://" in text:
        scheme = text.split("://", 1)[0]
        if scheme not in SCHEMES:
            raise WorkdirError(
                f"{text}: {scheme}:// is not supported; use a local path or gs://bucket/path "
                "(on other clouds, mount the bucket and give its local path)"
            )
        return epath.Path(text)
    if text.startswith("gs:/"):  # "gs:/bucket" after a shell or os.path.join ate a slash
        raise WorkdirError(f"{text}: did you mean gs://{text[4:].lstrip('/')}?")
    return epath.Path(os.path.abspath(os.path.expanduser(text)))


def is_cloud(path) -> bool:
    return os.fspath(path).startswith("gs://")
