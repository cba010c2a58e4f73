"""Notebook 09: SSL vs TLS. The servers and the throwaway certificate authority are ``apps.tls``; the record
layer is ``protocols.tlsrecord``; captures are dissected and decrypted by ``traffic.tlsview``. One module per part:

- ``versions``: the timeline, the version floor and its alert, a Mozilla-intermediate server;
- ``handshake``: TLS 1.3 and 1.2 handshakes captured, dissected, decrypted with a key log; entropy;
- ``round_trips``: time to the first byte across a link, and its knob;
- ``trust``: certificates that fail on purpose, the certificate read, a man in the middle, mutual TLS;
- ``cost``: bytes per record, handshake CPU, and garbage, stalled and crowded handshakes survived.
"""
