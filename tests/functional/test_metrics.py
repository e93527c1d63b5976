"""/metrics: Prometheus figures behind the admin token, changing as nodes boot; under
gunicorn (bootfleet serve, 2 workers) the workers' figures add up."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families
from support import ADMIN, ADMIN_TOKEN, TOKEN_SECRET
from support.helpers import make_node, make_profile, token_from_script
from support.server import RunningServer

from bootfleet.db import get_database, nodes


def samples(text: str) -> dict[tuple, float]:
    """{(sample name, ((label, value), ...)): value} of an exposition text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(figures: dict, name: str, **labels: str) -> float:
    return figures.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(client, path="/metrics") -> dict:
    resp = client.get(path, headers=ADMIN)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.content_type.startswith("text/plain; version=0.0.4")
    return samples(resp.get_data(as_text=True))


def test_metrics_need_the_admin_token(boot, config, status, dns):
    for client in (boot, config, status, dns):
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert client.get("/metrics", headers=ADMIN).status_code == 200


def test_a_boot_moves_the_figures(boot, config, status, admin, database):
    make_profile(config, admin)
    node = make_node(config, admin, mac="52:54:00:00:00:31", profile="worker", hostname="m1", labels={"rack": "r1"})
    before = scrape(boot)
    assert value(before, "bootfleet_nodes", stage="registered") == 1
    assert value(before, "bootfleet_nodes", stage="booting") == 0

    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:31").get_data(as_text=True))
    assert boot.get("/ipxe?mac=52:54:00:00:00:99").status_code == 200  # unknown: told to retry
    assert status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"}).status_code == 200
    after = scrape(config)  # any function shows the process's figures

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("bootfleet_boot_answers_total", outcome="install") == 1
    assert grew("bootfleet_boot_answers_total", outcome="unknown") == 1
    assert grew("bootfleet_stage_transitions_total", from_stage="registered", stage="booting") == 1
    assert grew("bootfleet_stage_transitions_total", from_stage="booting", stage="installing") == 1
    assert grew("bootfleet_stage_seconds_count", stage="registered") == 1
    assert grew("bootfleet_stage_seconds_count", stage="booting") == 1
    assert grew("bootfleet_stage_seconds_bucket", stage="registered", le="5.0") == 1  # registered for under 5 s
    assert grew("bootfleet_stage_seconds_bucket", stage="registered", le="+Inf") == 1
    assert 0 < grew("bootfleet_request_seconds_sum", function="boot", endpoint="node_script") < 60
    assert grew("bootfleet_requests_total", function="boot", endpoint="node_script", status="200") == 2
    assert grew("bootfleet_request_seconds_count", function="boot", endpoint="node_script") == 2
    assert grew("bootfleet_requests_total", function="status", endpoint="node_progress", status="200") == 1
    assert value(after, "bootfleet_nodes", stage="registered") == 0
    assert value(after, "bootfleet_nodes", stage="installing") == 1
    assert value(after, "bootfleet_database_up") == 1
    assert value(after, "bootfleet_nodes_past_timeout", stage="installing") == 0
    assert value(after, "bootfleet_db_connections_in_use") == 0  # every transaction gave its connection back
    assert value(after, "bootfleet_db_pool_size") == get_database().pool_size

    with database.transaction() as tx:  # two hours in `installing`: past its one-hour timeout
        tx.run("UPDATE node SET stage_changed_at = now() - interval '2 hours' WHERE id = :id", id=node["id"])
    late = scrape(status)
    assert value(late, "bootfleet_nodes_past_timeout", stage="installing") == 1
    assert value(late, "bootfleet_nodes_oldest_stage_seconds", stage="installing") >= 7200


def test_unmatched_paths_and_refusals_are_counted(boot):
    before = scrape(boot)
    assert boot.get("/no-such-path").status_code == 404
    assert boot.get("/ipxe?mac=not-a-mac").status_code == 400
    after = scrape(boot)
    assert value(after, "bootfleet_requests_total", function="boot", endpoint="unmatched", status="404") - \
        value(before, "bootfleet_requests_total", function="boot", endpoint="unmatched", status="404") == 1
    assert value(after, "bootfleet_requests_total", function="boot", endpoint="node_script", status="400") - \
        value(before, "bootfleet_requests_total", function="boot", endpoint="node_script", status="400") == 1


def test_gunicorn_workers_add_up(database, clean_db):
    """bootfleet serve with 2 workers: every boot is counted once, whichever worker answered."""
    with database.transaction() as tx:
        tx.run("INSERT INTO profile (name, kernel, initrds, args) VALUES ('w', 'vmlinuz', '{}', 'console=ttyS0')")
        profile_id = tx.scalar("SELECT id FROM profile WHERE name = 'w'")
        for i in range(20):
            nodes.create(tx, {"macs": [f"52:54:00:00:01:{i:02x}"], "profile_id": profile_id}, "test")
    env = {"BOOTFLEET_ADMIN_TOKEN": ADMIN_TOKEN, "BOOTFLEET_TOKEN_SECRET": TOKEN_SECRET, "PROMETHEUS_MULTIPROC_DIR": None}
    with RunningServer(env=env, workers=2, threads=4) as server:
        for i in range(20):  # a connection each: gunicorn hands them to either worker
            resp = requests.get(f"{server.url}/boot/ipxe?mac=52:54:00:00:01:{i:02x}", timeout=30)
            assert resp.status_code == 200 and "\nkernel " in resp.text


        def scrape_server():  # a new connection each: either worker may answer
            resp = requests.get(f"{server.url}/status/metrics", headers=ADMIN, timeout=30)
            assert resp.status_code == 200
            return samples(resp.text)

        deadline = time.monotonic() + 10  # a worker hands its counts over within a second (metrics.FLUSH_SECONDS)
        while value(figures := scrape_server(), "bootfleet_boot_answers_total", outcome="install") < 20:
            assert time.monotonic() < deadline, figures
            time.sleep(0.2)
        for _ in range(3):  # and then every scrape, from either worker, sees the same sums
            figures = scrape_server()
            assert value(figures, "bootfleet_boot_answers_total", outcome="install") == 20
            assert value(figures, "bootfleet_stage_transitions_total", from_stage="registered", stage="booting") == 20
        assert value(figures, "bootfleet_nodes", stage="booting") == 20
        files = {p.name.rsplit("_", 1)[-1] for p in (server.data / "metrics").glob("counter_*.db")}
        assert len(files) >= 2, files  # both workers wrote their counters
