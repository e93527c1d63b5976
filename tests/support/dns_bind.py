"""A real BIND (named) on 127.0.0.1 for the RFC 2136 tests and the benchmark.

Zones `example.test` and `10.in-addr.arpa`, both taking TSIG-signed updates and
transfers with one key; the statistics channel counts UPDATE requests, so a test can
prove a reconcile made no write at all.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from support.server import free_port, stop_process

ZONE = "example.test"
REVERSE_ZONE = "10.in-addr.arpa"
KEY_NAME = "bootfleet-test"

INSTALL_HINT = "install BIND to run the RFC 2136 tests: apt-get install bind9 dnsutils"


def named_binary() -> str | None:
    return shutil.which("named") or next((p for p in ("/usr/sbin/named", "/usr/local/sbin/named")
                                          if os.access(p, os.X_OK)), None)


def _zone_file(origin: str) -> str:
    return (f"$TTL 300\n@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300\n"
            f"@ IN NS ns1.{ZONE}.\n" + ("ns1 IN A 127.0.0.1\n" if origin == ZONE else ""))


class BindServer:
    def __init__(self):
        binary = named_binary()
        if binary is None:
            raise FileNotFoundError(INSTALL_HINT)
        self.dir = Path(tempfile.mkdtemp(prefix="bootfleet-named-"))
        self.port = free_port()
        self.stats_port = free_port()
        self.secret = base64.b64encode(os.urandom(32)).decode()
        zones = ""
        for zone in (ZONE, REVERSE_ZONE):
            (self.dir / f"{zone}.db").write_text(_zone_file(zone))
            zones += (f'zone "{zone}" {{ type primary; file "{self.dir}/{zone}.db";'
                      f' allow-update {{ key "{KEY_NAME}"; }}; allow-transfer {{ key "{KEY_NAME}"; }}; }};\n')
        (self.dir / "named.conf").write_text(
            f'key "{KEY_NAME}" {{ algorithm hmac-sha256; secret "{self.secret}"; }};\n'
            f'options {{ directory "{self.dir}"; listen-on port {self.port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n'
            f' pid-file "{self.dir}/named.pid"; session-keyfile "{self.dir}/session.key";\n'
            f' managed-keys-directory "{self.dir}"; recursion no; dnssec-validation no; notify no; }};\n'
            "controls { };\n"
            f'statistics-channels {{ inet 127.0.0.1 port {self.stats_port} allow {{ 127.0.0.1; }}; }};\n' + zones
        )
        self.log = open(self.dir / "named.log", "w+")
        args = [binary, "-g", "-c", str(self.dir / "named.conf")]
        if os.geteuid() == 0:
            args += ["-u", "root"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"named exited:\n{self.output()}")
            if "running" in self.output():
                try:
                    self.updates()
                    return
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"named not ready after {timeout} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.dir / "named.log").read_text()

    def env(self) -> dict[str, str]:
        """The settings that point bootfleet at this server."""
        return {
            "BOOTFLEET_DNS_PROVIDER": "rfc2136",
            "BOOTFLEET_DNS_SERVER": "127.0.0.1",
            "BOOTFLEET_DNS_PORT": str(self.port),
            "BOOTFLEET_DNS_TSIG_NAME": KEY_NAME,
            "BOOTFLEET_DNS_TSIG_SECRET": self.secret,
            "BOOTFLEET_DNS_TSIG_ALGORITHM": "hmac-sha256",
            "BOOTFLEET_DNS_ZONE": ZONE,
            "BOOTFLEET_DNS_REVERSE_ZONE": REVERSE_ZONE,
        }

    def updates(self) -> int:
        """UPDATE requests the server has received (any outcome), from its statistics channel."""
        stats = requests.get(f"http://127.0.0.1:{self.stats_port}/json/v1/server", timeout=5).json()
        return int(stats["opcodes"].get("UPDATE", 0))

    def resolver(self):
        import dns.resolver

        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = ["127.0.0.1"]
        resolver.port = self.port
        resolver.cache = None
        return resolver

    def lookup(self, name: str, rtype: str) -> list[str]:
        """What a client querying this server gets: values, or [] for no such record."""
        import dns.resolver

        try:
            answer = self.resolver().resolve(name, rtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        return sorted(r.to_text().strip('"') for r in answer.rrset) if answer.rrset else []

    def serial(self, zone: str = ZONE) -> int:
        return int(self.lookup(zone, "SOA")[0].split()[2])

    def nsupdate(self, zone: str, *changes: tuple[str, str, str, str]) -> None:
        """A change made by hand (an operator's nsupdate): ("add"|"delete", name, type, value)."""
        import dns.query
        import dns.rcode
        import dns.tsigkeyring
        import dns.update

        update = dns.update.UpdateMessage(zone, keyring=dns.tsigkeyring.from_text({KEY_NAME: self.secret}),
                                          keyname=KEY_NAME, keyalgorithm="hmac-sha256")
        for action, name, rtype, value in changes:
            if action == "add":
                update.add(name, 300, rtype, value)
            else:
                update.delete(name, rtype, value)
        response = dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=5)
        assert response.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(response.rcode())

    def reset(self) -> None:
        """Back to the empty zones (every name but the apex and ns1 removed), by update."""
        import dns.query
        import dns.tsigkeyring
        import dns.update
        import dns.zone

        keyring = dns.tsigkeyring.from_text({KEY_NAME: self.secret})
        for zone in (ZONE, REVERSE_ZONE):
            xfr = dns.query.xfr("127.0.0.1", zone, port=self.port, keyring=keyring, keyname=KEY_NAME,
                                keyalgorithm="hmac-sha256")
            names = [n for n in dns.zone.from_xfr(xfr).nodes if n.to_text() not in ("@", "ns1")]
            if names:
                update = dns.update.UpdateMessage(zone, keyring=keyring, keyname=KEY_NAME, keyalgorithm="hmac-sha256")
                for name in names:
                    update.delete(name)
                dns.query.tcp(update, "127.0.0.1", port=self.port, timeout=5)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
