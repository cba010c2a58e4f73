"""Notebook 08: offline messaging. The last id kept in a local SQLite, catch-up on reconnect, authentication at
the WebSocket's set-up by cookie, and what breaks each naive version of that design.

The server is ``apps.chat`` (its log in ``apps.chatlog``); the client ``clients.chat``. One module per section:

- ``online``: login and the handshake captured; offline and back; the same across a 100 ms link;
- ``membership``: the membership trap: one cursor for all conversations loses a joined one's history;
- ``naive``: the naive designs and the outbox, each measured against the real server;
- ``faults``: the fault soak (a killed client process, server crashes, frames cut in half);
- ``catchup``: what the log costs a fresh client;
- ``attacks``: the handshake under attack, a token in a URL, bad input;
- ``common``: the lesson's shared set-up (a chat server with two users, a publisher).
"""
