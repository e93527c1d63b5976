"""Template errors before a machine meets them (issue 25 item 4, docs/installers.md): saving a
profile renders its templates for a sample node; `node script` renders the config too;
`doctor` renders every profile for one of its nodes; a config that cannot be rendered at
fetch time fails the node at once. Through the `bootfleet` command against a running server."""

from __future__ import annotations

import json

import requests
from support import ADMIN
from support.helpers import snapshot, token_from_script, user_cli


run = user_cli


def template(tmp_path, text):
    path = tmp_path / "template.j2"
    path.write_text(text)
    return str(path)


def test_saving_a_profile_renders_its_templates_for_a_sample_node(srv, clean_db, tmp_path):
    before = snapshot(clean_db)
    bad = run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--config-format", "cloud-init",
              "--template", template(tmp_path, "#cloud-config\nhostname: {{ node.hostnme }}\n"), cwd=tmp_path, ok=False)
    assert "config_template: rendered for a sample node" in bad.stderr and "'hostnme'" in bad.stderr
    bad = run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--args", "x={{ metadata.site }}",
              cwd=tmp_path, ok=False)
    assert "args: rendered for a sample node" in bad.stderr and "'site'" in bad.stderr
    bad = run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--config-format", "ignition",
              "--template", template(tmp_path, '{"ignition": {"version": "3.4.0"},}'), cwd=tmp_path, ok=False)
    assert "not valid JSON" in bad.stderr
    assert snapshot(clean_db) == before

    # Labels are each node's own: any label a template names reads as a sample value.
    run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--config-format", "cloud-init", "--selector",
        "rack=r1", "--template", template(tmp_path, "#cloud-config\nhostname: {{ node.labels.rack }}-{{"
                                                    " node.labels.row }}\n"), cwd=tmp_path)
    saved = snapshot(clean_db)
    bad = run(srv, "profile", "update", "p", "--args", "{{ nope }}", cwd=tmp_path, ok=False)
    assert "args: rendered for a sample node" in bad.stderr and "'nope' is undefined" in bad.stderr
    assert snapshot(clean_db) == saved


def test_node_script_renders_the_config_too(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--args", "st={{ status_url }}", "--config-format",
        "cloud-init", "--template", template(tmp_path, "#cloud-config\nhostname: {{ node.hostname }}\n"
                                                       "rack: {{ node.labels.rack }}\n"), cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:26:01", "--hostname", "good", "--label", "rack=r7", "--profile",
        "p", cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:26:02", "--hostname", "bare", "--profile", "p", cwd=tmp_path)
    assert run(srv, "node", "script", "good", "--config", cwd=tmp_path).stdout == "#cloud-config\nhostname: good\nrack: r7\n"
    assert run(srv, "node", "script", "good", cwd=tmp_path).stdout.startswith("#!ipxe")
    preview = json.loads(run(srv, "node", "script", "good", "--json", cwd=tmp_path).stdout)
    assert preview["config"] == "#cloud-config\nhostname: good\nrack: r7\n"
    before = snapshot(clean_db)
    bad = run(srv, "node", "script", "bare", cwd=tmp_path, ok=False)
    assert "config cannot render this node's config" in bad.stderr and "'rack'" in bad.stderr
    assert snapshot(clean_db) == before  # a preview changes nothing


def test_doctor_renders_every_profile_for_one_of_its_nodes(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "fine", "--kernel", "k", "--config-format", "cloud-init",
        "--template", template(tmp_path, "#cloud-config\nhostname: {{ node.hostname }}\n"), cwd=tmp_path)
    run(srv, "profile", "create", "--name", "racked", "--kernel", "k", "--selector", "role=db", "--config-format",
        "cloud-init", "--template", template(tmp_path, "#cloud-config\nrack: {{ node.labels.rack }}\n"), cwd=tmp_path)
    run(srv, "node", "create", "--mac", "52:54:00:00:26:03", "--hostname", "db1", "--label", "role=db", cwd=tmp_path)
    result = run(srv, "doctor", "--json", cwd=tmp_path, ok=False)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert checks["templates of fine"] == {"name": "templates of fine", "ok": True,
                                           "detail": "args and config render for a sample node (no node boots it)"}
    racked = checks["templates of racked"]
    assert racked["ok"] is False and racked["detail"].startswith("rendered for node db1: ") and "'rack'" in racked["detail"]


def test_a_render_failure_at_fetch_time_fails_the_node_with_the_reason(srv, clean_db, tmp_path):
    run(srv, "profile", "create", "--name", "p", "--kernel", "k", "--args", "st={{ status_url }}", "--config-format",
        "cloud-init", "--template", template(tmp_path, "#cloud-config\nrack: {{ node.labels.rack }}\n"), cwd=tmp_path)
    node = json.loads(run(srv, "node", "create", "--mac", "52:54:00:00:26:04", "--profile", "p", "--json",
                          cwd=tmp_path).stdout)
    token = token_from_script(requests.get(f"{srv.url}/boot/ipxe?mac=52:54:00:00:26:04", timeout=30).text)
    resp = requests.get(f"{srv.url}/config/nodes/{node['id']}/user-data?token={token}", timeout=30)
    assert resp.status_code == 500 and "'rack'" in resp.json()["error"]
    shown = requests.get(f"{srv.url}/config/api/v1/nodes/{node['id']}", headers=ADMIN, timeout=30).json()
    assert shown["stage"] == "failed"
    assert "its config cannot be rendered" in run(srv, "node", "events", node["id"], cwd=tmp_path).stdout
