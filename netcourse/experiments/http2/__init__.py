"""Notebook 10: HTTP/2 and HTTP/3. The servers are ``apps.http2``; the client is
``clients.http2``; frames are read with ``protocols.h2frame``. One module per part:

- ``pages``: thirty small resources over HTTP/1.1 (six connections) and HTTP/2 (one), across the link;
- ``hol``: the same page on a lossy tap link, each resource's completion time (head-of-line blocking);
- ``handshakes``: time to the first byte over TCP + TLS 1.3 and over QUIC, fresh and 0-RTT, and 0-RTT replayed;
- ``migration``: a NAT rebinding in the middle of a conversation: the TCP connection is reset, QUIC carries on;
- ``streams``: seven event streams from one page: the seventh waits over HTTP/1.1, not over HTTP/2;
- ``websockets``: opening a WebSocket over HTTP/1.1 (a new connection) and over HTTP/2 (a stream, RFC 8441);
- ``quicwire``: QUIC's first flight captured: long headers, then short ones; decrypted with the key log by tshark;
- ``webtransport``: a WebTransport session over HTTP/3, a datagram and a stream echoed, across the link;
- ``frames``: one HTTP/2 connection captured and cut into frames; HPACK's dynamic table after each request;
- ``questions``: the notebook's predictions and questions.
"""
