"""Notebook 07: webhooks. The receiver and the sender are ``apps.webhooks`` (a SQLite inbox and outbox); every
experiment keeps their files in a temporary folder removed at the end, and stops every server before it returns.
One module per section:

- ``delivery``: one signed delivery captured, its HMAC by hand; the same across a 100 ms link;
- ``forgeries``: forged, replayed, altered and malformed deliveries refused with reasons;
- ``retries``: a receiver down and back, on the Standard Webhooks schedule scaled down; dead letters; a crash;
- ``firewall``: a receiver the sender cannot reach, and each way around it, one function per way;
- ``noise``: a burst of events as single POSTs, batches and thin events;
- ``common``: the course's demo secret, a temporary folder.
"""
