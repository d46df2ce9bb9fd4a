"""The usage ledger: requests, tokens, errors and rejections per tenant, key, model and UTC day.

The hot path only adds to an in-memory buffer (`UsageLedger.record`); a background task
writes the buffer to the same kind of store as the keys (Redis or the SQLite file) about once
a second, in one round trip, so no request waits on the ledger. The admin API and CLI read it
back, grouped and filtered, as JSON or CSV.
"""
