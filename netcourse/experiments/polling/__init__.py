"""Notebook 03: short and long polling, measured side by side on the same stream of messages. The server is
``apps.polling``; the pollers are ``clients.pollers``. One module per part of the lesson:

- ``compare``: pollers on one seeded stream: latency, requests, bytes; naive against correct; abandoned waits;
- ``explore``: the knob's grid of measured runs;
- ``link``: polling across a link, the theory knob, and the questions from your capture.
"""
