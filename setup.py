"""Build the optional compiled accelerator: mypyc compiles `aioluasock/_buffer.py`.

One source, two builds: the same typed `.py` module is installed either way
and stays the reference. The extension is built when mypy (mypyc) imports and
a C compiler works; otherwise, or with the environment variable
`AIOLUASOCK_NO_EXTENSIONS` set (to anything but "" or "0"), the package installs
as pure Python. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

COMPILED = ["aioluasock/_buffer.py"]  # keep in step with aioluasock/_accel.py's COMPILED


class OptionalBuildExt(build_ext):
    """`build_ext` that falls back to the pure-Python package when compiling fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._give_up(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        if os.environ.get("AIOLUASOCK_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            raise exc
        print(f"aioluasock: not building the compiled accelerator ({exc}); pure Python", file=sys.stderr)


def _extensions() -> list[Any]:
    if os.environ.get("AIOLUASOCK_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    if platform.python_implementation() != "CPython":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        print(f"aioluasock: mypyc is not available ({exc}); pure Python", file=sys.stderr)
        return []
    try:
        # opt_level 3 is mypyc's default; -O3 for the C compiler too.
        return list(mypycify(COMPILED, opt_level="3"))
    except Exception as exc:  # a mypy error: never leave the package uninstallable
        if os.environ.get("AIOLUASOCK_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            raise
        print(f"aioluasock: mypyc failed ({exc}); pure Python", file=sys.stderr)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
