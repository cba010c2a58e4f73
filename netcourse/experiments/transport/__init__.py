"""Notebook 02: TCP and UDP on the wire. One module per part of the lesson:

- ``conversation``: a TCP conversation captured: handshake, sequence numbers, teardown;
- ``checksum``: the Internet checksum of a captured segment, by hand;
- ``datagrams``: message boundaries, who answers a closed port, a seeded lossy relay;
- ``costs``: header bytes per message, and latency, TCP against UDP;
- ``retransmission``: a real TCP retransmission (root: a private namespace with nftables; else replayed);
- ``slow_start``: slow start and loss recovery across the emulated link.
"""
