"""Every endpoint of every function, with malformed ids, bodies and parameters:
a 4xx that says what was wrong, never a 500 (501/503 excepted: not configured here)."""

import importlib.util
import json
import re

from support import ADMIN
from support.helpers import snapshot

from bootfleet.web.router import FUNCTIONS, function_source

BODIES = [b"", b"{", b"[]", b"null", b'{"name": 5}', b'{"count": "x"}', b'{"stage": ["a"]}',
          json.dumps({"name": "x" * 5000}).encode(), b'{"macs": "52:54:00:00:00:01"}', b'{"placement": [1]}',
          b'{"spec": "x"}', b'{"labels": {"a": {"b": 1}}}', b'{"dns_zone": "bad zone"}', b'{"provider": "aws"}',
          b'{"secret": 5}', b"\xff\xfe", b'{"profile": null}', b'{"ip": 5}', b'{"name": "a\\u0000"}']
IDS = ["00000000-0000-0000-0000-000000000000", "nope", "x" * 300, "%00", "..%2F..", "%0Aecho"]
QUERIES = ["", "?limit=-1&offset=x&since=zz&deployment=nope&dry_run=maybe&mac=zz&stage=x&label=a&token=%00"]


def _rules(name):
    spec = importlib.util.spec_from_file_location(f"sweep_{name}", function_source(name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.api.url_map.iter_rules())


def test_no_input_makes_a_500(function_apps, clean_db):
    before = snapshot(clean_db)
    failures = []
    for name in FUNCTIONS:
        client = function_apps[name].test_client()
        for rule in _rules(name):
            template = re.sub(r"<any\(([^),]*)[^)]*\):\w+>", lambda m: m.group(1).strip().strip("'\""), rule.rule)
            for ident in IDS:
                path = re.sub(r"<[^>]+>", ident, template)
                for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                    for body in BODIES if method in ("POST", "PATCH", "PUT") else [b""]:
                        for query in QUERIES:
                            resp = client.open(path + query, method=method, data=body,
                                               content_type="application/json", headers=ADMIN)
                            if resp.status_code >= 500 and resp.status_code not in (501, 503):
                                failures.append(f"{name} {method} {path}{query} {body[:30]!r}: {resp.status_code}")
                            elif resp.status_code >= 400:
                                assert resp.get_data(as_text=True).strip(), f"{name} {method} {path}: empty error"
    assert failures == []
    assert snapshot(clean_db) == before
