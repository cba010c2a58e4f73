"""Notebook 01: what a connection is: two sockets, a 4-tuple, ports, and what lingers after close.

Most experiments here use plain blocking sockets, the thing the seed notes call "a socket": a listening socket
that accepts, and clients that connect. The full-duplex one uses a background asyncio server so both ends can
talk at once. One module per part of the lesson:

- ``sockets``: the two sockets of a connection and its 4-tuple; full duplex, captured; its questions;
- ``ports``: well-known and ephemeral ports, port 80's privilege, one listening port and many connections;
- ``time_wait``: TIME_WAIT, SO_REUSEADDR and the port budget.
"""
