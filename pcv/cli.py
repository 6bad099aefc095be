"""What every command shares: absl flags, ``--config`` with overrides, and one way of failing.

Each command (``python -m pcv.train``, ``evaluate``, ``predict``, ``export``,
``prepare``, ``pq``, ``pretrained``, ``bench``) is a short ``main`` that
defines its absl flags (spelled with underscores: ``--out_dir``,
``--gt_json``) on a fresh ``FlagValues`` (so commands can be called
repeatedly in one process, e.g. from tests) and hands it and a function to
:func:`run`, which

- parses the flags; ``--config=<name or path>[:variant]`` names a config
  (:mod:`pcv.configs`) and ``--config.<field>=<value>`` overrides any field
  (values are Python literals, or plain text for text fields);
- prints an expected failure (:class:`~pcv.errors.PcvError`, a bad flag,
  an OS error such as a missing file, no permission or a full disk) as one
  line ``error: ...`` and exits with code 1; ``--debug`` (or
  ``PCV_DEBUG=1``) shows the traceback as well. Anything else is a bug and
  keeps its traceback.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from absl import flags

from pcv import configs
from pcv.errors import ConfigError, PcvError, one_line

CONFIG_PREFIX = "--config."


def new_flags() -> flags.FlagValues:
    """A fresh set of flags for one command, with ``--debug``."""
    fv = flags.FlagValues()
    flags.DEFINE_bool("debug", False, "Show tracebacks of expected errors too (also PCV_DEBUG=1).", flag_values=fv)
    return fv


def define_config_flag(
    fv: flags.FlagValues, default: str | None = configs.DEFAULT, help_text: str | None = None
) -> None:
    flags.DEFINE_string(
        "config",
        default,
        help_text
        or "Config: a shipped name ("
        + ", ".join(configs.NAMES)
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


def apply_overrides(config, overrides: Sequence[tuple[str, str]]):
    """Set dotted fields of a ConfigDict from flag text (unknown fields are left to validation to name)."""
    from pcv.config import Config, dotted_parent, flat

    defaults = flat(Config())
    for name, text in overrides:
        node, last = dotted_parent(config, name)
        value = parse_value(text, defaults.get(name, node.get(last)))
        try:
            node[last] = value
        except TypeError:
            expected = type(node[last]).__name__
            raise ConfigError(f"config.{name}: expected {expected}, got {text!r}") from None
    return config


def inference_overrides(overrides: Sequence[tuple[str, str]], doing: str) -> dict:
    """``--config.inference.<field>=<value>`` pairs as ``{field: value}``; any other field is refused.

    For the commands that use a trained model (predict, export), where only
    the post-processing may change. ``doing``: e.g. ``"predicting"``.
    """
    from pcv.config import InferenceConfig

    defaults = dataclasses.asdict(InferenceConfig())
    values = {}
    for name, text in overrides:
        field = name.split(".", 1)[1] if name.startswith("inference.") else None
        if field not in defaults:
            raise ConfigError(f"config.{name}: only config.inference.* can change when {doing}")
        values[field] = parse_value(text, defaults[field])
    return values


def load_config(spec: str | None, overrides: Sequence[tuple[str, str]] = ()):
    """The ConfigDict of ``--config`` with the overrides applied."""
    config = configs.load(spec or configs.DEFAULT)
    return apply_overrides(config, overrides)


def quiet_libraries(debug: bool) -> None:
    """Keep the libraries' own logging out of a command's output (``--debug`` shows it).

    Orbax logs every save at INFO and, when a background save fails, an ERROR
    with a traceback from each of its threads before the failure reaches the
    trainer, which reports it as one line. Without ``--debug`` only warnings
    of pcv's own and that one line are printed.
    """
    import logging as py_logging
    import threading

    from absl import logging

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
    return isinstance(error, (PcvError, OSError, flags.Error)) or type(error).__name__ in (
        "PanopticDataError",
        "PQInputError",
        "CorruptFileError",
        "WeightMismatchError",
    )


def print_help(fv: flags.FlagValues, program: Callable, takes_config: bool) -> None:
    """The command's module docstring (its usage), then its flags."""
    module = sys.modules.get(getattr(program, "__module__", ""), None)
    doc = (getattr(module, "__doc__", None) or "").strip()
    if doc:
        print(doc, end="\n\n")
    print("flags:")
    print(fv.get_help(include_special_flags=False))
    if takes_config:
        print("\n  --config.<field>=<value>: override one config field (see pcv/config.py)")


def run(
    fv: flags.FlagValues,
    program: Callable[[list[str], list[tuple[str, str]]], int | None],
    argv: Sequence[str] | None = None,
    *,
    takes_config: bool = True,
) -> int:
    """Parse ``fv`` from ``argv``, call ``program(args, overrides)``, turn expected failures into one line.

    ``argv``: the arguments after the program name (default ``sys.argv[1:]``).
    ``args`` are the positional arguments (``args[0]`` the program name),
    ``overrides`` the ``--config.<field>=<value>`` pairs. Returns the exit
    code (the caller passes it to ``sys.exit``).
    """
    argv = list(sys.argv) if argv is None else ["pcv", *argv]
    debug = os.environ.get("PCV_DEBUG", "") not in ("", "0")
    if any(a in ("-h", "--help", "--helpshort", "--helpfull") for a in argv[1:]):
        print_help(fv, program, takes_config)
        return 0
    try:
        if takes_config:
            argv, overrides = split_overrides(argv)
        else:
            overrides = []
        args = fv(argv)
        debug = debug or fv.debug
        quiet_libraries(debug)
        code = program(args, overrides)
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
