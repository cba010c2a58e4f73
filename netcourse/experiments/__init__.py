"""One module or package per notebook: the live scenarios that notebook runs, each returning a plain result.
A lesson's experiments never import another lesson's (a test checks it): what lessons share lives in
``clients``, ``apps`` or ``protocols``.

- ``start_here`` (00), ``connections`` (01), ``transport`` (02), ``polling`` (03), ``heartbeats`` (04),
  ``websockets`` (05), ``streaming`` (06), ``webhooks`` (07), ``offline`` (08), ``tls`` (09), ``http2`` (10),
  ``choosing`` (11).
- ``registry``: the scenarios whose captures the course records and ships.
"""
