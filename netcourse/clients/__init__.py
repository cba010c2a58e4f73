"""Clients a lesson drives, shared by the lessons and the tests: a layer of their own, above the protocols and the
runtime they use and below the apps and experiments that use them (so no lesson imports another's).

- ``websocket``: a WebSocket client made of a plain socket and ``protocols.wsconn``: every byte visible.
- ``beat``: the heartbeat protocol's client, its server as a child process, and a reconnecting client.
- ``chat``: login, the chat client and its local SQLite store; ``chat_process``: that client in a process.
- ``pollers``: a short poller, a long poller and the notes' naive one.
- ``sse``: the one Server-Sent Events client: one stream's events, and EventSource's reconnecting loop.
- ``http2``: an HTTP/2 client: every request at once on one connection, its frames read back with ``h2frame``;
  ``http3``: an HTTP/3 client on ``aioquic``: the handshake timed, resumption and 0-RTT.
- ``crowd``: hundreds or thousands of WebSocket subscribers in a process of their own, reconnecting to another
  node by a policy (at once on 1001, else after a back-off with or without jitter).
"""
