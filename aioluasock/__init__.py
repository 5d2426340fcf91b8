"""aioluasock: LuaSocket's TCP and UDP API as asyncio coroutines.

Use it as LuaSocket's `socket` table::

    import aioluasock as socket

    server, err = await socket.bind("127.0.0.1", 0)
    client, err = await server.accept()
    line, err = await client.receive("*l")

`IMPLEMENTATION` says whether the compiled accelerator runs (``"compiled"``)
or the pure-Python modules (``"pure"``; see `AIOLUASOCK_NO_EXTENSIONS`).
"""

# First: with AIOLUASOCK_NO_EXTENSIONS set, `_accel` puts the pure modules in
# place before anything imports the compiled ones.
from ._accel import IMPLEMENTATION as IMPLEMENTATION

# isort: split
from . import unix as unix
from ._errors import BusyError as BusyError
from ._errors import Error as Error
from ._errors import newtry as newtry
from ._errors import protect as protect
from ._errors import try_ as try_
from ._functions import bind as bind
from ._functions import connect as connect
from ._functions import gettime as gettime
from ._functions import skip as skip
from ._functions import sleep as sleep
from ._select import select as select
from ._serve import Service as Service
from ._serve import serve as serve
from ._tcp import Client as Client
from ._tcp import Master as Master
from ._tcp import Server as Server
from ._tcp import tcp as tcp
from ._tcp import tcp4 as tcp4
from ._tcp import tcp6 as tcp6
from ._udp import UdpConnected as UdpConnected
from ._udp import UdpUnconnected as UdpUnconnected
from ._udp import udp as udp
from ._udp import udp4 as udp4
from ._udp import udp6 as udp6
from ._workers import run_workers as run_workers

__version__ = "0.1.0"

__all__ = (
    "IMPLEMENTATION",
    "BusyError",
    "Client",
    "Error",
    "Master",
    "Server",
    "Service",
    "UdpConnected",
    "UdpUnconnected",
    "__version__",
    "bind",
    "connect",
    "gettime",
    "newtry",
    "protect",
    "run_workers",
    "select",
    "serve",
    "skip",
    "sleep",
    "tcp",
    "tcp4",
    "tcp6",
    "try_",
    "udp",
    "udp4",
    "udp6",
)
