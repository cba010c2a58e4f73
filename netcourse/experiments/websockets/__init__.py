"""Notebook 05: WebSockets by hand: the handshake, frames on the wire, masking, what they cost, and security.

The server is the course's strict one (``apps.wsserver``); the client a plain socket with the course's sans-I/O
connection (``clients.websocket.RawClient``). One module per part of the lesson:

- ``handshake``: the upgrade captured, the accept key, talking by hand, a browser's handshake;
- ``frames``: the frame explorer, masking, control frames and fragments decoded off the wire, a frame's size;
- ``cost``: header bytes and latency against HTTP, on loopback and across a link; Nagle and TCP_NODELAY;
- ``held``: memory per idle connection, and a broadcast to all of them;
- ``security``: a foreign Origin, unmasked frames, oversized messages, bad UTF-8, each refused with its code.
"""
