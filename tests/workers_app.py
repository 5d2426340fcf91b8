"""A program for tests/test_workers.py: `run_workers` with a handler that
tells each client which process serves it.

    python tests/workers_app.py LOOP WORKERS GRACE

Prints ``READY <port>`` once every worker listens, runs until SIGINT or
SIGTERM, then prints ``DONE <result>``. Each client first gets a line with
the worker's pid, then its lines echoed.
"""

from __future__ import annotations

import logging
import os
import sys

import aioluasock as socket


async def pid_echo(client: socket.Client) -> None:
    client.settimeout(30)
    if (await client.send(b"%d\n" % os.getpid()))[1] is not None:
        return
    while True:
        line, err = await client.receive()
        if err is not None:
            return
        if (await client.send(line + b"\n"))[1] is not None:
            return


def main() -> int:
    loop, workers, grace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout)

    def ready(ip: str, port: int) -> None:
        print(f"READY {port}", flush=True)

    result = socket.run_workers(
        pid_echo, "127.0.0.1", 0, workers=workers, loop=loop, grace=grace, ready=ready
    )
    print(f"DONE {result}", flush=True)
    return 0 if result == (1, None) else 1


if __name__ == "__main__":
    sys.exit(main())
