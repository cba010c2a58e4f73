"""Packets on the wire: capture them live, or replay a recording, and read them as a table.

- ``sniffer``: ``capture()`` around a block of code, on loopback, complete or saying it is not.
- ``recordings``: the shipped captures (pcap + json), read and written by scenario name.
- ``packets``: one row per packet: direction, flags, relative seq/ack, bytes per layer.
- ``wire``: bytes on the wire per layer, from a capture or from ``TCP_INFO``.

(The folder is not called `capture` so that `netcourse.capture` stays the function.)
This layer never imports the scenario registry or an experiment: recordings are found by name.
"""
