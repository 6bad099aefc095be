"""The errors pcv raises for expected failures: bad input, config, files or work dirs.

Every command prints an expected failure as one line, ``error: <message>``,
and exits with code 1 (:mod:`pcv.cli`); anything else is a bug and keeps its
traceback. So a message names the file, field or value at fault and what was
expected. The classes that describe bad *values* also derive from
``ValueError``, so library callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations

import re


class PcvError(Exception):
    """An expected failure; its message is complete on one line."""


class ConfigError(PcvError, ValueError):
    """A config field has a bad value, does not exist, or conflicts with the work dir."""


class DataError(PcvError, ValueError):
    """Bad dataset files or examples; the message names the file and, where there is one, the segment."""


class WorkdirError(PcvError):
    """The work dir cannot be used: locked by another run, not writable, damaged, incomplete."""


class CheckpointError(WorkdirError):
    """A checkpoint is missing or cannot be restored (the message names its step and path)."""


class ExportError(PcvError, ValueError):
    """An exported model bundle is incomplete or does not match its manifest."""


class DivergedError(PcvError, FloatingPointError):
    """Training produced a non-finite loss; the message names the step and the last good checkpoint."""


class MissingDependency(PcvError, ImportError):
    """An optional package is needed for this input (the message says which and how to install it)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``error`` as one line: what a command prints after ``error:``, and a cause quoted inside pcv's own messages.

    - An OS error that names a file: ``<file>: <reason>`` (also when
      TensorStore reports it inside its own message).
    - pcv's errors, other OS errors and bad flags (complete messages): the
      message, whitespace collapsed.
    - Anything else, a library's error that may run over many lines and carry
      a whole TensorStore spec: ``<type>: <first line>``, the spec left out,
      cut at ``limit`` characters.
    """
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    text = str(error).strip()
    if not text:
        return type(error).__name__
    if isinstance(error, (PcvError, OSError)) or type(error).__module__.startswith("absl.flags"):
        return " ".join(text.split())
    text = text.splitlines()[0]
    if "[tensorstore_spec=" in text:
        text = text.split("[tensorstore_spec=")[0].strip()
    found = re.search(r'"([^"]+)": (?:[^"\[]*: )?([^:"\[]+?) \[os_error_code', text)
    if found:
        return f"{found.group(1)}: {found.group(2)}"
    text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
