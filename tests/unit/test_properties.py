"""Property tests (hypothesis): no accepted input adds a line or a command to an iPXE
script, and no printed value changes the structure of a rendered config.

The iPXE side is checked against a parser that follows iPXE's own source
(src/image/script.c: lines; src/core/exec.c: words and command terminators;
src/core/settings.c: `${...}` expansion), so "accepted" means "iPXE runs it as meant".
"""

from __future__ import annotations

import json
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootfleet.boot import ipxe
from bootfleet.boot.render import node_context, render_config
from bootfleet.errors import ValidationError
from bootfleet.validation import (
    check_hostname,
    check_image_ref,
    check_ip,
    check_labels,
    check_safe_text,
    check_serial,
    is_uuid,
    normalize_mac,
    normalize_uuid,
)

IPXE_SPACE = " \t\n\v\f\r"
PROFILE = {"name": "p", "metadata": {}, "config_format": "cloud-init"}
NODE = {"id": "0b7f4a8e-0000-4000-8000-000000000001", "hostname": "web-0", "macs": ["52:54:00:00:00:01"],
        "ip": "10.0.0.5", "smbios_uuid": None, "serial": "", "labels": {}, "instance_id": None}
# Text of every kind: control characters, line separators, surrogates, iPXE's own syntax.
NASTY = st.text(alphabet=st.sampled_from(list("ab;|&#${}-\"'\\ \t\n\r\x0b\x0c\x00\x85\u2028\u2029\ud800é:[]*!%@`~"))) \
    | st.text()


def ipxe_lines(script: str) -> list[str]:
    """Lines as iPXE's script.c reads them: split at \\n, a trailing \\r dropped, a trailing \\\\ joins."""
    lines, pending = [], ""
    for raw in script.split("\n"):
        raw = raw[:-1] if raw.endswith("\r") else raw
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        lines.append(pending + raw)
        pending = ""
    return lines


def ipxe_commands(line: str) -> list[list[str]]:
    """Commands as exec.c splits a line: words at isspace(), `||` `&&` `;` end one, `#...` ends the line."""
    words = [w for w in "".join(" " if c in IPXE_SPACE else c for c in line).split(" ") if w]
    commands, current = [], []
    for word in words:
        if word.startswith("#"):
            break
        if word in ("||", "&&", ";"):
            commands.append(current)
            current = []
        else:
            current.append(word)
    commands.append(current)
    return commands


def accepted(check, value):
    try:
        return check(value)
    except ValidationError:
        return None


@given(NASTY)
def test_accepted_kernel_args_reach_the_kernel_as_given(args):
    args = accepted(lambda v: check_safe_text(v, "args"), args)
    if args is None:
        return
    script = ipxe.node_script(NODE["id"], "p", "http://h/vmlinuz", ["http://h/initrd"], args, "http://h/retry", 5)
    lines = ipxe_lines(script)
    assert len(lines) == len(script.split("\n"))  # no line joined or added
    kernel = [line for line in lines if line.startswith("kernel ")]
    assert len(kernel) == 1
    commands = ipxe_commands(kernel[0])
    # exactly: kernel <url> <args...> initrd=<name> || goto failed (the name for UEFI's EFI stub);
    # iPXE joins the words with single spaces
    assert commands == [["kernel", "http://h/vmlinuz", *args.split(), "initrd=initrd"], ["goto", "failed"]]
    assert not any("${" in word for command in commands for word in command)  # nothing to expand


@given(NASTY)
def test_accepted_image_refs_are_one_word(ref):
    ref = accepted(lambda v: check_image_ref(v, "kernel"), ref)
    if ref is None:
        return
    script = ipxe.node_script(NODE["id"], "p", ref, [ref], "", "http://h/retry", 5)
    kernel, initrd = [line for line in ipxe_lines(script) if line.startswith(("kernel ", "initrd "))]
    [(name, plain)] = ipxe._initrd_names([ref])  # the initrd's name, for UEFI's EFI stub
    assert ipxe_commands(kernel) == [["kernel", ref, f"initrd={name}"], ["goto", "failed"]]
    assert ipxe_commands(initrd) == [["initrd", *([] if plain else ["--name", name]), ref], ["goto", "failed"]]


@given(NASTY)
def test_field_checks_accept_only_what_their_pattern_says(text):
    for check in (check_hostname, check_serial, check_ip, normalize_uuid, normalize_mac):
        value = accepted(check, text)
        if value is not None:
            assert value.isprintable() and not any(c in value for c in "\n\r$;{}#|&")
    assert is_uuid(text) == (accepted(normalize_uuid, text) is not None and text == text.strip())


@given(st.binary(min_size=6, max_size=6), st.sampled_from([":", "-", ""]), st.booleans())
def test_every_spelling_of_a_mac_normalises_to_one(raw, sep, upper):
    text = sep.join(f"{b:02x}" for b in raw)
    text = text.upper() if upper else text
    assert normalize_mac(text) == ":".join(f"{b:02x}" for b in raw)


SCALARS = NASTY | st.sampled_from(["true", "null", "~", "1e3", "0x1f", "- x", "a: b", "x #y", "[1]", "{a: 1}", "'q'",
                                   "&anchor", "*alias", "!tag", "|", ">", "%YAML", "@x", "`x", "? k", "yes", "0o17",
                                   "a,b", "x]", "y}", "{z", "a, b"])


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(SCALARS, SCALARS, st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=5), SCALARS, max_size=3))
def test_cloud_config_values_never_change_its_structure(note, other, extra):
    if "\ud800" in note + other:  # a lone surrogate never gets in (json_body refuses it): not a config value
        return
    profile = {**PROFILE, "metadata": {"note": note, "other": other, "extra": extra},
               "config_template": "#cloud-config\nhostname: {{ node.hostname }}\nnote: {{ metadata.note }}\n"
                                  "list:\n  - {{ metadata.other }}\n  - fixed\nurl: {{ status_url }}&stage=ready\n"
                                  "extra: {{ metadata.extra | tojson }}\n"
                                  "flow: [{{ metadata.other }}, {{ metadata.note }}]\nmap: {k: {{ metadata.note }}}\n"}
    if any("\ud800" in k + v for k, v in extra.items()):
        return
    text, _ = render_config(profile, node_context(NODE, profile, None, "http://h", "1.tok"))
    assert text.count("\n") == profile["config_template"].count("\n")
    assert yaml.safe_load(text) == {"hostname": "web-0", "note": note, "list": [other, "fixed"],
                                    "url": f"http://h/status/nodes/{NODE['id']}/progress?token=1.tok&stage=ready",
                                    "extra": extra, "flow": [other, note], "map": {"k": note}}


@settings(deadline=None)
@given(SCALARS, st.lists(SCALARS, max_size=3))
def test_ignition_values_never_change_its_structure(note, items):
    if any("\ud800" in v for v in [note, *items]):
        return
    profile = {**PROFILE, "config_format": "ignition", "metadata": {"note": note, "things": items},
               "config_template": '{"ignition": {"version": "3.4.0"}, "note": "{{ metadata.note }}",\n'
                                  ' "items": {{ metadata.things | tojson }}, "host": "{{ node.hostname }}"}\n'}
    text, _ = render_config(profile, node_context(NODE, profile, None, "http://h", "1.tok"))
    assert text.count("\n") == 2
    assert json.loads(text) == {"ignition": {"version": "3.4.0"}, "note": note, "items": items, "host": "web-0"}


LABEL_VALUES = st.text(alphabet=string.ascii_letters + string.digits + "._:/+=@ -", max_size=30)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["rack", "row", "role"]), LABEL_VALUES, min_size=1))
def test_accepted_node_labels_render_as_themselves(labels):
    labels = accepted(check_labels, labels)
    if labels is None:
        return
    template = "#cloud-config\n" + "".join(f"{k}: {{{{ node.labels.{k} }}}}\n" for k in labels)
    profile = {**PROFILE, "config_template": template}
    text, _ = render_config(profile, node_context({**NODE, "labels": labels}, profile, None, "http://h", "t"))
    assert yaml.safe_load(text) == labels
