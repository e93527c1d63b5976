"""The example profiles of examples/profiles/ (issue 25 item 3, docs/installers.md), as an
operator uses them: `bootfleet apply -f` against a running server, a node that boots each,
and `bootfleet node script NODE [--config]` for what the machine would get. Each rendered
config is parsed and checked by its format's own tool:
- Ubuntu autoinstall: cloud-init's schema module (cloudinit/config/schema.py) from Debian's
  cloud-init package (tests/support/cloudinit.py), strict, on the live system's cloud-config
  and on the installed system's (autoinstall's `user-data`);
- Fedora CoreOS: ignition-validate from Debian's `ignition` package (Ignition's own parser
  and validator of the spec);
- Debian preseed: debconf-set-selections --checkonly (debconf, on every Debian system).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests
import yaml
from support import ADMIN, ROOT, cloudinit
from support.helpers import user_cli

EXAMPLES = ROOT / "examples" / "profiles"


def run(srv, *args, cwd):
    return user_cli(srv, *args, cwd=cwd).stdout


def booted(srv, tmp_path, example: str, mac: str) -> tuple[str, str, dict]:
    """Apply the example, make a node that boots its profile, and boot it (its install is open):
    (script, config, node) as `node script` shows them."""
    run(srv, "apply", "-f", str(EXAMPLES / f"{example}.yaml"), "--yes", cwd=tmp_path)
    node = json.loads(run(srv, "node", "create", "--mac", mac, "--hostname", "site-7", "--profile", example,
                          "--json", cwd=tmp_path))
    assert "kernel" in requests.get(f"{srv.url}/boot/ipxe?mac={mac}", timeout=30).text
    return (run(srv, "node", "script", "site-7", cwd=tmp_path), run(srv, "node", "script", "site-7", "--config",
                                                                        cwd=tmp_path), node)


def test_every_example_is_a_fleet_file_of_profiles():
    names = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert names == ["debian-preseed", "fedora-coreos", "ubuntu-autoinstall"]
    for path in EXAMPLES.glob("*.yaml"):
        fleet = yaml.safe_load(path.read_text())
        assert [p["name"] for p in fleet["profiles"]] == [path.stem]


def test_ubuntu_autoinstall_renders_a_cloud_config_cloud_init_accepts(srv, clean_db, tmp_path):
    cloudinit.load()
    from cloudinit.config import schema

    script, config, node = booted(srv, tmp_path, "ubuntu-autoinstall", "52:54:00:00:28:01")
    assert f"url={srv.url}/images/ubuntu/24.04/ubuntu-24.04-live-server-amd64.iso" in script
    assert f"ds=nocloud-net;s={srv.url}/config/nodes/{node['id']}/t/" in script
    assert config.startswith("#cloud-config\n")
    cloud_config = yaml.safe_load(config)
    everything = schema.get_schema()
    schema.validate_cloudconfig_schema(cloud_config, schema=everything, strict=True)
    installed = cloud_config["autoinstall"]["user-data"]
    schema.validate_cloudconfig_schema(installed, schema=everything, strict=True)
    status_url = cloud_config["autoinstall"]["reporting"]["bootfleet"]["endpoint"]
    assert status_url.startswith(f"{srv.url}/status/nodes/{node['id']}/progress?token=")
    assert installed["reporting"]["bootfleet"] == {"type": "webhook", "endpoint": status_url}
    # The late-command is a command list: curl posting `rebooting` to the node's status URL.
    late = cloud_config["autoinstall"]["late-commands"][0]
    assert late[0] == "curl" and late[-1] == status_url and json.loads(late[-2])["stage"] == "rebooting"


def test_fedora_coreos_renders_an_ignition_config_ignition_validates(srv, clean_db, tmp_path):
    from e2e import ipxe_debian13

    script, config, node = booted(srv, tmp_path, "fedora-coreos", "52:54:00:00:28:02")
    assert f"coreos.live.rootfs_url={srv.url}/images/fcos/fedora-coreos-live-rootfs.x86_64.img" in script
    assert f"coreos.inst.ignition_url={srv.url}/config/nodes/{node['id']}/ignition?token=" in script
    ignition = json.loads(config)
    try:
        validate = ipxe_debian13.package_dir(cloudinit.CACHE, "ignition") / "usr" / "bin" / "ignition-validate"
    except ipxe_debian13.IpxeUnavailableError as e:
        pytest.skip(f"Debian's ignition package: {e}")
    (tmp_path / "config.ign").write_text(config)
    checked = subprocess.run([str(validate), str(tmp_path / "config.ign")], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # And a broken one is refused by the same tool (the check checks).
    (tmp_path / "broken.ign").write_text(json.dumps({**ignition, "storage": {"files": [{"path": "relative"}]}}))
    refused = subprocess.run([str(validate), str(tmp_path / "broken.ign")], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "path not absolute" in refused.stdout + refused.stderr
    units = {u["name"]: u for u in ignition["systemd"]["units"]}
    installing = units["bootfleet-installing.service"]["contents"]
    assert "Before=coreos-installer.service" in installing and "WantedBy=coreos-installer.service" in installing
    status_url = re.search(r'"(http://[^"]+/progress\?token=[^"]+)"', installing).group(1)
    assert status_url.startswith(f"{srv.url}/status/nodes/{node['id']}/progress")
    # What the unit's curl posts moves the node, and the reboot that follows boots the disk.
    body = json.loads(re.search(r"-d \"(.*?)\" \"http", installing).group(1).replace('\\"', '"'))
    assert requests.post(status_url, json=body, timeout=30).json()["stage"] == "installing"
    again = requests.get(f"{srv.url}/boot/ipxe?mac=52:54:00:00:28:02", timeout=30).text
    assert "booting from the local disk" in again
    assert requests.get(f"{srv.url}/config/api/v1/nodes/{node['id']}", headers=ADMIN,
                        timeout=30).json()["stage"] == "rebooting"


def test_debian_preseed_renders_a_preseed_debconf_reads(srv, clean_db, tmp_path):
    script, config, node = booted(srv, tmp_path, "debian-preseed", "52:54:00:00:28:03")
    assert f"url={srv.url}/config/nodes/{node['id']}/t/" in script and "user-data" in script
    lines = [line for line in config.splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[a-z-]+ \S+ (string|boolean|select|multiselect|password|note)( .*)?", line)
               for line in lines), lines
    early = next(line for line in lines if line.startswith("d-i preseed/early_command"))
    assert f"'{srv.url}/status/nodes/{node['id']}/progress?token=" in early
    if shutil.which("debconf-set-selections") is None:
        pytest.skip("debconf-set-selections is not on this machine")
    (tmp_path / "preseed.cfg").write_text(config)
    checked = subprocess.run(["debconf-set-selections", "--checkonly", str(tmp_path / "preseed.cfg")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stderr, checked.stderr
    # The early_command's form post, as busybox wget sends it, moves the node.
    url = re.search(r"'(http://[^']+)'", early).group(1)
    answer = requests.post(url, data={"stage": "installing", "message": "preseed early_command"}, timeout=30)
    assert answer.json()["stage"] == "installing"
