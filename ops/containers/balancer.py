#!/usr/bin/env python3
"""A round-robin TCP balancer in front of the gateway replicas, standing in
for the load balancer an operator puts in front of them (the test's runs with
replicas: only one container can publish the gateway's port).

  balancer.py LISTEN_PORT BACKENDS_FILE

Each new connection goes to the next backend (HOST:PORT, one a line in
BACKENDS_FILE, read again for every connection, so the test can rewrite it
when a replica comes back on another address); a backend that refuses or does
not answer within 1 s is skipped for that connection, as a balancer's health
check would. A connection already made stays with its backend. Standard
library only.
"""

import asyncio
import itertools
import sys

COUNTER = itertools.count()


def backends(path):
    with open(path, encoding="utf-8") as file:
        return [line.strip() for line in file if line.strip()]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer, path):
    targets = backends(path)
    start = next(COUNTER)
    for i in range(len(targets)):
        host, port = targets[(start + i) % len(targets)].rsplit(":", 1)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
        except (OSError, asyncio.TimeoutError):
            continue
        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))
        return
    client_writer.close()  # no backend answers


async def main(port, path):
    server = await asyncio.start_server(lambda r, w: handle(r, w, path), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
    except KeyboardInterrupt:
        pass
