"""Protocols as code a learner can read: sans-I/O, standard library only.

Nothing here opens a socket, starts an event loop or imports aiohttp, scapy or matplotlib (a test checks it).
Each module works on bytes in and bytes out, and names the RFC section of every rule. Its errors are in
``netcourse.errors`` (the one tree), each carrying what to send back; a decoder that raised one stays failed.

- ``wsframe``: WebSocket frames, the accept key and the Role (RFC 6455 §5).
- ``wsconn``: one WebSocket connection: handshake, messages, ping/pong, the close handshake (§4, §7).
- ``httpwire``: HTTP/1.1 heads, their sizes and message framing (RFC 9112), the one HTTP parser.
- ``chunked``: the chunked transfer coding (RFC 9112 §7.1).
- ``sse``: the Server-Sent Events stream format (WHATWG HTML §9.2).
- ``h2frame``: HTTP/2 frames: the nine-byte header, the ten types, a decoder that names the broken rule (RFC 9113).
- ``quicpacket``: QUIC packet headers as the path sees them: kinds, versions, connection IDs (RFC 9000 §17).
- ``tlsrecord``: the TLS record layer: records, alerts, handshake message types (RFC 8446 §5).
- ``webhooks``: Standard Webhooks signatures (HMAC-SHA256), with rotation and a replay window.
- ``beat``: the heartbeat lesson's length-prefixed framing, and its detection-time arithmetic.
- ``headers``: IPv4, TCP and UDP header field tables.
- ``checksum``: the Internet checksum (RFC 1071) and pseudo-headers.
"""
