#!/usr/bin/env python3
"""DNS reconcile at scale: N records (N/2 ready nodes, an A and a PTR each).

For each provider: the first reconcile (everything created), a second with nothing
changed (reads only; it must make zero writes), then C nodes change their IP (one
reconcile moves their A and PTR records). Prints time, provider reads and writes.

    python bench/dns_reconcile.py                        # both providers, 10,000 records
    python bench/dns_reconcile.py --provider ibm --records 2000 --changes 50

IBM: the real SDK against tests/fakes/ibm_dns_services.py (local, in memory).
RFC 2136: a real BIND that it starts (needs `named`: apt-get install bind9).
The database is a fresh embedded PostgreSQL (pgserver) unless BOOTFLEET_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "lib" / "common"), str(ROOT / "tests")]

ZONE = "example.test"  # the BIND test zones; the IBM fake serves the same name


def database_url() -> tuple[str, object]:
    if os.environ.get("BOOTFLEET_DATABASE_URL"):
        return os.environ["BOOTFLEET_DATABASE_URL"], None
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="bootfleet-run-"))
    import pgserver

    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="bootfleet-bench-pg-")) / "pg", cleanup_mode="delete")
    return server.get_uri("postgres"), server


def seed(db, nodes: int) -> None:
    """N ready nodes with hostnames and IPs in 10.0.0.0/8, straight into the tables."""
    with db.transaction() as tx:
        tx.run("TRUNCATE event, dns_record, node_mac, node, deployment, profile RESTART IDENTITY CASCADE")
        tx.run(
            "INSERT INTO node (hostname, ip, stage) SELECT 'n' || i,"
            " '10.' || (i / 65536) || '.' || (i / 256 % 256) || '.' || (i % 256), 'ready'"
            " FROM generate_series(1, :n) AS i",
            n=nodes,
        )


def change_ips(db, count: int) -> None:
    with db.transaction() as tx:
        tx.run("UPDATE node SET ip = '10.200.' || (substr(hostname, 2)::int / 256 % 256) || '.'"
               " || (substr(hostname, 2)::int % 256) WHERE id IN (SELECT id FROM node ORDER BY hostname LIMIT :n)",
               n=count)


def run(label: str, reconcile) -> dict:
    started = time.perf_counter()
    result = reconcile()
    seconds = time.perf_counter() - started
    line = (f"  {label:<28} {seconds:8.2f} s   planned {len(result.plan):6}   applied {len(result.applied):6}"
            f"   failed {len(result.failed):3}   provider reads {result.reads:6}   writes {result.writes:6}")
    print(line, flush=True)
    return {"seconds": seconds, "reads": result.reads, "writes": result.writes, "applied": len(result.applied)}


def bench(provider: str, db, records: int, changes: int) -> None:
    from bootfleet.dns.reconcile import reconcile_records
    from bootfleet.settings import get_settings, reset_settings

    nodes = records // 2
    seed(db, nodes)
    env: dict[str, str]
    if provider == "ibm":
        from fakes.ibm_dns_services import FakeDnsServices

        fake = FakeDnsServices("bench-instance", {"bench-zone": ZONE}).start()
        env = {"BOOTFLEET_DNS_PROVIDER": "ibm", "BOOTFLEET_IBM_DNS_INSTANCE_ID": "bench-instance",
               "BOOTFLEET_IBM_DNS_ZONE_ID": f"{ZONE}=bench-zone", "BOOTFLEET_IBM_DNS_URL": fake.service_url}
        stop = fake.stop
    else:
        from support.dns_bind import BindServer

        bind = BindServer()
        env = bind.env()
        stop = bind.stop
    os.environ.update({"BOOTFLEET_DNS_ZONE": ZONE, **env})
    reset_settings()
    print(f"{provider}: {nodes} ready nodes, {records} records", flush=True)

    def reconcile():
        return reconcile_records(get_settings(), database=db)

    try:
        run("first reconcile (create)", reconcile)
        second = run("second reconcile (no change)", reconcile)
        assert second["writes"] == 0, "a reconcile with nothing changed must not write"
        change_ips(db, changes)
        run(f"{changes} nodes change IP", reconcile)
        run("then no change again", reconcile)
    finally:
        stop()
        for key in env:
            os.environ.pop(key, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provider", choices=("ibm", "rfc2136", "both"), default="both")
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    url, pg = database_url()
    os.environ.update(BOOTFLEET_DATABASE_URL=url, BOOTFLEET_LOG_LEVEL="WARNING",
                      BOOTFLEET_DNS_REVERSE_ZONE="10.in-addr.arpa")
    from bootfleet.db import get_database

    db = get_database()
    db.ensure_migrated()
    try:
        for provider in (("ibm", "rfc2136") if args.provider == "both" else (args.provider,)):
            bench(provider, db, args.records, args.changes)
    finally:
        db.close()
        if pg is not None:
            pg.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
