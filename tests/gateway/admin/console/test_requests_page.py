"""The Requests page against a real gateway: the requests sent through it (whole answers, a
stream, a refusal) are the rows the console shows, newest first, a page at a time; one
request is found by its id, and the export is the admin API's."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.fixtures.gateway import Gateway
from tests.gateway.admin.console.browser import open_page

PLAIN_REQUESTS = 100  # with the stream and the refusal, more than one page of 100


@dataclass(frozen=True)
class Traffic:
    dispute_id: str  # a whole answer's x-request-id
    dispute_usage: dict[str, int]
    stream_id: str
    refused_id: str  # an unknown model: 404, counted under no model


def chat(gateway: Gateway, client: httpx.Client, request_id: str, **body: object) -> httpx.Response:
    request = {"model": "tenant-a", "messages": [{"role": "user", "content": "hello"}], **body}
    headers = {**gateway.headers, "x-request-id": request_id}
    return client.post(gateway.url + "/v1/chat/completions", json=request, headers=headers)


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Iterator[Traffic]:
    run = uuid.uuid4().hex[:8]
    with httpx.Client(timeout=30) as client:
        for number in range(PLAIN_REQUESTS):
            assert chat(gateway, client, f"plain-{run}-{number}").status_code == 200
        dispute = chat(gateway, client, f"dispute-{run}", max_tokens=7)
        assert dispute.status_code == 200, dispute.text
        stream = chat(
            gateway, client, f"stream-{run}", stream=True, stream_options={"include_usage": True}
        )
        assert stream.status_code == 200 and "[DONE]" in stream.text
        refused = chat(gateway, client, f"refused-{run}", model="no-such-model")
        assert refused.status_code == 404
    yield Traffic(f"dispute-{run}", dispute.json()["usage"], f"stream-{run}", f"refused-{run}")


def records_table(page: Page) -> Locator:
    return page.get_by_role("table", name="Requests, newest first")


def row_of(page: Page, request_id: str) -> Locator:
    return records_table(page).locator("tbody tr").filter(has_text=request_id)


def cells(row: Locator) -> list[str]:
    return [text.strip() for text in row.locator("td").all_inner_texts()]


def api_records(gateway: Gateway, **params: str) -> list[dict]:
    response = gateway.admin("GET", "/usage/records", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_a_tenants_requests_newest_first_a_page_at_a_time(
    console: Page, gateway: Gateway, traffic: Traffic
) -> None:
    open_page(console, "Requests", "Requests")
    rows = records_table(console).locator("tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text(traffic.refused_id)  # the newest
    refused = cells(row_of(console, traffic.refused_id))
    assert refused[3:6] == ["/v1/chat/completions", "unknown\n—", "404"]
    stream = cells(row_of(console, traffic.stream_id))
    assert stream[3:6] == ["/v1/chat/completions", "tenant-a\ntenant-a", "200"]
    assert stream[9].endswith(" ms")  # a stream has a time to its first event
    assert "acme-key" in stream[2]
    console.get_by_role("button", name="Load more").click()
    expect(rows).to_have_count(PLAIN_REQUESTS + 3)
    expect(console.get_by_role("button", name="Load more")).to_be_hidden()
    shown = [cells(rows.nth(index))[1] for index in range(PLAIN_REQUESTS + 3)]
    every = api_records(gateway, tenant_id=gateway.tenant_id, limit="1000")
    assert shown == [record["request_id"] for record in every]


def test_one_request_by_its_id(console: Page, gateway: Gateway, traffic: Traffic) -> None:
    open_page(console, "Requests", "Requests")
    console.get_by_label("Request id").fill(traffic.dispute_id)
    console.get_by_role("button", name="Show").click()
    rows = records_table(console).locator("tbody tr")
    expect(rows).to_have_count(1)
    (record,) = api_records(gateway, tenant_id=gateway.tenant_id, request_id=traffic.dispute_id)
    shown = cells(rows.first)
    assert shown[1] == traffic.dispute_id
    assert shown[3:8] == [
        "/v1/chat/completions",
        "tenant-a\ntenant-a",  # the public name, and the adapter vLLM was asked for
        "200",
        str(traffic.dispute_usage["prompt_tokens"]),
        str(traffic.dispute_usage["completion_tokens"]),
    ]
    assert shown[8] == f"{record['latency_ms']:.1f} ms"
    assert (shown[9], shown[10]) == ("—", "no")
    assert record["prompt_tokens"] == traffic.dispute_usage["prompt_tokens"]


def test_an_unknown_request_id_shows_the_apis_message(console: Page, traffic: Traffic) -> None:
    open_page(console, "Requests", "Requests")
    console.get_by_label("Request id").fill("no-such-request")
    console.get_by_role("button", name="Show").click()
    expect(console.get_by_role("alert")).to_contain_text("No usage record of request")
    expect(console.get_by_role("alert")).to_contain_text("(field: request_id)")
    expect(records_table(console)).to_have_count(0)


def test_the_exports_are_the_apis(console: Page, gateway: Gateway, traffic: Traffic) -> None:
    open_page(console, "Requests", "Requests")
    expect(records_table(console).locator("tbody tr")).to_have_count(100)
    params = {
        "tenant_id": gateway.tenant_id,
        "from": console.get_by_label("From (UTC)").input_value(),
        "to": console.get_by_label("To (UTC)").input_value(),
    }
    with console.expect_download() as download:
        console.get_by_role("button", name="Export CSV").click()
    exported = download.value.path().read_bytes().decode()
    assert download.value.suggested_filename.endswith(".csv")
    api_csv = gateway.admin("GET", "/usage/records", params={**params, "format": "csv"}).text
    assert exported == api_csv
    assert len(list(csv.DictReader(io.StringIO(exported)))) == PLAIN_REQUESTS + 3
    with console.expect_download() as download:
        console.get_by_role("button", name="Export JSON lines").click()
    lines = download.value.path().read_bytes().decode().splitlines()
    assert [json.loads(line)["request_id"] for line in lines][:1] == [traffic.refused_id]
