"""Servers a lesson talks to, each a ``make_..._app()`` factory, an app-holding class or a stream handler for
``serve()``. Every HTTP app is made with ``safety.safe_app()``.

- ``safety``: the guard every app shares: Host and Origin checks, head and body limits, deadlines.
- ``jsonbody``: JSON from a client, read strictly (UTF-8, bounded nesting, Unicode text).
- ``echo``: TCP echo, the smallest server.
- ``polling``: the message log behind short and long polling (notebook 03).
- ``beat``: the heartbeat lesson's server, also run as a child process (notebook 04).
- ``stuckworker``: a WebSocket handler whose worker task deadlocks while the read loop goes on (notebook 04).
- ``wsserver``: the course's strict WebSocket server, on ``protocols.wsconn`` (notebook 05).
- ``streaming``: chunked responses and Server-Sent Events (notebook 06); ``proxy``: a buffering proxy.
- ``webhooks``: a signed sender with an outbox and a receiver with an inbox (notebook 07).
- ``chat``: a chat with a durable log, cookie sessions and resume (notebook 08); ``chatlog``: its SQLite;
  ``chatresume``: its resume cursors, one per conversation or one for all; ``chat_process``: the chat server in a
  process of its own, for the fault soak's SIGKILL.
- ``tls``: a throwaway CA, Mozilla-intermediate contexts, an HTTPS app, a man in the middle (notebook 09).
- ``broker``: a throwaway redis-server; ``fanout``: a fan-out node (WebSockets, event streams, long polls) in a
  process of its own; ``fdlimited``: an echo server in a process of its own, under a file-descriptor limit (11).
- ``http2``: an HTTP/2 server (prior knowledge) on the ``h2`` library, with its limits, and the same resources
  over HTTP/1.1; ``http3``: an HTTP/3 server on ``aioquic`` (QUIC, TLS 1.3, session tickets, 0-RTT), on a loop
  thread of its own (the HTTP/2 and HTTP/3 notebook, being built).
"""
