"""The public surface of `aioluasock` (LuaSocket's `socket` table) does not drift.

As anyio's `tests/test_all_attributes.py`: `__all__` is a tuple of exactly the
expected names, every one of them resolves, and nothing else public is there
besides submodules.
"""

from __future__ import annotations

import importlib
import inspect
import re
import types

import aioluasock

EXPECTED = {
    # constructors and shortcuts
    "tcp",
    "tcp4",
    "tcp6",
    "udp",
    "udp4",
    "udp6",
    "bind",
    "connect",
    # the select shim and time
    "select",
    # the accept loop, with a cap and a graceful shutdown
    "serve",
    "Service",
    # serve() in worker processes sharing the port, under a supervisor
    "run_workers",
    "gettime",
    "sleep",
    # LuaSocket's helpers
    "skip",
    "try_",
    "newtry",
    "protect",
    # exceptions
    "Error",
    "BusyError",
    # the three kinds, for annotations and isinstance
    "Master",
    "Server",
    "Client",
    "UdpUnconnected",
    "UdpConnected",
    "__version__",
    # "compiled" or "pure": which implementation of the hot path runs
    "IMPLEMENTATION",
}

COROUTINE_FUNCTIONS = {"bind", "connect", "select", "serve", "sleep"}
PLAIN_FUNCTIONS = {
    "tcp",
    "tcp4",
    "tcp6",
    "udp",
    "udp4",
    "udp6",
    "gettime",
    "skip",
    "try_",
    "newtry",
    "protect",
    "run_workers",
}
CLASSES = {"Master", "Server", "Client", "Service", "UdpUnconnected", "UdpConnected"}
EXCEPTIONS = {"Error", "BusyError"}


def test_all_is_a_tuple() -> None:
    assert isinstance(aioluasock.__all__, tuple)
    assert all(isinstance(name, str) for name in aioluasock.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(set(aioluasock.__all__)) == len(aioluasock.__all__)


def test_all_is_exactly_the_expected_names() -> None:
    assert set(aioluasock.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in aioluasock.__all__:
        assert hasattr(aioluasock, name), name
        assert getattr(aioluasock, name) is not None, name


def test_no_public_name_outside_all_besides_submodules() -> None:
    exported = set(aioluasock.__all__)
    strays = {
        name
        for name, value in vars(aioluasock).items()
        if not name.startswith("_") and name not in exported and not isinstance(value, types.ModuleType)
    }
    assert strays == set()


PUBLIC_SUBMODULES = {
    "lua": None,  # the bridge: its own test file checks it
    "interop": ("ByteStream", "open_streams"),
    "unix": (
        "UnixClient",
        "UnixDgramConnected",
        "UnixDgramUnconnected",
        "UnixMaster",
        "UnixServer",
        "bind",
        "connect",
        "dgram",
        "stream",
    ),
    "testing": (
        "Faults",
        "FaultyProxy",
        "Loopback",
        "StreamCheckFailed",
        "StreamClient",
        "StreamReport",
        "check_pair",
        "check_stream",
    ),
}


def test_submodules_outside_all_are_private_or_public_by_name() -> None:
    for name, value in vars(aioluasock).items():
        if isinstance(value, types.ModuleType) and name not in aioluasock.__all__:
            assert name.startswith("_") or name in PUBLIC_SUBMODULES, name
            assert value.__name__ == f"aioluasock.{name}"


def test_public_submodules_export_exactly_their_names() -> None:
    for name, expected in PUBLIC_SUBMODULES.items():
        if expected is None:
            continue
        module = importlib.import_module(f"aioluasock.{name}")
        assert getattr(aioluasock, name) is module
        assert isinstance(module.__all__, list | tuple)
        assert set(module.__all__) == set(expected), name
        for attribute in expected:
            value = getattr(module, attribute)
            assert value is not None, (name, attribute)
            # Documented: every public name of a public submodule says its contract.
            assert inspect.getdoc(value), (name, attribute)
        strays = {
            attribute
            for attribute, value in vars(module).items()
            if not attribute.startswith("_")
            and attribute not in expected
            and getattr(value, "__module__", None) == module.__name__
        }
        assert strays == set(), name  # nothing public defined there but what it exports


def test_testing_kit_is_not_imported_by_the_package() -> None:
    # The kit is for tests: `import aioluasock` must not pay for it.
    import subprocess
    import sys

    code = "import sys, aioluasock; print('aioluasock.testing' in sys.modules, 'hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_coroutine_functions_of_the_testing_kit() -> None:
    import aioluasock.testing

    assert inspect.iscoroutinefunction(aioluasock.testing.check_pair)
    assert inspect.iscoroutinefunction(aioluasock.testing.check_stream)
    assert inspect.iscoroutinefunction(aioluasock.testing.Loopback.pair)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from aioluasock import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(aioluasock.__all__)


def test_kinds_of_names() -> None:
    assert (
        COROUTINE_FUNCTIONS | PLAIN_FUNCTIONS | CLASSES | EXCEPTIONS | {"__version__", "IMPLEMENTATION"}
        == EXPECTED
    )
    for name in COROUTINE_FUNCTIONS:
        # Every call that can block is a coroutine (DESIGN.md).
        assert inspect.iscoroutinefunction(getattr(aioluasock, name)), name
    for name in PLAIN_FUNCTIONS:
        value = getattr(aioluasock, name)
        assert callable(value), name
        assert not inspect.iscoroutinefunction(value), name
    for name in CLASSES:
        assert isinstance(getattr(aioluasock, name), type), name
    for name in EXCEPTIONS:
        value = getattr(aioluasock, name)
        assert isinstance(value, type), name
        assert issubclass(value, Exception), name


def test_version() -> None:
    assert isinstance(aioluasock.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)*", aioluasock.__version__)


def test_blocking_methods_are_coroutines() -> None:
    assert inspect.iscoroutinefunction(aioluasock.Master.bind)
    assert inspect.iscoroutinefunction(aioluasock.Master.connect)
    assert not inspect.iscoroutinefunction(aioluasock.Master.listen)
    assert inspect.iscoroutinefunction(aioluasock.Server.accept)
    assert inspect.iscoroutinefunction(aioluasock.Client.receive)
    assert inspect.iscoroutinefunction(aioluasock.Client.send)
    for cls in (aioluasock.Master, aioluasock.Server, aioluasock.Client):
        for method in ("close", "settimeout", "gettimeout", "setoption", "getoption", "getsockname"):
            assert callable(getattr(cls, method)), (cls, method)
            assert not inspect.iscoroutinefunction(getattr(cls, method)), (cls, method)


def test_implementation() -> None:
    # Which one runs is tested in test_accel.py.
    assert aioluasock.IMPLEMENTATION in ("compiled", "pure")


def test_public_names_have_docstrings() -> None:
    for name in aioluasock.__all__:
        if name in ("__version__", "IMPLEMENTATION"):
            continue
        assert inspect.getdoc(getattr(aioluasock, name)), name
