"""The request context: its id, minted or the client's."""

from __future__ import annotations

from gateway.core.context import RequestContext, random_id


def test_minted_ids_are_32_random_hex_digits() -> None:
    ids = {random_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)


def test_a_request_keeps_a_sane_client_id_and_gets_one_otherwise() -> None:
    given = RequestContext.from_scope({"headers": [(b"x-request-id", b"client-1")]})
    assert given.request_id == "client-1"
    for headers in ([], [(b"x-request-id", b"x" * 129)], [(b"x-request-id", "é".encode())]):
        minted = RequestContext.from_scope({"headers": headers}).request_id
        assert len(minted) == 32 and int(minted, 16) >= 0
