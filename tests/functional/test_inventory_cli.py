"""Issue 22 through `bootfleet` against a running `bootfleet serve`: a held node's reasons in
`node get`, and `node override` (with --reason, then --remove)."""

from __future__ import annotations

import json

import requests
from support import ADMIN
from support.helpers import token_from_script, user_cli

INVENTORY = {"cpus": 1, "memory_mib": 512, "disks": [], "nics": [], "firmware": {"mode": "bios"}}


run = user_cli


def test_node_get_lists_why_a_node_is_held_and_override_releases_it(srv, tmp_path, clean_db):
    profile = {"name": "big", "kernel": "k", "args": "st={{ status_url }}", "requirements": {"min_memory_mib": 4096, "min_disks": 1}}
    assert requests.post(srv.url + "/config/api/v1/profiles", json=profile, headers=ADMIN, timeout=30).ok
    run(srv, "node", "create", "--mac", "52:54:00:e2:00:01", "--profile", "big", "--hostname", "small", cwd=tmp_path)
    script = requests.get(srv.url + "/boot/ipxe?mac=52:54:00:e2:00:01", timeout=30).text
    node = json.loads(run(srv, "node", "get", "small", "--json", cwd=tmp_path).stdout)
    resp = requests.post(f"{srv.url}/status/nodes/{node['id']}/inventory?token={token_from_script(script)}",
                         json=INVENTORY, timeout=30)
    assert resp.json()["stage"] == "held"

    shown = run(srv, "node", "get", "small", cwd=tmp_path)
    assert "requirement not met: memory: 512 MiB, at least 4.0 GiB required" in shown.stderr
    assert "requirement not met: disks: 0, at least 1 required" in shown.stderr
    assert "held" in shown.stdout and "inventory" in shown.stdout

    released = json.loads(run(srv, "node", "override", "small", "--reason", "lab", "--json", cwd=tmp_path).stdout)
    assert released["stage"] == "booting" and released["requirements"]["override"] is True
    events = run(srv, "node", "events", "small", cwd=tmp_path).stdout
    assert "requirements overridden by an operator: lab" in events
    again = json.loads(run(srv, "node", "override", "small", "--remove", "--json", cwd=tmp_path).stdout)
    assert again["stage"] == "held" and again["requirements"]["override"] is False


def test_a_profiles_requirements_and_image_are_set_and_changed_from_a_file(srv, tmp_path, clean_db):
    # The CLI's way to give an image profile its requirements and image: the JSON body in a file
    # (`profile create|update --from-file`, as docs/images.md shows; `bootfleet apply -f` too).
    image = {"key": "os/disk.raw.zst", "sha256": "ab" * 32, "size_bytes": 2**30, "disk": {"rule": "largest"}}
    (tmp_path / "os.json").write_text(json.dumps({
        "name": "os", "kernel": "bootfleet-agent/vmlinuz", "initrds": ["bootfleet-agent/initrd.img"],
        "args": "bootfleet.status={{ status_url }}", "requirements": {"min_memory_mib": 2048}, "image": image}))
    run(srv, "profile", "create", "--from-file", "os.json", cwd=tmp_path)
    got = json.loads(run(srv, "profile", "get", "os", "--json", cwd=tmp_path).stdout)
    assert got["requirements"] == {"min_memory_mib": 2048}
    assert got["image"]["key"] == "os/disk.raw.zst" and got["image"]["size_bytes"] == 2**30

    (tmp_path / "change.json").write_text(json.dumps({"requirements": {"min_memory_mib": 4096, "min_disks": 1},
                                                      "image": {**image, "disk": {"rule": "serial", "serial": "S1"}}}))
    run(srv, "profile", "update", "os", "--from-file", "change.json", cwd=tmp_path)
    got = json.loads(run(srv, "profile", "get", "os", "--json", cwd=tmp_path).stdout)
    assert got["requirements"] == {"min_memory_mib": 4096, "min_disks": 1}
    assert got["image"]["disk"] == {"rule": "serial", "serial": "S1"}
