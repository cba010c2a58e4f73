"""Protocols as code a learner can read: sans-I/O, standard library only.

Nothing here opens a socket, starts an event loop or imports aiohttp, scapy or matplotlib (a test
checks it). Each module works on bytes in and bytes out, and names the RFC section of every rule.

- ``wsframe``: WebSocket frames and the accept key (RFC 6455).
- ``wsconn``: one WebSocket connection: handshake, messages, ping/pong, the close handshake.
- ``httpwire``: HTTP/1.1 heads and message framing (RFC 9112).
- ``headers``: IPv4, TCP and UDP header field tables.
- ``checksum``: the Internet checksum (RFC 1071) and pseudo-headers.
"""
