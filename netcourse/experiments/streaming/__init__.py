"""Notebook 06: HTTP streaming. Chunked transfer coding on the wire, chunks that TCP splits and merges,
Server-Sent Events that resume after a drop, the buffering proxies that break streams (and the fixes), and
HTTP/1.1's connection limit.

The servers are ``apps.streaming`` (chunked, fixed-length and SSE endpoints over a ``MessageLog``) and
``apps.proxy`` (a proxy that buffers and compresses); the client ``clients.sse``. Every experiment starts them,
runs bounded clients and stops everything before it returns. One module per part of the lesson:

- ``chunked``: one response in chunks, byte by byte; chunk boundaries against TCP's segments;
- ``events``: Server-Sent Events that resume with Last-Event-ID; retry; resync; one event across a link;
- ``buffering``: proxies that hold a stream back, and the fixes measured;
- ``cost``: bytes per message against other transports; six connections per host;
- ``common``: the lesson's shared helpers.
"""
