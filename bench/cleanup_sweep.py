#!/usr/bin/env python3
"""Cleanup over a large fleet: one run across N nodes (default 100,000).

Seeds a fresh embedded PostgreSQL with N nodes in 10 deployments: most `ready`, some
stuck in `booting` past its timeout, some `deprovisioning` in a deleted deployment,
some deleted long ago; and two events per node, half of them past the retention.
Then times a dry run, the real run, and a second run that finds nothing to do.

    python bench/cleanup_sweep.py [--nodes 100000] [--cap 100000]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time


def seed(db, nodes: int) -> None:
    with db.transaction() as tx:
        tx.run("INSERT INTO profile (name, kernel) VALUES ('bench', 'vmlinuz')")
        tx.run("INSERT INTO deployment (name, profile_id, state)"
               " SELECT 'd' || i, (SELECT id FROM profile), CASE WHEN i = 9 THEN 'deleting' ELSE 'active' END"
               " FROM generate_series(0, 9) i")
        # 10 % of nodes in the deleted deployment (deprovisioning), 5 % stuck booting, 5 % deleted 60 days ago.
        tx.run(
            "INSERT INTO node (deployment_id, hostname, stage, stage_changed_at)"
            " SELECT (SELECT id FROM deployment WHERE name = 'd' || (i % 10)), 'n' || i,"
            "  CASE WHEN i % 10 = 9 THEN 'deprovisioning' WHEN i % 20 = 1 THEN 'booting'"
            "       WHEN i % 20 = 3 THEN 'deleted' ELSE 'ready' END,"
            "  CASE WHEN i % 20 = 1 THEN now() - interval '2 hours' WHEN i % 20 = 3 THEN now() - interval '60 days'"
            "       ELSE now() END"
            " FROM generate_series(0, :n - 1) i", n=nodes)
        tx.run("INSERT INTO node_mac (mac, node_id) SELECT regexp_replace(lpad(to_hex(i::int), 12, '0'),"
               " '(..)(?!$)', '\\1:', 'g'), id FROM (SELECT id, row_number() OVER () AS i FROM node) numbered")
        tx.run("INSERT INTO event (node_id, deployment_id, stage, kind, message, source, created_at)"
               " SELECT id, deployment_id, stage, 'stage', 'seeded', 'bench',"
               "  CASE WHEN k = 0 THEN now() - interval '45 days' ELSE now() END"
               " FROM node, generate_series(0, 1) k")
        tx.run("ANALYZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--cap", type=int, default=100_000, help="deletions allowed per run")
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="bootfleet-bench-cleanup-")
    os.environ.setdefault("XDG_RUNTIME_DIR", data)
    import pgserver

    server = pgserver.get_server(os.path.join(data, "pg"), cleanup_mode="delete")
    os.environ["BOOTFLEET_DATABASE_URL"] = server.get_uri("postgres")
    os.environ["BOOTFLEET_LOG_LEVEL"] = "WARNING"
    from bootfleet.cleanup import Cleanup
    from bootfleet.db import get_database
    from bootfleet.settings import get_settings

    db = get_database()
    db.ensure_migrated()
    started = time.perf_counter()
    seed(db, args.nodes)
    with db.transaction() as tx:
        events = tx.scalar("SELECT count(*) FROM event")
    print(f"seeded {args.nodes} nodes and {events} events in {time.perf_counter() - started:.1f} s")

    for label, dry_run in (("dry run", True), ("run", False), ("second run", False)):
        settings = dataclasses.replace(get_settings(), cleanup_cap=args.cap)
        started = time.perf_counter()
        summary = Cleanup(db, settings, dry_run=dry_run).run()
        took = time.perf_counter() - started
        counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items())) or "nothing to do"
        print(f"{label:11} {took:6.1f} s  {counts}; errors {len(summary['errors'])}")
    with db.transaction() as tx:
        left = tx.all("SELECT stage, count(*) AS n FROM node GROUP BY stage ORDER BY stage")
        events = tx.scalar("SELECT count(*) FROM event")
    print("after:", ", ".join(f"{r['stage']} {r['n']}" for r in left), f"; events {events}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
