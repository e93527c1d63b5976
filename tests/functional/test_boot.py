"""boot through functions-framework's test client, on a real PostgreSQL."""

import os

import pytest
from support.helpers import make_node, make_profile, snapshot, token_from_script

import bootfleet.db as dbmod


def events_of(database, node_id):
    with database.transaction() as tx:
        return tx.all("SELECT stage, kind, source, message FROM event WHERE node_id = :id AND kind = 'stage'"
                      " ORDER BY id", id=node_id)


def test_chainloader_chains_with_every_ipxe_setting(boot):
    resp = boot.get("/boot.ipxe", base_url="http://boot.example:8080")
    assert resp.status_code == 200
    assert resp.content_type == "text/plain; charset=utf-8"
    script = resp.get_data(as_text=True)
    assert script.startswith("#!ipxe\n")
    assert "dhcp || goto dhcp_failed" in script
    for var in ("${netX/mac}", "${uuid}", "${serial", "${hostname", "${buildarch}", "${platform}"):
        assert var in script
    assert "chain --autofree http://boot.example:8080/boot/ipxe?mac=${netX/mac}" in script
    # netX is the NIC iPXE opened last, the one that got the address (iPXE src/net/netdev_settings.c:365-380);
    # net0 is the first NIC, wrong on a machine that booted from its second.
    assert "net0" not in script


@pytest.mark.parametrize("mac_form", ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "52:54:00:12:34:56".upper()])
def test_node_script_for_each_mac_form(boot, config, admin, clean_db, mac_form):
    make_profile(config, admin)
    node = make_node(config, admin, mac="52:54:00:12:34:56", profile="worker", hostname="n1", labels={"rack": "r1"})
    resp = boot.get(f"/ipxe?mac={mac_form}", base_url="http://10.0.2.100")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    script = resp.get_data(as_text=True)
    token = token_from_script(script)
    assert "kernel http://10.0.2.100/images/vmlinuz console=ttyS0 " in script
    assert f"cfg=http://10.0.2.100/config/nodes/{node['id']}/user-data?token={token}" in script
    assert f"st=http://10.0.2.100/status/nodes/{node['id']}/progress?token={token}" in script
    assert "initrd http://10.0.2.100/images/initrd.img" in script
    assert "\nboot || goto failed\n" in script
    stages = [e["stage"] for e in events_of(clean_db, node["id"])]
    assert stages == ["registered", "booting"]


def test_repeated_boot_requests_do_not_repeat_the_boot_event(boot, config, admin, clean_db):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    for _ in range(3):
        assert boot.get("/ipxe?mac=52:54:00:00:00:01").status_code == 200
    assert [e["stage"] for e in events_of(clean_db, node["id"])] == ["registered", "booting"]


def test_node_found_by_smbios_uuid_when_mac_unknown(boot, config, admin):
    make_profile(config, admin)
    make_node(config, admin, profile="worker", uuid="4c4c4544-0042-3510-8052-b4c04f4e4b31")
    resp = boot.get("/ipxe?mac=02:00:00:00:00:09&uuid=4C4C4544-0042-3510-8052-B4C04F4E4B31")
    assert "kernel " in resp.get_data(as_text=True)


def test_profile_chosen_by_label_selectors_most_specific_wins(boot, config, admin):
    make_profile(config, admin, name="generic", kernel="generic-k", selectors={"role": "worker"})
    make_profile(config, admin, name="gpu", kernel="gpu-k", selectors={"role": "worker", "gpu": "yes"})
    make_node(config, admin, labels={"role": "worker", "gpu": "yes", "rack": "r1"})
    assert "/images/gpu-k " in boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)


def test_unknown_node_without_discovery_gets_a_retry_script(boot, clean_db):
    before = snapshot(clean_db)
    resp = boot.get("/ipxe?mac=52:54:00:99:99:99")
    script = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert "no boot script for this machine" in script
    assert "sleep 5" in script and "chain --autofree" in script and "mac=52%3A54%3A00%3A99%3A99%3A99" in script
    after = snapshot(clean_db)  # no node: the attempt is only remembered (bootfleet node unknown), with one event
    assert [(m["mac"], m["attempts"]) for m in after.pop("unknown_machine")] == [("52:54:00:99:99:99", 1)]
    assert [e["kind"] for e in after.pop("event")] == ["unknown-boot"]
    assert after == {k: v for k, v in before.items() if k not in ("unknown_machine", "event")}


def test_unknown_node_registered_with_discovery_profile(boot, config, admin, clean_db, settings):
    make_profile(config, admin, name="discovery", kernel="discovery-k", args="console=ttyS0",
                 config_format="none", config_template="")
    settings(discovery_profile="discovery")
    resp = boot.get("/ipxe?mac=52:54:00:99:99:98&uuid=4c4c4544-0042-3510-8052-b4c04f4e4b32&serial=SN%20123")
    assert "/images/discovery-k" in resp.get_data(as_text=True)
    nodes = config.get("/api/v1/nodes?mac=52:54:00:99:99:98", headers=admin).json["items"]
    assert len(nodes) == 1
    assert nodes[0]["stage"] == "booting" and nodes[0]["uuid"] == "4c4c4544-0042-3510-8052-b4c04f4e4b32"
    assert nodes[0]["serial"] == "SN 123"


def test_ready_node_boots_local_disk_until_reinstall(boot, config, status, admin, clean_db):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    assert status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "ready"}).status_code == 200
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    assert "sanboot --no-describe --drive 0x80" in script and "kernel" not in script
    assert [e["stage"] for e in events_of(clean_db, node["id"])] == ["registered", "booting", "ready"]

    resp = config.post(f"/api/v1/nodes/{node['id']}/reinstall", headers=admin)
    assert resp.json["stage"] == "registered" and resp.json["token_version"] == 3  # 2 was the install
    # The old token is revoked by the reinstall.
    assert status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"}).status_code == 403
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    assert "kernel " in script and token_from_script(script) != token


def test_install_restarts_when_a_configuring_node_boots_again(boot, config, status, admin, clean_db):
    make_profile(config, admin)
    node = make_node(config, admin, profile="worker")
    token = token_from_script(boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True))
    status.post(f"/nodes/{node['id']}/progress?token={token}", json={"stage": "installing"})
    boot.get("/ipxe?mac=52:54:00:00:00:01")
    events = events_of(clean_db, node["id"])
    assert [e["stage"] for e in events] == ["registered", "booting", "installing", "booting"]
    assert "install restarted; was installing" in events[-1]["message"]


def test_node_without_profile_gets_a_clear_retry(boot, config, admin):
    make_node(config, admin)
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    assert "has no profile" in script and "kernel" not in script


def test_database_down_answers_a_retry_script(boot, settings):
    settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    dbmod.reset_database()
    try:
        resp = boot.get("/ipxe?mac=52:54:00:00:00:01")
    finally:
        settings(database_url=os.environ["BOOTFLEET_TEST_DATABASE_URL"])
        dbmod.reset_database()
    assert resp.status_code == 200
    script = resp.get_data(as_text=True)
    assert script.startswith("#!ipxe") and "cannot reach its database" in script
    assert "sleep 5" in script and "chain --autofree" in script


@pytest.mark.parametrize(
    "query,needle",
    [
        ("mac=zz:zz", "mac"),
        ("mac=52:54:00:00:00:01%0Aimgfetch", "mac"),
        ("mac=${net0/mac}", "mac"),
        ("mac=52:54:00:00:00:01&hostname=a%0Ab", "hostname"),
        ("mac=52:54:00:00:00:01&hostname=${evil}", "hostname"),
        ("mac=52:54:00:00:00:01&uuid=nope", "uuid"),
        ("mac=52:54:00:00:00:01&serial=a;reboot", "serial"),
        ("mac=52:54:00:00:00:01&arch=x86%0A64", "arch"),
        ("", "mac"),
    ],
)
def test_bad_boot_input_is_a_clear_400_and_changes_nothing(boot, config, admin, clean_db, query, needle):
    make_profile(config, admin)
    make_node(config, admin, profile="worker")
    before = snapshot(clean_db)
    resp = boot.get(f"/ipxe?{query}")
    assert resp.status_code == 400
    assert resp.content_type.startswith("text/plain")
    assert needle in resp.get_data(as_text=True)
    assert snapshot(clean_db) == before


def test_unknown_boot_path_is_404_text(boot):
    resp = boot.get("/nope")
    assert resp.status_code == 404 and "no such endpoint" in resp.get_data(as_text=True)
