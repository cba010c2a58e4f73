"""A network with distance: the emulated link lessons run on (``link(rtt_ms=..., loss=..., rate_mbit=...)``).

- ``link``: the ``Link`` object, its two modes (tap: namespaces and a userspace wire; relay: no root).
- ``forwarder``: the userspace wire between two TAP devices: delay, jitter, loss, rate, queue.
- ``relay``: the unprivileged TCP relay that delays and paces bytes.
- ``udprelay``: the unprivileged UDP relay that delays, drops and paces datagrams, and can rebind (a NAT's new port).

This layer sits above ``traffic`` (a link's capture is a ``Capture``) and below the apps.
"""
