"""What every command shares: absl flags, ``--config`` with overrides, and one way of failing.

Each command (``python -m pcv.train``, ``evaluate``, ``predict``, ``export``,
``prepare``, ``pq``, ``pretrained``, ``bench``) is a short ``main`` that
defines its absl flags (spelled with underscores: ``--out_dir``,
``--gt_json``) on a fresh ``FlagValues`` (so commands can be called
repeatedly in one process, e.g. from tests) and hands it and a function to
:func:`run`, which

- parses the flags; ``--config=<name or path>[:variant]`` names a config
  (:func:`pcv.config.load`); ``--config.<field>=<value>`` changes a field
  (values are Python literals, or plain text for text fields). Each command
  declares which fields it lets the user change (``run(..., overrides=...)``:
  train every one, evaluate the data and post-processing settings, predict
  and export the post-processing and evaluation geometry); the names are
  checked against the schema and that list before anything runs, and the
  command gets the values, typed, to apply once with
  :func:`pcv.config.override`;
- prints an expected failure (:class:`~pcv.errors.PcvError`, a bad flag,
  an OS error such as a missing file, no permission or a full disk) as one
  line ``error: ...`` and exits with code 1; ``--debug`` (or
  ``PCV_DEBUG=1``) shows the traceback as well. Anything else is a bug and
  keeps its traceback.
"""

from __future__ import annotations

import ast
import fnmatch
import logging as py_logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence

from absl import flags, logging

from pcv import config as config_lib
from pcv.errors import ConfigError, PcvError, one_line

CONFIG_PREFIX = "--config."
#: ``run(..., overrides=EVERY_FIELD)``: the command lets the user change any field (train).
EVERY_FIELD = ("*",)
#: What a command that uses a trained model may change: the post-processing and the evaluation geometry.
MODEL_SETTINGS = ("inference.*", "data.image_size", "data.eval_short_side", "data.eval_max_size", "data.eval_pad_shape")


def new_flags() -> flags.FlagValues:
    """A fresh set of flags for one command, with ``--debug``."""
    fv = flags.FlagValues()
    flags.DEFINE_bool("debug", False, "Show tracebacks of expected errors too (also PCV_DEBUG=1).", flag_values=fv)
    return fv


def define_config_flag(
    fv: flags.FlagValues, default: str | None = config_lib.DEFAULT, help_text: str | None = None
) -> None:
    flags.DEFINE_string(
        "config",
        default,
        help_text
        or "Config: a shipped name ("
        + ", ".join(config_lib.SHIPPED)
        + ") or a file path, with an optional "
        ":variant (e.g. synthetic:smoke). Override fields with --config.<field>=<value>.",
        flag_values=fv,
    )


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``argv`` without the ``--config.<field>=<value>`` arguments, and those as ``(field, text)``."""
    rest, overrides = [], []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(CONFIG_PREFIX):
            name, sep, value = arg[len(CONFIG_PREFIX) :].partition("=")
            if not sep:
                if i + 1 >= len(args):
                    raise ConfigError(f"{arg}: needs a value (--config.{name}=VALUE)")
                value, i = args[i + 1], i + 1
            overrides.append((name, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def parse_value(text: str, default) -> object:
    """A flag's text as the type of the field's default: plain text for text fields, else a Python literal."""
    if isinstance(default, str):
        return os.path.expanduser(text) if text.startswith("~") else text
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        return text
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(pairs: Sequence[tuple[str, str]], allowed: Sequence[str]) -> dict[str, object]:
    """``--config.<field>=<text>`` pairs -> ``{field: value}`` in the field's type, for :func:`pcv.config.override`.

    ``allowed``: the fields the command lets the user change, as patterns
    (``"inference.*"``, ``"steps"``; :data:`EVERY_FIELD`). An unknown field
    (with a suggestion) or one the command does not change raises
    :class:`~pcv.errors.ConfigError` naming it.
    """
    defaults = config_lib.flat(config_lib.Config())
    values = {}
    for name, text in pairs:
        config_lib.check_field(name)
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in allowed):
            raise ConfigError(f"config.{name}: cannot change here; this command changes only {', '.join(allowed)}")
        values[name] = parse_value(text, defaults[name])
    return values


def quiet_libraries(debug: bool) -> None:
    """Keep the libraries' own logging out of a command's output (``--debug`` shows it).

    Orbax logs every save at INFO and, when a background save fails, an ERROR
    with a traceback from each of its threads before the failure reaches the
    trainer, which reports it as one line. Without ``--debug`` only warnings
    of pcv's own and that one line are printed.
    """
    logging.set_verbosity(logging.WARNING)
    if debug:
        return
    for name in ("absl", "asyncio"):
        py_logging.getLogger(name).setLevel(py_logging.CRITICAL)

    # When a background save fails, callbacks of its other writes still try to
    # reach the save's closed event loop; each would print a traceback of
    # "Event loop is closed", which is a consequence, not news.
    def stale_loop(error) -> bool:
        return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)

    thread_hook, except_hook, unraisable_hook = threading.excepthook, sys.excepthook, sys.unraisablehook
    threading.excepthook = lambda a: None if stale_loop(a.exc_value) else thread_hook(a)
    sys.excepthook = lambda t, v, tb: None if stale_loop(v) else except_hook(t, v, tb)
    sys.unraisablehook = lambda a: None if stale_loop(a.exc_value) else unraisable_hook(a)


def expected(error: BaseException) -> bool:
    """Whether ``error`` is an expected failure (module docstring) rather than a bug."""
    return isinstance(error, (PcvError, OSError, flags.Error))


def print_help(fv: flags.FlagValues, program: Callable, overrides: Sequence[str] | None) -> None:
    """The command's module docstring (its usage), then its flags."""
    module = sys.modules.get(getattr(program, "__module__", ""), None)
    doc = (getattr(module, "__doc__", None) or "").strip()
    if doc:
        print(doc, end="\n\n")
    print("flags:")
    print(fv.get_help(include_special_flags=False))
    if overrides is not None:
        which = "any field" if tuple(overrides) == EVERY_FIELD else ", ".join(overrides)
        print(f"\n  --config.<field>=<value>: change a config field ({which}; see pcv/config.py)")


def run(
    fv: flags.FlagValues,
    program: Callable[[list[str], dict[str, object]], int | None],
    argv: Sequence[str] | None = None,
    *,
    overrides: Sequence[str] | None = None,
) -> int:
    """Parse ``fv`` from ``argv``, call ``program(args, overrides)``, turn expected failures into one line.

    ``argv``: the arguments after the program name (default ``sys.argv[1:]``).
    ``args`` are the positional arguments (``args[0]`` the program name).
    ``overrides``: the config fields the command lets the user change
    (patterns, :func:`parse_overrides`), or None when it takes no
    ``--config.*`` flags; ``program`` gets them as ``{field: value}``.
    Returns the exit code (the caller passes it to ``sys.exit``).
    """
    argv = list(sys.argv) if argv is None else ["pcv", *argv]
    debug = os.environ.get("PCV_DEBUG", "") not in ("", "0")
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print_help(fv, program, overrides)
        return 0
    try:
        pairs = []
        if overrides is not None:
            argv, pairs = split_overrides(argv)
        args = fv(argv)
        debug = debug or fv.debug
        quiet_libraries(debug)
        values = parse_overrides(pairs, overrides) if overrides is not None else {}
        code = program(args, values)
        return int(code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        if not expected(e):
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 1
