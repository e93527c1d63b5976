"""iPXE scripts. Every value put in a script was validated at the edge
(validation.py); this module only assembles lines."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlencode, urlsplit

# Settings iPXE fills in when the chainloader asks for the node's script.
# ${netX/mac:uristring} mangles the MAC on older iPXE builds; the plain form is safe.
# netX is the network device opened last, the one `dhcp` configured (iPXE src/net/netdev_settings.c:
# 365-380 redirects "netX" to last_opened_netdev(), src/net/netdevice.c:998-1003, at v1.21.1):
# on a machine with two NICs that booted from the second, net0 is the wrong MAC.
CHAIN_QUERY = (
    "mac=${netX/mac}&uuid=${uuid}&serial=${serial:uristring}&hostname=${hostname:uristring}"
    "&arch=${buildarch}&platform=${platform}"
)

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def chainloader(base_url: str, retry_seconds: int = 10, secret: str | None = None,
                crosscert: str | None = None) -> str:
    """The first script a machine runs: get an address if it has none yet, then ask boot
    for its own script.

    A machine whose first script already configured the network (iPXE's own autoboot, the
    QEMU node's script, an embedded script) keeps its address: a second DHCP costs seconds
    on every boot. A failed fetch configures the network again before it retries. The node
    script returns only when it chose to leave iPXE (`exit`, a ready node under UEFI): then
    the chainloader exits too, so the firmware boots the next device.

    A server bootfleet creates gets its enrolment `secret` in the chain URL (its user data).
    `crosscert`: where iPXE fetches cross-signed root certificates instead of its default,
    http://ca.ipxe.org/auto (the setting is read when a certificate is validated, iPXE
    src/net/validator.c:374 at v2.0.0, so a script can set it).
    """
    query = CHAIN_QUERY + (f"&secret={secret}" if secret else "")
    crosscert_line = f"set crosscert {crosscert}\n" if crosscert else ""
    return f"""#!ipxe
# bootfleet chainloader
{crosscert_line}isset ${{ip}} && goto chain ||
:dhcp
echo bootfleet: configuring the network
dhcp || goto dhcp_failed
:chain
chain --autofree {base_url}/boot/ipxe?{query} || goto chain_failed
exit
:dhcp_failed
echo bootfleet: DHCP failed; retrying in {retry_seconds} s
sleep {retry_seconds}
goto dhcp
:chain_failed
echo bootfleet: could not fetch the node script from {base_url}; retrying in {retry_seconds} s
sleep {retry_seconds}
goto dhcp
"""


def node_script(node_id: str, profile_name: str, kernel_url: str, initrd_urls: list[str], args: str,
                retry_url: str, retry_seconds: int) -> str:
    """Load the profile's kernel and initrds and boot them.

    Each initrd is also named on the kernel command line (`initrd=<name>`): under UEFI, iPXE
    before 1.21.1 (Debian 12's, QEMU's EFI NIC ROM) starts Linux through its EFI stub, which
    finds its initrds only by those arguments; with newer iPXE the stub takes them from iPXE
    directly and ignores the arguments, and a BIOS boot never reads them.
    """
    names = _initrd_names(initrd_urls)
    kernel_args = " ".join(([args] if args else []) + [f"initrd={name}" for name, _ in names])
    lines = [
        "#!ipxe",
        f"echo bootfleet: node {node_id} boots profile {profile_name}",
        f"kernel {kernel_url} {kernel_args}".rstrip() + " || goto failed",
    ]
    lines += [f"initrd {'' if plain else f'--name {name} '}{url} || goto failed"
              for (name, plain), url in zip(names, initrd_urls)]
    lines += [
        "boot || goto failed",
        ":failed",
        f"echo bootfleet: could not load the boot files; retrying in {retry_seconds} s",
        f"sleep {retry_seconds}",
        f"chain --autofree {retry_url}",
        "",
    ]
    return "\n".join(lines)


def _initrd_names(urls: list[str]) -> list[tuple[str, bool]]:
    """The name iPXE gives each initrd (the last segment of its URL's path), and whether that
    name is usable as is; otherwise (odd characters, the same name twice) `initrd<i>`."""
    names, seen = [], set()
    for i, url in enumerate(urls):
        name = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
        plain = bool(_PLAIN_NAME.fullmatch(name)) and name not in seen
        name = name if plain else f"initrd{i}"
        seen.add(name)
        names.append((name, plain))
    return names


def local_boot(node_id: str, stage: str) -> str:
    """The node is installed: boot the first local disk, never the installer again.

    Under BIOS iPXE hands over to the first hard disk (`sanboot --drive 0x80`); under UEFI
    drive numbers mean nothing, so iPXE exits and the firmware boots the next device in its
    boot order (the disk after the network).
    """
    return f"""#!ipxe
echo bootfleet: node {node_id} is {stage}; booting from the local disk
iseq ${{platform}} efi && goto efi ||
sanboot --no-describe --drive 0x80 || goto none
:efi
echo bootfleet: leaving iPXE; the firmware boots the next device
exit
:none
echo bootfleet: no bootable local disk; ask an operator to reinstall node {node_id}
sleep 60
reboot
"""


def retry(message: str, retry_url: str, seconds: int) -> str:
    """Say what is wrong, wait, and ask again (unknown node, database down, ...)."""
    return f"""#!ipxe
echo bootfleet: {message}
echo bootfleet: retrying in {seconds} s
sleep {seconds}
chain --autofree {retry_url}
"""


def script_url(base_url: str, params: dict[str, str]) -> str:
    """The node-script URL again, with only validated parameters."""
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{base_url}/boot/ipxe" + (f"?{query}" if query else "")
