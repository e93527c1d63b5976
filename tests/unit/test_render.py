"""Rendering without a database: templates in the sandbox, a node's context and config, iPXE scripts."""

import json
import re

import pytest

from bootfleet.boot import ipxe
from bootfleet.boot.render import check_template, node_context, render, render_config
from bootfleet.boot.urls import node_urls
from bootfleet.errors import RenderError, ValidationError

NODE = {"id": "0b7f4a8e-0000-4000-8000-000000000001", "hostname": "web-0", "macs": ["52:54:00:00:00:01"],
        "ip": "10.0.0.5", "smbios_uuid": None, "serial": "", "labels": {"rack": "r1"}, "instance_id": None}
PROFILE = {"name": "worker", "config_format": "cloud-init", "metadata": {"role": "web"},
           "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n"}
BASE = "http://10.0.2.100"


@pytest.mark.parametrize("source,expected", [
    ("{{ node.hostname }}", "web-0"),
    ("{{ node.labels.rack }}-{{ metadata.role }}", "r1-web"),
    ("{{ node.macs | tojson }}", '["52:54:00:00:00:01"]'),
    ("{{ deployment }}", "None"),
    ("line\n", "line\n"),  # a trailing newline is kept
])
def test_templates_render_the_node_context(source, expected):
    context = node_context(NODE, PROFILE, None, BASE, "tok")
    assert render(source, context, "test") == expected


@pytest.mark.parametrize("source,needle", [
    ("{{ node.nope }}", "nope"),  # StrictUndefined: a missing variable fails, never renders empty
    ("{{ missing }}", "missing"),
    ("{{ ''.__class__.__mro__ }}", "__class__"),  # the sandbox refuses attribute escapes
])
def test_templates_fail_loudly(source, needle):
    with pytest.raises(RenderError) as e:
        render(source, node_context(NODE, PROFILE, None, BASE, "tok"), "profile 'worker' args")
    assert e.value.message.startswith("profile 'worker' args: ") and needle in e.value.message


def test_a_syntax_error_is_a_validation_error_naming_the_line():
    with pytest.raises(ValidationError) as e:
        check_template("ok\n{% if %}", "config_template")
    assert e.value.status == 400 and "config_template: template syntax error on line 2" in e.value.message


def test_the_context_carries_the_node_urls_with_its_token():
    context = node_context(NODE, PROFILE, {"id": "d1", "name": "web", "dns_zone": "", "spec": {}}, BASE, "tok")
    urls = node_urls(BASE, NODE["id"], "tok")
    assert context["config_url"] == urls["user_data_url"] == f"{BASE}/config/nodes/{NODE['id']}/user-data?token=tok"
    assert context["cloud_init_url"] == f"{BASE}/config/nodes/{NODE['id']}/t/tok/"
    assert context["status_url"] == f"{BASE}/status/nodes/{NODE['id']}/progress?token=tok"
    assert context["deployment"]["name"] == "web" and context["node"]["mac"] == "52:54:00:00:00:01"
    ignition = node_context(NODE, {**PROFILE, "config_format": "ignition"}, None, BASE, "tok")
    assert ignition["config_url"] == urls["ignition_url"]


def test_config_content_types_and_ignition_must_be_json():
    context = node_context(NODE, PROFILE, None, BASE, "tok")
    assert render_config(PROFILE, context) == ("#cloud-config\nhostname: web-0\n", "text/cloud-config; charset=utf-8")
    ignition = {**PROFILE, "config_format": "ignition", "config_template": '{"ignition": {"version": "3.4.0"}}'}
    body, content_type = render_config(ignition, context)
    assert json.loads(body) == {"ignition": {"version": "3.4.0"}}
    assert content_type == "application/vnd.coreos.ignition+json"
    with pytest.raises(RenderError) as e:
        render_config({**ignition, "config_template": "{not json"}, context)
    assert "the rendered Ignition is not valid JSON" in e.value.message


def test_node_script_lines():
    script = ipxe.node_script("n1", "worker", f"{BASE}/images/vmlinuz", [f"{BASE}/images/a", f"{BASE}/images/b"],
                              "console=ttyS0", f"{BASE}/boot/ipxe?mac=52%3A54", 7)
    lines = script.splitlines()
    assert lines[0] == "#!ipxe"
    # Each initrd is named on the kernel command line (the EFI stub of a kernel an older EFI iPXE boots).
    assert lines[2] == f"kernel {BASE}/images/vmlinuz console=ttyS0 initrd=a initrd=b || goto failed"
    assert lines[3:5] == [f"initrd {BASE}/images/a || goto failed", f"initrd {BASE}/images/b || goto failed"]
    # Names iPXE would give twice, or odd ones, are set explicitly; presigned queries do not count.
    odd = ipxe.node_script("n1", "w", "k", [f"{BASE}/x/initrd.img?X-Amz-Signature=1", f"{BASE}/y/initrd.img",
                                            f"{BASE}/z/%24%7Bx%7D"], "", "r", 7).splitlines()
    assert odd[2] == "kernel k initrd=initrd.img initrd=initrd1 initrd=initrd2 || goto failed"
    assert odd[3:6] == [f"initrd {BASE}/x/initrd.img?X-Amz-Signature=1 || goto failed",
                        f"initrd --name initrd1 {BASE}/y/initrd.img || goto failed",
                        f"initrd --name initrd2 {BASE}/z/%24%7Bx%7D || goto failed"]
    bare = ipxe.node_script("n1", "worker", f"{BASE}/images/vmlinuz", [], "", f"{BASE}/boot/ipxe", 7)
    assert bare.splitlines()[2] == f"kernel {BASE}/images/vmlinuz || goto failed"
    assert lines[5] == "boot || goto failed"
    assert lines[-2:] == ["sleep 7", f"chain --autofree {BASE}/boot/ipxe?mac=52%3A54"]


def test_chainloader_local_boot_and_retry_scripts():
    chain = ipxe.chainloader(BASE, 10)
    assert f"chain --autofree {BASE}/boot/ipxe?{ipxe.CHAIN_QUERY} || goto chain_failed" in chain
    # An address from an earlier script is kept (no second DHCP); a failed fetch configures again.
    lines = chain.splitlines()
    assert lines[2] == "isset ${ip} && goto chain ||" and lines.index(":dhcp") == 3
    assert lines[lines.index(":chain_failed") + 3] == "goto dhcp"
    # A node script that returns (exit) leaves the chainloader too.
    assert lines[lines.index(":chain") + 2] == "exit"
    local = ipxe.local_boot("n1", "ready").splitlines()
    # BIOS: the first hard disk; UEFI: leave iPXE so the firmware boots the next device.
    assert local[2:4] == ["iseq ${platform} efi && goto efi ||", "sanboot --no-describe --drive 0x80 || goto none"]
    assert local[local.index(":efi") + 2] == "exit"
    retry = ipxe.retry("no node is registered", f"{BASE}/boot/ipxe", 30)
    assert retry.splitlines()[1:] == ["echo bootfleet: no node is registered", "echo bootfleet: retrying in 30 s",
                                      "sleep 30", f"chain --autofree {BASE}/boot/ipxe"]
    assert ipxe.script_url(BASE, {"mac": "52:54:00:00:00:01", "uuid": ""}) == f"{BASE}/boot/ipxe?mac=52%3A54%3A00%3A00%3A00%3A01"


@pytest.mark.parametrize("source,needle", [
    ("{{ 9**(9**9) }}", "bits"),  # hung a worker until gunicorn killed it
    ("{{ 'a' * 100000000 }}", "100000000"),  # rendered 100 MB
    ("{{ [1] * 100000000 }}", "100000000"),
    ("{{ 'a'.center(100000000) }}", "larger"),
    ("{{ 'a' | center(100000000) }}", "larger"),
    ("{{ '%100000000s' % 'a' }}", "larger"),
    ("{% set ns = namespace(s='aaaaaaaa') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
     "larger"),
    # range() hands out at most 200,000 items per render (or the time limit comes first on a busy machine)
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "range|longer than"),
    ("{% set l = range(3000) | list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}", "longer than"),
    ("{% for i in range(2000) %}{{ 'x' * 4000 }}{% endfor %}", "output is larger"),
    # issue 26: limits kept while the call runs, and nothing allocated past them
    ("{{ ('a' * 2000000) | wordwrap(1) | length }}", "wordwrap would make"),  # 80 s, then the 400
    ("{{ ('a' * 1000000) | wordwrap(3) | length }}", "longer than"),  # slow, not large: stops in time
    ("{{ '{:>1000000000}'.format(1) }}", "widths of 1000000000"),  # a worker at 1 GB, kept
    ("{{ '{:>{w}}'.format(1, w=9) }}", "from an argument"),
    ("{{ '%1000000000s' % 'a' }}", "widths of 1000000000"),
    ("{{ '%*s' % (9, 'a') }}", "from an argument"),
    ("{{ '%1000000000s' | format('a') }}", "widths of 1000000000"),
    ("{{ ('\t' * 1000).expandtabs(4000000) }}", "str.expandtabs would make"),
    ("{{ 'ab'.replace('', 'x' * 4000000) }}", "str.replace would make"),
    ("{{ 'ab' | replace('', 'x' * 4000000) }}", "filter replace would make"),
    ("{{ ('x' * 4000000).join(['a'] * 1000) }}", "str.join would make"),
    ("{{ (['a'] * 1000) | join('x' * 4000000) }}", "filter join would make"),
    ("{{ ('a\n' * 1000) | indent(4000000) }}", "filter indent would make"),
    ("{{ ('x' * 3000000) + ('y' * 3000000) }}", "'[+]' would make"),
    ("{{ (('x' * 3000000) ~ ('y' * 3000000)) | length }}", "'~' would make"),
    ("{{ ([[1] * 4000] * 1000) | sum(start=[]) | length }}", "numbers only"),
])
def test_templates_cannot_hurt_the_service(source, needle):
    """Each is refused when saved (a 400) and, rendered anyway, is a RenderError (a 500 naming the limit)
    within the time limit."""
    import time

    started = time.monotonic()
    with pytest.raises(ValidationError) as saved:
        check_template(source, "config_template")
    assert saved.value.status == 400 and re.search(needle, saved.value.message)
    with pytest.raises(RenderError) as rendered:
        render(source, node_context(NODE, PROFILE, None, BASE, "tok"), "profile 'worker' config_template")
    assert re.search(needle, rendered.value.message)
    assert time.monotonic() - started < 6


def test_ordinary_arithmetic_and_loops_still_work():
    context = node_context(NODE, PROFILE, None, BASE, "tok")
    assert render("{{ 2**10 }} {{ 'ab' * 3 }} {{ '%05d' % 42 }} {% for i in range(3) %}{{ i }}{% endfor %}",
                  context, "t") == "1024 ababab 00042 012"
