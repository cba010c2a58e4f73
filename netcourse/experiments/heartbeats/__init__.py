"""Notebook 04: a persistent full-duplex pipe, and how each side learns that the other is gone.

The server (``apps.beat``) pushes ticks without being asked and answers PINGs; its clients are in
``clients.beat``. One module per section, each imported by the notebook on its own:

- ``duplex``: the server's ticks and the client's messages interleave on one connection (captured);
- ``deaths``: what a reader and a writer see when the peer closes, crashes, freezes or vanishes; half-open;
- ``detection``: an application heartbeat finds a frozen peer, timed over several trials;
- ``reconnect``: a client that closes a dead connection and reconnects with back-off; a reconnect storm;
- ``tcp``: TCP keepalive and ``TCP_USER_TIMEOUT`` find a vanished peer (root; otherwise a replay);
- ``worker``: a stuck worker behind a live read loop: WebSocket PINGs still answered, only an app ping notices.

The peer that freezes or crashes is a child process (``clients.beat.peer_process``) that is always killed;
no root is needed for that.
"""
