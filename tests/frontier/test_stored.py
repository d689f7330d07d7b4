"""How persistent backends store a request: as little as rebuilds it."""

from __future__ import annotations

import json

from framework.frontier import decode_request, encode_request
from framework.http import Request


def test_a_link_with_every_default_is_stored_as_its_url_alone() -> None:
    url = "https://shop.test/catalogue/item-1.html?ref=list"
    assert encode_request(Request(url)) == url
    assert decode_request(url.encode()) == Request(url)


def test_only_the_fields_that_differ_from_their_defaults_are_stored() -> None:
    stored = encode_request(Request("https://shop.test/a", callback="parse_item", depth=2))
    assert json.loads(stored) == {
        "url": "https://shop.test/a",
        "callback": "parse_item",
        "depth": 2,
    }


def test_a_url_that_is_not_http_is_stored_as_json_so_it_cannot_pass_for_json() -> None:
    request = Request("{odd")
    assert json.loads(encode_request(request)) == {"url": "{odd"}
    assert decode_request(encode_request(request)) == request


def test_a_request_stored_whole_by_an_earlier_fw_still_reads() -> None:
    request = Request("https://shop.test/a", callback="parse_item", meta={"k": 1})
    assert decode_request(json.dumps(request.to_dict())) == request
