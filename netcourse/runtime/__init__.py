"""The machinery under every lesson: background servers, bounded waits, sockets, the kernel's view.

- ``server``: ``serve()`` runs an aiohttp app or a stream handler in a thread of its own.
- ``cellhook``: re-running a notebook cell stops what its previous run started.
- ``waiting``: ``run_async`` and ``wait_until``, each with a deadline.
- ``sockets``: connected socket pairs on loopback.
- ``tcpinfo``: ``TCP_INFO`` and the kernel's socket table, no privileges needed.
- ``notices``: the one kind of message a helper shows in the running cell.
"""
