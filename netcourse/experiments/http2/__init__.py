"""The HTTP/2 and HTTP/3 notebook (being built, issue 29). The servers are ``apps.http2``; the client is
``clients.http2``; frames are read with ``protocols.h2frame``. One module per part:

- ``pages``: thirty small resources over HTTP/1.1 (six connections) and HTTP/2 (one), across the link.
"""
