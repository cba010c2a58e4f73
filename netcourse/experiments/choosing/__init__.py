"""Notebook 10: choosing a transport. Every transport on one workload across the link and on loopback, the sweeps
``make bench`` measures, memory per held client, a decision table from the measurements, and scale-out.

- ``harness``: the workload, a run's result, and what each transport's run shares;
- ``transports``: each transport delivering the workload, one function each; ``compare`` runs them all;
- ``sweeps``: rate, clients, size and RTT, measured by the bench and stored for the knobs;
- ``repeats``: section 1's workload run five times by the bench, each figure's median and range;
- ``memory``: memory per held client;
- ``decision``: one message on the wire per push transport, the decision table, the notes checked;
- ``scaleout``: two fan-out nodes without and with Redis pub/sub, and Redis Streams catch-up.
"""
