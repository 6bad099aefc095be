"""The errors pcv raises for expected failures: bad input, config, files or work dirs.

Every command prints an expected failure as one line, ``error: <message>``,
and exits with code 1 (:mod:`pcv.cli`); anything else is a bug and keeps its
traceback. So a message names the file, field or value at fault and what was
expected. The classes that describe bad *values* also derive from
``ValueError``, so library callers that catch ``ValueError`` keep working.
"""

from __future__ import annotations


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
