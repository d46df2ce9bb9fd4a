"""The usage ledger: a record per request, and the daily rows (requests, tokens, errors and
rejections per tenant, key, model and UTC day) summed from them.

A request's record is written to a local log before its answer leaves (`UsageLedger`,
gateway/usage/wal.py), so a killed gateway loses none; a background task moves the log to the
same kind of store as the keys (Redis or the SQLite file) about once a second, and the store
keeps each record once, however often it is written. No request waits on the store or on an
fsync. The admin API and CLI read the daily rows back, grouped and filtered, as JSON or CSV.
"""
