"""`bootfleet serve`: the whole system in one process tree on this machine.

Without BOOTFLEET_DATABASE_URL it starts an embedded PostgreSQL (pgserver)
under .data/pg; it keeps the admin token and token secret in
.data/secrets.json so they survive restarts; applies migrations; adds the demo
profile; writes the client settings (URL, admin token, data dir) where the
`bootfleet` command finds them from any directory (cli/config.py); runs cleanup
on the cloud cron's schedule (BOOTFLEET_CLEANUP_EVERY); then serves the router
with gunicorn.

What it fills in goes into the environment, for gunicorn's workers to inherit;
it is read back, like every setting, through `Settings` (after reset_settings()).
Also `bootfleet migrate`, which prepares the same way.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import threading
from pathlib import Path

import requests

from bootfleet.cli.client import CliError
from bootfleet.cli.config import read_client_config, server_data_dir, write_client_config
from bootfleet.log import redact
from bootfleet.settings import Settings, get_settings, reset_settings

log = logging.getLogger(__name__)

DEMO_PROFILE = {
    "name": "demo",
    "kernel": "vmlinuz",
    "initrds": ["initrd.img"],
    "args": "console=ttyS0 bootfleet.node={{ node.id }} bootfleet.config={{ config_url }} "
    "bootfleet.status={{ status_url }}",
    "config_format": "cloud-init",
    "config_template": "#cloud-config\nhostname: {{ node.hostname }}\n"
    "phone_home:\n  url: {{ status_url }}&stage=ready\n  post: [hostname, instance_id]\n",
    "metadata": {"purpose": "demo"},
}


def data_dir(settings: Settings) -> Path:
    path = Path(settings.data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_secrets(data: Path) -> dict[str, str]:
    """The admin token and token secret for this machine, made once and kept."""
    path = data / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"admin_token": secrets.token_urlsafe(24), "token_secret": secrets.token_urlsafe(32)}
    path.write_text(json.dumps(values, indent=2) + "\n")
    path.chmod(0o600)
    return values


def start_embedded_postgres(data: Path) -> str:
    """Start (or reuse) PostgreSQL under .data/pg; returns its URL."""
    if not os.environ.get("XDG_RUNTIME_DIR"):  # pgserver keeps a lock file there
        run = data / "run"
        run.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(run)
    try:
        import pgserver
    except ImportError:
        sys.exit("bootfleet: no BOOTFLEET_DATABASE_URL and no embedded PostgreSQL: pip install 'bootfleet[local]'")
    print(f"bootfleet: starting the embedded PostgreSQL in {data / 'pg'}", flush=True)
    server = pgserver.get_server(data / "pg", cleanup_mode="stop")
    from bootfleet.cli.pgwatch import watch

    watch(server)  # if it dies, say so and start it again (cli/pgwatch.py)
    return server.get_uri("postgres")


LOCAL_BOOT_NETWORKS = "127.0.0.0/8,::1/128"


def prepare_environment(settings: Settings) -> Settings:
    """Fill in what a local run needs and is not set, in the environment (gunicorn's
    workers inherit it); returns the settings read again."""
    data = data_dir(settings)
    kept = local_secrets(data)
    if not settings.admin_token:
        os.environ["BOOTFLEET_ADMIN_TOKEN"] = kept["admin_token"]
    if not settings.token_secret:
        os.environ["BOOTFLEET_TOKEN_SECRET"] = kept["token_secret"]
    if settings.is_default("images_dir"):
        os.environ["BOOTFLEET_IMAGES_DIR"] = str(data / "images")
    if not settings.database_url:
        os.environ["BOOTFLEET_DATABASE_URL"] = start_embedded_postgres(data)
    if settings.boot_networks is None:
        # A local run trusts machines on this host (the QEMU demo's guests come in through
        # loopback); the container and Terraform trust nothing until told (docs/security.md).
        os.environ["BOOTFLEET_BOOT_NETWORKS"] = LOCAL_BOOT_NETWORKS
    reset_settings()
    settings = get_settings()
    Path(settings.images_dir).mkdir(parents=True, exist_ok=True)
    return settings


def add_demo_profile() -> bool:
    """Create the demo profile if there is none; True if it was created."""
    from bootfleet.db import events, get_database, profiles

    with get_database().transaction() as tx:
        if profiles.find(tx, "demo"):
            return False
        profiles.create(tx, dict(DEMO_PROFILE))
        events.add(tx, "profile", "demo profile created by bootfleet serve", "serve")
    return True


def host_port(host: str, port: int) -> str:
    """host:port as gunicorn's bind and URLs want it: an IPv6 address in brackets ([::]:8080)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_port(host: str, port: int) -> None:
    """A one-line error now, rather than the banner and then gunicorn's `Address already in use`."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CliError(f"port {port} on {host} is in use (another bootfleet serve?); choose another with"
                               f" --port (make run PORT=...)") from None
            raise CliError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def metrics_environment(settings: Settings) -> None:
    """gunicorn's workers add up their metrics through files in PROMETHEUS_MULTIPROC_DIR
    (bootfleet.metrics): set before prometheus_client is first imported, emptied at each start."""
    if not settings.metrics_dir:
        path = data_dir(settings) / "metrics"
        shutil.rmtree(path, ignore_errors=True)  # old files would add stale values
        path.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def cmd_serve(args, settings: Settings) -> None:
    os.environ.setdefault("BOOTFLEET_DB_POOL_SIZE", str(args.threads))  # read back by prepare_environment
    port = settings.port if args.port is None else args.port
    if not 0 < port < 65536:
        raise CliError(f"--port {port}: a port number from 1 to 65535")
    check_port(args.host, port)
    serve(args.host, port, args.workers, args.threads, demo=not args.no_demo, settings=settings,
          cleanup=not args.no_cleanup)


def cmd_migrate(args, settings: Settings) -> None:
    from bootfleet.db import get_database
    from bootfleet.db.migrate import apply_migrations

    if not settings.database_url:  # the database of the server this user runs, from any directory
        saved = read_client_config(settings).get("database_url")
        if saved:
            os.environ["BOOTFLEET_DATABASE_URL"] = saved
        os.environ["BOOTFLEET_DATA_DIR"] = str(server_data_dir(settings))
        reset_settings()
        settings = get_settings()
    prepare_environment(settings)
    applied = apply_migrations(get_database())
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")


class CleanupSchedule:
    """Cleanup every BOOTFLEET_CLEANUP_EVERY seconds, as the cloud's cron subscription runs it:
    a POST to this server's /cleanup/run (the same path, lock and cap), from a thread of
    serve's main process."""

    def __init__(self, url: str, token: str, every: int, path: str = "/cleanup/run"):
        self.url, self.token, self.every, self.path = url, token, every, path
        self.stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._loop, name="bootfleet-cleanup", daemon=True).start()

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            try:
                resp = requests.post(f"{self.url}{self.path}", headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=max(self.every, 60))
                summary = resp.json()
            except (requests.RequestException, ValueError) as e:
                print(f"bootfleet: scheduled cleanup failed: {e}", file=sys.stderr, flush=True)
                continue
            if resp.status_code == 409:  # another run holds the lock: this one is skipped, as in the cloud
                continue
            if resp.status_code >= 400:
                print(f"bootfleet: scheduled cleanup: {resp.status_code} {summary.get('error')}", file=sys.stderr,
                      flush=True)
            elif summary.get("counts") or summary.get("errors"):
                print(f"bootfleet: scheduled cleanup: {summary.get('message') or summary.get('counts')}", flush=True)


def serve(host: str, port: int, workers: int, threads: int, demo: bool, settings: Settings,
          cleanup: bool = True) -> None:
    external = settings.database_url  # not the embedded one prepare_environment may start
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    metrics_environment(settings)  # before anything imports prometheus_client
    from bootfleet import metrics
    from bootfleet.db import get_database, reset_database
    from bootfleet.db.migrate import apply_migrations
    admin_token_is_local = not settings.admin_token
    settings = prepare_environment(settings)
    applied = apply_migrations(get_database())
    if applied:
        print(f"bootfleet: applied migrations {', '.join(applied)}", flush=True)
    if demo and add_demo_profile():
        print("bootfleet: created the demo profile", flush=True)
    reset_database()  # each worker opens its own connections after the fork
    metrics.flush()
    metrics.worker_exited(os.getpid(), settings)  # this process serves nothing: its pool is not counted

    base = f"http://{host_port(host, port)}"
    # Secrets given from outside (an external database, an operator's admin token) are not
    # printed; the ones serve made itself for this machine are, so the quick start works.
    admin = settings.admin_token if admin_token_is_local else "(BOOTFLEET_ADMIN_TOKEN, as you set it)"
    networks = ", ".join(str(n) for n in settings.boot_networks or ()) or "none"
    local = f"http://{host_port({'0.0.0.0': '127.0.0.1', '::': '::1'}.get(host, host), port)}"
    client_config = write_client_config(settings, local, settings.admin_token, Path(settings.data_dir).resolve(),
                                        external)
    schedule = CleanupSchedule(local, settings.admin_token, settings.cleanup_every)
    # Webhooks more often than a whole cleanup pass: only what is due in the outbox (bootfleet/notify.py).
    hooks = CleanupSchedule(local, settings.admin_token, settings.webhook_every, path="/cleanup/webhooks")
    every = (f"every {settings.cleanup_every} s (BOOTFLEET_CLEANUP_EVERY; --no-cleanup: never)"
             if cleanup and settings.cleanup_every > 0 else "off")
    print(
        f"""
bootfleet is running
  dashboard     {base}/
  chainloader   {base}/boot/boot.ipxe
  node script   {base}/boot/ipxe?mac=52:54:00:12:34:56
  operator API  {base}/config/api/v1/   (Authorization: Bearer <admin token>)
  status        {base}/status/
  admin token   {admin}
  database      {redact(settings.database_url or "")}
  boot networks {networks}   (machines there boot without an enrolment secret)
  cleanup       {every}
  CLI settings  {client_config} (bootfleet finds this server from any directory)
Try: bootfleet node create --mac 52:54:00:12:34:56 --profile demo
Stop with Ctrl-C.
""",
        flush=True,
    )

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", host_port(host, port))
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "bootfleet.web.worker.BufferingThreadWorker")  # slow clients hold no thread
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", settings.access_log)
            self.cfg.set("logger_class", "bootfleet.web.accesslog.RedactingLogger")

            on_schedule = [s for s in (schedule, hooks) if cleanup and s.every > 0]
            if on_schedule:
                self.cfg.set("when_ready", lambda arbiter: [s.start() for s in on_schedule])
            self.cfg.set("child_exit", lambda server, worker: metrics.worker_exited(worker.pid, settings))

        def load(self):  # by its import string, as the systemd unit and the container name it
            return import_app("bootfleet.web.router:create_router()")

    Server().run()
