"""The shipped configs: files with ``get_config(arg)`` returning a :class:`pcv.config.Config`, inside the package.

They travel with every install (a wheel runs ``python -m pcv.train`` with no
checkout); in a checkout ``configs/`` at the top level is this folder. A
config is named by a shipped name or a file path, each with an optional
``:variant`` (:func:`pcv.config.load`)::

    python -m pcv.train --config=coco_r50 ...                # a shipped config
    python -m pcv.train --config=configs/coco_r50.py:smoke   # the same file, by path
    python -m pcv.train --config=~/my_config.py              # your own file

Each sets only what differs from the defaults (``override(Config(), {...})``).
Every shipped config has a ``smoke`` variant (:func:`pcv.config.smoke`) that
shrinks it so the same code path runs in seconds on a CPU. Fields, defaults
and their meaning: :mod:`pcv.config`.
"""
