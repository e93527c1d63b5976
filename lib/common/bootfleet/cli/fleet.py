"""`bootfleet node import | unknown | adopt` and `bootfleet doctor`."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from email.utils import parsedate_to_datetime

from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

from bootfleet.cli.client import Client, CliError
from bootfleet.cli.config import config_path, connect, target
from bootfleet.cli.output import console, print_json, show
from bootfleet.cli.resources import labels, read_file
from bootfleet.doctor import certificate_check, client_address_check
from bootfleet.settings import Settings

FIELDS = ("mac", "macs", "hostname", "ip", "labels", "profile", "deployment", "uuid", "serial")
PROGRESS_ROWS = 500  # files with more rows than this show a progress bar


def _csv_rows(text: str, path: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "mac" not in [f.strip() for f in reader.fieldnames]:
        raise CliError(f"{path}: a CSV needs a header line naming its columns, with at least mac"
                       f" (columns: {', '.join(FIELDS)})")
    rows = []
    for number, raw in enumerate(reader, 1):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        unknown = [k for k in row if k not in FIELDS]
        if unknown:
            raise CliError(f"{path}: unknown column(s) {', '.join(unknown)}; columns: {', '.join(FIELDS)}")
        node = {k: v for k, v in row.items() if v and k not in ("mac", "macs", "labels")}
        macs = [m for m in (row.get("mac", "") + " " + row.get("macs", "")).replace(";", " ").split() if m]
        if macs:
            node["macs"] = macs
        if row.get("labels"):  # labels: key=value;key=value
            try:
                node["labels"] = labels([p for p in row["labels"].split(";") if p], "labels")
            except CliError as e:
                raise CliError(f"{path}: row {number}: {e}") from None
        rows.append(node)
    return rows


def _json_rows(text: str, path: str) -> list[dict]:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CliError(f"{path}: not JSON ({e}) and not a .csv file") from None
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        data = data["nodes"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CliError(f"{path}: give a JSON list of nodes ([{{\"mac\": ..., \"hostname\": ...}}, ...])")
    rows = []
    for row in data:
        row = dict(row)
        if "mac" in row:
            row["macs"] = [row.pop("mac"), *row.get("macs", [])]
        rows.append(row)
    return rows


def read_rows(path: str) -> list[dict]:
    text = read_file(path, "import")
    is_csv = path.lower().endswith(".csv") or (not text.lstrip().startswith(("[", "{")) and text.strip())
    rows = _csv_rows(text, path) if is_csv else _json_rows(text, path)
    if not rows:
        raise CliError(f"{path}: no nodes in it")
    return rows


def cmd_import(args, settings: Settings) -> None:
    client = connect(args, settings)
    rows = read_rows(args.file)
    body = json.dumps({"nodes": rows}, separators=(",", ":")).encode()
    try:
        if len(rows) <= PROGRESS_ROWS or args.json or not sys.stderr.isatty():  # a bar only on a terminal
            result = client.call("POST", "/config/api/v1/nodes/import", data=body, timeout=300,
                                 params={"update": "true"} if args.update else None)
        else:
            result = _with_progress(client, body, len(rows), args.update)
    except CliError as e:
        if ": 413 " in str(e):  # all or nothing is one request: the server's body limit bounds a file
            raise CliError(f"{e}; {len(rows)} nodes make {len(body)} bytes: import them in smaller files, or raise"
                           " BOOTFLEET_MAX_BODY_BYTES on the server (and its gateway)") from None
        raise
    if args.json:
        print_json(result)
    else:
        print(f"imported {result['imported']} nodes" + (f", updated {result['updated']}" if args.update else ""))


def _with_progress(client: Client, body: bytes, count: int, update: bool = False) -> dict:
    """The upload as a bar, then a spinner while the server checks and inserts every row."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"sending {count} nodes", total=len(body))

        def chunks():
            for start in range(0, len(body), 64 * 1024):
                chunk = body[start:start + 64 * 1024]
                yield chunk
                progress.advance(task, len(chunk))
            progress.update(task, description=f"checking and importing {count} nodes")

        started = time.monotonic()
        result = client.call("POST", "/config/api/v1/nodes/import", data=chunks(), timeout=600,
                             params={"update": "true"} if update else None)
        progress.update(task, description=f"imported {count} nodes in {time.monotonic() - started:.1f} s")
    return result


def cmd_unknown(args, settings: Settings) -> None:
    client = connect(args, settings)
    show(args, client.call("GET", "/config/api/v1/unknown", params={"limit": args.limit, "offset": args.offset}),
         "unknown")


def cmd_adopt(args, settings: Settings) -> None:
    client = connect(args, settings)
    body = {k: getattr(args, k) for k in ("profile", "deployment", "hostname", "ip") if getattr(args, k)}
    if args.label:
        body["labels"] = labels(args.label)
    show(args, client.call("POST", f"/config/api/v1/unknown/{args.mac}/adopt", body))


def cmd_doctor(args, settings: Settings) -> None:
    """The client's checks (config, the gateway, the clocks), then the server's."""
    found = target(args, settings)
    checks = [{"name": "client settings", "ok": True,
               "detail": f"URL {found.url}, admin token from {found.token_from or 'nowhere'}"
                         + ("" if config_path(settings).exists() else f" ({config_path(settings)} not written yet)")}]
    client = Client(found.url, found.token, found.token_from)
    try:
        before = time.time()
        client.call("GET", "/healthz", timeout=10)
        checks.append({"name": "gateway", "ok": True, "detail": f"{found.url} answers /healthz"})
        chain = client.session.get(found.url + "/boot/boot.ipxe", timeout=10)
        checks.append({"name": "boot", "ok": chain.ok and chain.text.startswith("#!ipxe"),
                       "detail": f"/boot/boot.ipxe answers {chain.status_code}"})
        seen = client.session.get(found.url + "/boot/whoami", timeout=10)
        checks.append(client_address_check(seen.json()) if seen.ok else
                      {"name": "client address", "ok": False,
                       "detail": f"/boot/whoami answers {seen.status_code}: a server older than this command?"})
        # the public domain's certificate, as iPXE meets it
        # the CA bundle requests uses here (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE), or the system's
        verify = client.session.merge_environment_settings(found.url, {}, None, None, None)["verify"]
        if certificate := certificate_check(found.url, cafile=verify if isinstance(verify, str) else None):
            checks.append(certificate)
        date = client.last_response.headers.get("Date") if client.last_response else None
        if date:
            skew = parsedate_to_datetime(date).timestamp() - (before + time.time()) / 2
            checks.append({"name": "clock here", "ok": abs(skew) < 5,
                           "detail": f"the server's clock is {skew:+.1f} s from this machine's"})
        checks += client.call("GET", "/config/api/v1/doctor", timeout=60)["checks"]
    except CliError as e:
        checks.append({"name": "server", "ok": False, "detail": str(e)})
    if args.json:
        print_json(checks)
    else:
        out = console()
        for check in checks:
            mark = "[green]ok[/green]  " if check["ok"] else "[red]FAIL[/red]"
            out.print(f"{mark} {check['name']:22} ", end="")
            out.print(check["detail"], markup=False, highlight=False)
    failed = [c["name"] for c in checks if not c["ok"]]
    if failed:
        raise CliError(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
