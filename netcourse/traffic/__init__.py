"""Packets on the wire: capture them live, or replay a recording, and read them as a table.

- ``sniffer``: ``capture()`` around a block of code, on loopback, complete or saying it is not.
- ``rawsocket``: the packet socket under a live capture (drops lo's outgoing copy, filters ports).
- ``bpf``: the kernel packet filter the capture attaches, assembled here (no libpcap needed).
- ``recordings``: the shipped captures (pcap + json), read and written by scenario name.
- ``packets``: one row per packet: direction, flags, relative seq/ack, bytes per layer.
- ``wire``: bytes on the wire per layer, from a capture or from ``TCP_INFO``.
- ``tlsview``: TLS records of a capture, dissected by scapy and decrypted with a key log.

(The folder is not called `capture` so that `netcourse.capture` stays the function.)
This layer never imports the scenario registry or an experiment: recordings are found by name.
"""
