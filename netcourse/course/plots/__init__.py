"""Pictures of traffic and of what each design cost. Every function takes data (and an optional matplotlib
``Axes``) and returns the ``Figure``. They never run experiments, so a notebook can wire them to a widget and a
test can call them directly.

- generic: ``draw`` (colours, a figure, arrows), ``ladder`` (ladder diagrams), ``wire`` (bytes per layer, header
  fields, ports, overhead against rate, latency distributions);
- per lesson: ``connections`` (01, 02), ``polling`` (03), ``heartbeats`` (04), ``streaming`` (06), ``webhooks``
  (07), ``offline`` (08), ``tls`` (09), ``http2`` (10), ``choosing`` (11).
"""
