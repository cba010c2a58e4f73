"""Notebook 11: choosing a transport. Every transport on one workload across the link and on loopback, the sweeps
``make bench`` measures, memory per held client, a decision table from the measurements, and scale-out.

- ``harness``: the workload, a run's result, and what each transport's run shares;
- ``transports``: each transport delivering the workload, one function each; ``compare`` runs them all;
- ``sweeps``: rate, clients, size and RTT, measured by the bench and stored for the knobs;
- ``loss``: every transport across the tap link at 0, 1 and 5 % loss, measured by the bench and stored;
- ``repeats``: section 1's workload run five times by the bench, each figure's median and range;
- ``memory``: memory per held client;
- ``decision``: one message on the wire per push transport, the decision table, the notes checked;
- ``scaleout``: two fan-out nodes without and with Redis pub/sub (WebSocket, SSE and long-polling clients alike),
  and Redis Streams catch-up;
- ``crowds``: subscribers by the thousand in processes of their own, and the fan-out bench;
- ``failover``: a node with 1,000 clients killed (their reconnects with and without jitter) or drained;
- ``durability``: a Stream across a crash of Redis with and without its append-only file, and pub/sub dropping a
  subscriber that reads too slowly;
- ``limits``: one process against its file-descriptor limit (clients connected, never answered);
- ``choices``: the crossover prediction and the pick-a-transport question.
"""
