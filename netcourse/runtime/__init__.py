"""The machinery under every lesson: background servers, bounded waits, sockets, the kernel's view.

- ``server``: ``serve()`` runs an aiohttp app or a stream handler in a thread of its own.
- ``loopthread``: an event loop in a thread of its own for what ``serve()`` does not host (UDP endpoints).
- ``registry``: the live servers (``live_servers``, ``stop_all``), and where their log records go.
- ``admission``: every connection's slot: an exact cap, who goes first past it, the head deadline.
- ``tlslayer``: the TLS protocol under ``serve(ssl=...)``: alerts sent, a slot from the first byte.
- ``privates``: the private attributes of aiohttp and asyncio relied on, checked at start-up.
- ``cellhook``: re-running a notebook cell stops what its previous run started.
- ``waiting``: ``in_thread`` (the one thread runner), ``run_async`` and ``wait_until``, each with a deadline.
- ``netns``: network namespaces for the emulated link: create, enter from one thread, remove.
- ``sockets``: connected socket pairs on loopback, Nagle off, a port for a server that restarts.
- ``tcpinfo``: ``TCP_INFO`` and the kernel's socket table, no privileges needed.
- ``heartbeat``: a protocol-free heartbeat on the loop's clock; ``backoff``: capped, jittered back-off.
- ``notices``: the one kind of message a helper shows in the running cell.
"""
