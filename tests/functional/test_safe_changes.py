"""Changes an operator cannot get wrong (issue 25 item 5), through the `bootfleet` command
against a running server: labels merge, a profile nodes boot by their labels is not deleted
without --force, hostnames are unique among live nodes, a field can be cleared, and
`node import --update` upserts by MAC."""

from __future__ import annotations

import json

from support.helpers import snapshot, user_cli


run = user_cli


def node(srv, key, cwd):
    return json.loads(run(srv, "node", "get", key, "--json", cwd=cwd).stdout)


def test_labels_merge_unlabel_removes_and_a_file_replaces(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "db", "--kernel", "k", "--selector", "role=db", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:27:01", "--hostname", "n1", "--label", "role=db", "--label",
        "rack=r1", cwd=tmp_path)
    run(srv, "node", "update", "n1", "--label", "rack=r2", "--label", "row=3", cwd=tmp_path)
    assert node(srv, "n1", tmp_path)["labels"] == {"role": "db", "rack": "r2", "row": "3"}  # role kept: still db's
    run(srv, "node", "update", "n1", "--unlabel", "row", "--unlabel", "absent", cwd=tmp_path)
    assert node(srv, "n1", tmp_path)["labels"] == {"role": "db", "rack": "r2"}
    (tmp_path / "labels.txt").write_text("# the rack's sheet\nrole=web\n\nzone=a\n")
    run(srv, "node", "update", "n1", "--labels-from-file", "labels.txt", cwd=tmp_path)
    assert node(srv, "n1", tmp_path)["labels"] == {"role": "web", "zone": "a"}
    before = snapshot(clean_db)
    bad = run(srv, "node", "update", "n1", "--labels-from-file", "labels.txt", "--label", "x=y", cwd=tmp_path, ok=False)
    assert "--labels-from-file replaces every label" in bad.stderr
    bad = run(srv, "node", "update", "n1", "--unlabel", "bad key!", cwd=tmp_path, ok=False)
    assert "400" in bad.stderr and "remove_labels" in bad.stderr
    assert snapshot(clean_db) == before


def test_a_profile_nodes_boot_by_their_labels_is_kept_unless_forced(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "db", "--kernel", "k", "--selector", "role=db", cwd=tmp_path)
    for i in range(1, 4):
        run(srv, "node", "create", "--mac", f"52:54:00:00:27:1{i}", "--hostname", f"db{i}", "--label", "role=db",
            cwd=tmp_path)
    before = snapshot(clean_db)
    bad = run(srv, "profile", "delete", "db", "--yes", cwd=tmp_path, ok=False)
    assert "409" in bad.stderr and "3 node(s) boot by their labels (db1, db2, db3)" in bad.stderr
    assert "--force" in bad.stderr
    assert snapshot(clean_db) == before
    run(srv, "profile", "delete", "db", "--yes", "--force", cwd=tmp_path)
    assert json.loads(run(srv, "profile", "list", "--json", cwd=tmp_path).stdout)["items"] == []


def test_hostnames_are_unique_among_live_nodes(srv, clean_db, tmp_path):
    run(srv, "node", "create", "--mac", "52:54:00:00:27:21", "--hostname", "web1", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:27:22", "--hostname", "web2", cwd=tmp_path)
    before = snapshot(clean_db)
    bad = run(srv, "node", "create", "--mac", "52:54:00:00:27:23", "--hostname", "WEB1", cwd=tmp_path, ok=False)
    assert "409" in bad.stderr and "hostname 'web1' belongs to node" in bad.stderr
    bad = run(srv, "node", "update", "web2", "--hostname", "web1", cwd=tmp_path, ok=False)
    assert "409" in bad.stderr and "unique" in bad.stderr
    (tmp_path / "n.json").write_text(json.dumps([{"mac": "52:54:00:00:27:24", "hostname": "web1"}]))
    bad = run(srv, "node", "import", "n.json", cwd=tmp_path, ok=False)
    assert "row 1: hostname web1 belongs to node" in bad.stderr
    assert snapshot(clean_db) == before
    run(srv, "node", "update", "web1", "--hostname", "web1", cwd=tmp_path)  # its own name: fine
    run(srv, "node", "delete", "web1", "--yes", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:27:23", "--hostname", "web1", cwd=tmp_path)  # free again


def test_a_field_can_be_cleared_from_the_cli(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "p", "--kernel", "k", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:27:31", "--hostname", "c1", "--ip", "10.0.0.5", "--profile", "p",
        cwd=tmp_path)
    node_id = node(srv, "c1", tmp_path)["id"]
    run(srv, "node", "update", "c1", "--clear", "ip", "--clear", "profile", "--clear", "hostname", cwd=tmp_path)
    shown = node(srv, node_id, tmp_path)
    assert (shown["ip"], shown["profile_id"], shown["hostname"]) == (None, None, None)
    bad = run(srv, "node", "update", node_id, "--clear", "ip", "--ip", "10.0.0.6", cwd=tmp_path, ok=False)
    assert "--clear ip" in bad.stderr
    bad = run(srv, "node", "update", node_id, "--clear", "macs", cwd=tmp_path, ok=False)
    assert "invalid choice" in bad.stderr


def test_node_import_update_upserts_by_mac(srv, clean_db, tmp_path):
    run(srv, "node", "create", "--mac", "52:54:00:00:27:41", "--hostname", "old", "--label", "rack=r1", cwd=tmp_path)
    first = node(srv, "old", tmp_path)
    (tmp_path / "fleet.csv").write_text("mac,hostname,ip,labels\n"
                                        "52:54:00:00:27:41,renamed,10.0.0.41,rack=r9\n"
                                        "52:54:00:00:27:42,fresh,10.0.0.42,rack=r9\n")
    before = snapshot(clean_db)
    bad = run(srv, "node", "import", "fleet.csv", cwd=tmp_path, ok=False)  # without --update: refused, as before
    assert "MAC 52:54:00:00:27:41 already belongs to node" in bad.stderr
    assert snapshot(clean_db) == before
    out = run(srv, "node", "import", "fleet.csv", "--update", cwd=tmp_path).stdout
    assert out.strip() == "imported 1 nodes, updated 1"
    updated = node(srv, first["id"], tmp_path)
    assert (updated["hostname"], updated["ip"], updated["labels"]) == ("renamed", "10.0.0.41", {"rack": "r9"})
    assert node(srv, "fresh", tmp_path)["macs"] == ["52:54:00:00:27:42"]
    again = json.loads(run(srv, "node", "import", "fleet.csv", "--update", "--json", cwd=tmp_path).stdout)
    assert again["imported"] == 0 and again["updated"] == 2  # idempotent
