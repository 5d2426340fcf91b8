"""Which implementation of the compiled modules runs: compiled or pure Python.

One source, two builds: `setup.py` compiles the modules named in `COMPILED`
with mypyc when it can (a C compiler and mypy at build time), and the same
`.py` files stay in the package as the pure-Python reference. Python's import
system prefers an extension module to the `.py` next to it; with
`AIOLUASOCK_NO_EXTENSIONS` set (to anything but ``""`` or ``"0"``) when
`aioluasock` is first imported, the `.py` files are loaded instead, so one
install can run both implementations.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Final

__all__ = ["COMPILED", "IMPLEMENTATION", "NO_EXTENSIONS_ENV", "load_pure"]

COMPILED: Final = ("_buffer",)
"""The modules of the package that `setup.py` compiles (names inside `aioluasock`)."""
NO_EXTENSIONS_ENV: Final = "AIOLUASOCK_NO_EXTENSIONS"
"""The environment variable that forces the pure modules, at build and at import time."""


def load_pure(name: str, module_name: str | None = None) -> object:
    """Execute the pure-Python source of compiled module `name` as a new module.

    Args:
        name: a module of `COMPILED`.
        module_name: the name it is registered under in `sys.modules`;
            defaults to its own (``aioluasock.<name>``), which makes every
            later import of it get the pure module.

    Returns:
        The module.
    """
    full_name = module_name or f"{__package__}.{name}"
    spec = importlib.util.spec_from_file_location(full_name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[full_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[full_name]
        raise
    return module


def _is_compiled(name: str) -> bool:
    module = importlib.import_module(f"{__package__}.{name}")
    return not str(getattr(module, "__file__", "")).endswith(".py")


if os.environ.get(NO_EXTENSIONS_ENV, "") not in ("", "0"):
    for _name in COMPILED:
        if f"{__package__}.{_name}" not in sys.modules:
            load_pure(_name)

IMPLEMENTATION: Final = "compiled" if all(_is_compiled(name) for name in COMPILED) else "pure"
"""``"compiled"`` when the mypyc-built modules run, ``"pure"`` when their
`.py` sources do (no extension built, or `AIOLUASOCK_NO_EXTENSIONS` set)."""
