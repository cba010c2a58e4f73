"""Servers a lesson talks to, each a ``make_..._app()`` factory or a stream handler for ``serve()``.

- ``polling``: the message log behind short and long polling.
- ``wsserver``: the course's strict WebSocket server, on ``protocols.wsconn``.
"""
