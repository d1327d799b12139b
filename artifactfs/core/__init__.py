"""Pure functions and data: names, manifests, digests, chunk indexes, errors. No I/O here."""
