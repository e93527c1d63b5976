#!/usr/bin/env python3
"""Render bootfleet's nginx config from infra/nginx/*.j2.

Self-hosted (nginx in front of gunicorn serving the router), a site for conf.d/:

    render.py --upstream http://127.0.0.1:8080 --server-name boot.example.com \\
        --cert /etc/bootfleet/tls/fullchain.pem --key /etc/bootfleet/tls/privkey.pem \\
        --static-root /opt/bootfleet/static --images-root /var/lib/bootfleet/images \\
        --output /etc/nginx/conf.d/bootfleet.conf

Cloud gateway (one Code Engine app per function; what the container does when
FUNCTION_TARGET=gateway), a whole nginx.conf:

    render.py --standalone --mode functions --http-port 8080 --runtime-dir /tmp/nginx \\
        --static-root /app/static   # upstreams from BOOTFLEET_UPSTREAM_<FUNCTION>

Needs only jinja2. Exits 2 with a message naming the bad option.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import jinja2

HERE = Path(__file__).resolve().parent
# The same five as bootfleet.web.router.FUNCTIONS (tests/infra/test_infra_nginx.py checks).
FUNCTIONS = ("boot", "config", "status", "dns", "cleanup")
# What nodes fetch, kept on plain HTTP next to HTTPS.
NODE_FUNCTIONS = ("boot", "config", "status")
# Functions mode: the hops between a client and this gateway that are Code Engine's own, skipped
# (right to left) in X-Forwarded-For to find the client. What IBM's and Knative's documents show
# an app receiving (docs/security.md, "The client's address through Code Engine"):
#   172.30.0.0/16  Code Engine's Istio ingress and Knative activator pods, e.g.
#                  X-Forwarded-For=[172.30.136.209, 172.30.48.203, 172.30.167.171]
#                  (ibm-cloud-docs/codeengine subscription-cron.md, the app's printed headers);
#   127.0.0.0/8    the pod's own sidecars: [172.30.208.213, 127.0.0.6, 127.0.0.6]
#                  (subscription-kafka.md), "10.128.0.7, 127.0.0.1, 127.0.0.1" (knative/serving#3112);
#   10.128.0.0/14  the cluster network of that Knative report (OpenShift's default);
#   ::1/128        loopback over IPv6.
TRUSTED_HOPS = ("172.30.0.0/16", "127.0.0.0/8", "10.128.0.0/14", "::1/128")


class RenderError(ValueError):
    """An option that cannot make a working config."""


def parse_upstream(name: str, url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RenderError(f"{name}: expected http://host[:port] or https://host[:port], got {url!r}")
    if parsed.path not in ("", "/") or parsed.query or parsed.username:
        raise RenderError(f"{name}: give the upstream's origin only (no path, query or user), got {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    host = parsed.hostname if ":" not in parsed.hostname else f"[{parsed.hostname}]"
    authority = host if parsed.port in (None, 443 if parsed.scheme == "https" else 80) else f"{host}:{port}"
    return {"scheme": parsed.scheme, "host": host, "port": port, "authority": authority}


def body_size(raw: str) -> str:
    """nginx's size syntax from a byte count (BOOTFLEET_MAX_BODY_BYTES) or a size like 1m."""
    raw = raw.strip().lower()
    if raw.isdigit():
        value = int(raw)
        for unit, factor in (("m", 1024 * 1024), ("k", 1024)):
            if value and value % factor == 0:
                return f"{value // factor}{unit}"
        return str(value)
    if raw[:-1].isdigit() and raw[-1] in "km":
        return raw
    raise RenderError(f"--max-body: expected bytes (1048576) or a size like 1m or 512k, got {raw!r}")


def trusted_hops(given: list[str], env: dict[str, str]) -> list[str]:
    """The CIDRs of --trusted-hop, else $BOOTFLEET_GATEWAY_TRUSTED_HOPS (commas or spaces), else TRUSTED_HOPS."""
    items = [part for item in given for part in item.replace(",", " ").split()]
    if not given:
        raw = env.get("BOOTFLEET_GATEWAY_TRUSTED_HOPS")
        items = raw.replace(",", " ").split() if raw is not None and raw.strip() else list(TRUSTED_HOPS)
    hops = []
    for item in items:
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise RenderError(f"trusted hop: expected a CIDR such as 172.30.0.0/16, got {item!r}") from None
        if network.prefixlen == 0:
            raise RenderError(f"trusted hop {item!r} trusts every address: any client could then choose its own"
                              " address with X-Forwarded-For; name Code Engine's hop ranges only")
        hops.append(str(network))
    return list(dict.fromkeys(hops))


def build_context(args: argparse.Namespace, env: dict[str, str]) -> dict:
    if bool(args.cert) != bool(args.key):
        raise RenderError("--cert and --key go together: give both for HTTPS, or neither")
    if args.mode == "router":
        url = args.upstream or env.get("BOOTFLEET_UPSTREAM") or "http://127.0.0.1:8080"
        router = {"name": "bootfleet_router", **parse_upstream("--upstream", url)}
        upstreams = [router]
        routes = [{"name": name, "upstream": router} for name in FUNCTIONS]
    else:
        given = {}
        for item in args.function_upstream:
            name, sep, url = item.partition("=")
            if not sep or name not in FUNCTIONS:
                raise RenderError(f"--function-upstream: expected NAME=URL with NAME one of {', '.join(FUNCTIONS)}, got {item!r}")
            given[name] = url
        upstreams, routes = [], []
        for name in FUNCTIONS:
            url = given.get(name) or env.get(f"BOOTFLEET_UPSTREAM_{name.upper()}") or args.upstream or env.get("BOOTFLEET_UPSTREAM")
            if not url:
                raise RenderError(
                    f"no upstream for {name}: give --function-upstream {name}=URL or set BOOTFLEET_UPSTREAM_{name.upper()}"
                )
            upstream = {"name": f"bootfleet_{name}", **parse_upstream(f"upstream for {name}", url)}
            upstreams.append(upstream)
            routes.append({"name": name, "upstream": upstream})
    for option in ("static_root", "images_root"):
        value = getattr(args, option)
        if value and not Path(value).is_absolute():
            raise RenderError(f"--{option.replace('_', '-')}: nginx needs an absolute path, got {value!r}")
    https_port = args.https_port
    rate = args.boot_rate if args.boot_rate is not None else env.get("BOOTFLEET_BOOT_RATE_LIMIT") or "20"
    if not str(rate).isascii() or not str(rate).isdigit():
        raise RenderError(f"--boot-rate: expected requests per second per client (a whole number), got {rate!r}")
    gateway_secret = env.get("BOOTFLEET_GATEWAY_SECRET") or ""
    if args.mode == "functions" and not gateway_secret:
        raise RenderError("functions mode needs BOOTFLEET_GATEWAY_SECRET (the same value the functions have):"
                          " it is how they know a request came through this gateway (docs/security.md)")
    if gateway_secret and not gateway_secret.replace("-", "").replace("_", "").isalnum():
        raise RenderError("BOOTFLEET_GATEWAY_SECRET: use letters, digits, - and _ only (openssl rand -hex 32)")
    return {
        "trusted_hops": trusted_hops(args.trusted_hop, env),
        "boot_rate": int(rate),
        "gateway_secret": gateway_secret,
        "mode": args.mode,
        "upstreams": upstreams,
        "routes": routes,
        "function_names": FUNCTIONS,
        "node_functions": NODE_FUNCTIONS,
        "listen_address": f"{args.listen}:" if args.listen else "",
        "http_port": args.http_port,
        "https_port": https_port,
        "https_suffix": "" if https_port == 443 else f":{https_port}",
        "tls": {"cert": args.cert, "key": args.key} if args.cert else None,
        "server_name": args.server_name,
        "static_root": args.static_root.rstrip("/") if args.static_root else None,
        "images_root": args.images_root.rstrip("/") if args.images_root else None,
        "max_body": body_size(args.max_body or env.get("BOOTFLEET_MAX_BODY_BYTES") or "1048576"),
        "timeouts": {
            "connect": args.connect_timeout,
            "read": args.read_timeout,
            "send": args.send_timeout,
            "client": args.client_timeout,
            "keepalive": args.keepalive_timeout,
        },
        "access_log": args.access_log or ("/dev/stdout" if args.standalone else "/var/log/nginx/bootfleet.access.log"),
        "ca_bundle": args.ca_bundle,
        # standalone only
        "user": args.user,
        "worker_processes": args.worker_processes,
        "runtime_dir": args.runtime_dir.rstrip("/"),
        "error_log": args.error_log,
        "mime_types": args.mime_types,
    }


def render(context: dict, standalone: bool) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = env.get_template("nginx.conf.j2" if standalone else "bootfleet.conf.j2").render(context)
    # Blank-line runs left by the template's conditionals.
    lines, blank = [], False
    for line in text.splitlines():
        line = line.rstrip()
        if not line and blank:
            continue
        blank = not line
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("router", "functions"), default="router",
                   help="router: one upstream serving every prefix (self-hosted); functions: one upstream per function (cloud)")
    p.add_argument("--upstream", help="router mode: the router's URL (default $BOOTFLEET_UPSTREAM or http://127.0.0.1:8080); "
                   "functions mode: the URL for functions not given otherwise")
    p.add_argument("--function-upstream", action="append", default=[], metavar="NAME=URL",
                   help="functions mode: one function's URL (default $BOOTFLEET_UPSTREAM_<NAME>)")
    p.add_argument("--listen", default="", help="address to listen on (default: all)")
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--cert", help="TLS certificate (chain) file: turns on HTTPS")
    p.add_argument("--key", help="TLS private key file")
    p.add_argument("--server-name", default="_")
    p.add_argument("--static-root", help="serve the dashboard from this folder (the repository's static/)")
    p.add_argument("--images-root", help="serve /images/ from this folder (BOOTFLEET_IMAGES_DIR)")
    p.add_argument("--max-body", help="largest request body (default $BOOTFLEET_MAX_BODY_BYTES or 1m)")
    p.add_argument("--connect-timeout", type=int, default=5, help="seconds to connect to a function")
    p.add_argument("--read-timeout", type=int, default=60, help="seconds a function may take to answer")
    p.add_argument("--send-timeout", type=int, default=60, help="seconds between two writes to a client or function")
    p.add_argument("--client-timeout", type=int, default=15, help="seconds a client may take to send headers or body")
    p.add_argument("--keepalive-timeout", type=int, default=65)
    p.add_argument("--access-log", help="access log (JSON lines; default /var/log/nginx/bootfleet.access.log, "
                   "or /dev/stdout with --standalone); 'off' for none")
    p.add_argument("--boot-rate", type=int, help="/boot/ requests per second per client address; more get 429 "
                   "(default $BOOTFLEET_BOOT_RATE_LIMIT or 20; 0: no limit)")
    p.add_argument("--trusted-hop", action="append", default=[], metavar="CIDR",
                   help="functions mode: a range of Code Engine's own hops, skipped from the right of X-Forwarded-For"
                   " to find the client; may repeat (default $BOOTFLEET_GATEWAY_TRUSTED_HOPS, commas or spaces, or "
                   + " ".join(TRUSTED_HOPS) + ")")
    p.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt", help="CAs trusted for https upstreams")
    p.add_argument("--standalone", action="store_true", help="a whole nginx.conf rather than a site for conf.d/")
    p.add_argument("--runtime-dir", default="/tmp/nginx", help="standalone: pid and temp files")
    p.add_argument("--user", help="standalone: user for worker processes (only when started as root)")
    p.add_argument("--worker-processes", default="auto")
    p.add_argument("--error-log", default="stderr")
    p.add_argument("--mime-types", default="/etc/nginx/mime.types")
    p.add_argument("--output", help="write here instead of standard output")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        text = render(build_context(args, dict(os.environ)), args.standalone)
    except RenderError as e:
        p.error(str(e))
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
