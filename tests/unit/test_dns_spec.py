"""A deployment's `spec.dns`: what names it asks for, and clear reasons when it cannot be used."""

import pytest

from bootfleet.dns.spec import DnsSpecError, node_fqdn, parse_dns_spec


def test_names_labels_and_cnames():
    spec = {"dns": {"names": ["api", {"name": "db", "labels": {"role": "db"}}, {"name": "www", "cname": "api"},
                              {"name": "docs", "cname": "pages.example.org"}]}}
    assert parse_dns_spec(spec, "rack1", "fleet.example.com") == [
        {"name": "api.rack1.fleet.example.com", "labels": {}, "cname": None},
        {"name": "db.rack1.fleet.example.com", "labels": {"role": "db"}, "cname": None},
        {"name": "www.rack1.fleet.example.com", "labels": {}, "cname": "api.rack1.fleet.example.com"},
        {"name": "docs.rack1.fleet.example.com", "labels": {}, "cname": "pages.example.org"},
    ]
    assert parse_dns_spec({}, "rack1", "fleet.example.com") == []


@pytest.mark.parametrize("dns,words", [
    ("api", "spec.dns must be an object"),
    ({"names": "api"}, "spec.dns must be an object with a list"),
    ({"names": [3]}, "spec.dns.names[0]: a name"),
    ({"names": ["bad name!"]}, "spec.dns.names[0]: 'bad name!' does not make a DNS name"),
    ({"names": [{"name": "x", "ttl": 5}]}, "unknown field(s) ttl"),
    ({"names": [{"name": "x", "labels": {"role": 1}}]}, "spec.dns.names[0].labels"),
    ({"names": [{"name": "x", "cname": "api", "labels": {"a": "b"}}]}, "no labels with it"),
])
def test_an_unusable_spec_says_what_to_fix(dns, words):
    with pytest.raises(DnsSpecError) as e:
        parse_dns_spec({"dns": dns}, "rack1", "fleet.example.com")
    assert words in str(e.value)


@pytest.mark.parametrize("hostname,fqdn", [
    ("web1", "web1.fleet.example.com"), ("WEB1.fleet.example.com.", "web1.fleet.example.com"),
    ("web1.other.org", None),
])
def test_node_names(hostname, fqdn):
    assert node_fqdn(hostname, "fleet.example.com") == fqdn
