"""Every endpoint of every function, with hand-picked hostile ids, bodies and parameters,
with the admin token and without: a 4xx that says what was wrong, never a 500 (501/503
excepted: not configured here), and the database unchanged.

Generated requests come from schemathesis (test_schemathesis.py); this sweep keeps the
shapes a generator from the schema seldom makes: NUL, path traversal, invalid UTF-8,
`urn:uuid:` and brace ids, numbers past bigint, superscript digits, NaN and Infinity,
lone surrogates, deep nesting, bodies that are not objects."""

import importlib.util
import itertools
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
# The findings of issue 13, each tried once per endpoint (with the first id, or an empty body).
MORE_BODIES = [b'{"metadata": {"x": Infinity}, "spec": {"y": NaN}}', b'{"secret": "\\ud800", "name": "\\udfff"}',
               b'{"count": 1e999}', b'{"secret": [1]}', b"[" * 5000 + b"]" * 5000, b'{"ip": "fe80::1%\\nx: y"}']
MORE_IDS = ["urn:uuid:4c4c4544-0042-3510-8052-b4c04f4e4b31", "{4c4c4544-0042-3510-8052-b4c04f4e4b31}"]
MORE_QUERIES = ["?limit=%C2%B2&offset=100000000000000000000&since=100000000000000000000&stage=bogus&force=maybe"]


def _cases(method):
    """(id, body, query, headers): every id x body x query with the admin token, the findings
    once each, and without a token the first id with every body."""
    bodies = BODIES if method in ("POST", "PATCH", "PUT") else [b""]
    more = MORE_BODIES if method in ("POST", "PATCH", "PUT") else []
    for ident, body, query in itertools.product(IDS, bodies, QUERIES):
        yield ident, body, query, ADMIN
    yield from ((IDS[0], body, "", ADMIN) for body in more)
    yield from ((ident, bodies[0], "", ADMIN) for ident in MORE_IDS)
    yield from ((IDS[0], bodies[0], query, ADMIN) for query in MORE_QUERIES)
    yield from ((IDS[0], body, "", {}) for body in bodies + more)


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
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                for ident, body, query, headers in _cases(method):
                    path = re.sub(r"<[^>]+>", ident, template)
                    resp = client.open(path + query, method=method, data=body,
                                       content_type="application/json", headers=headers)
                    if resp.status_code >= 500 and resp.status_code not in (501, 503):
                        failures.append(f"{name} {method} {path}{query} {body[:30]!r}: {resp.status_code}")
                    elif resp.status_code >= 400:
                        assert resp.get_data(as_text=True).strip(), f"{name} {method} {path}: empty error"
    assert failures == []
    assert snapshot(clean_db) == before
