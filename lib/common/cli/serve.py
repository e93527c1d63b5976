"""`bootfleet serve`: the whole system in one process tree on this machine.

Without BOOTFLEET_DATABASE_URL it starts an embedded PostgreSQL (pgserver)
under .data/pg; it keeps the admin token and token secret in
.data/secrets.json so they survive restarts; applies migrations; adds the demo
profile; then serves the router with gunicorn.

What it fills in goes into the environment, for gunicorn's workers to inherit;
it is read back, like every setting, through `Settings` (after reset_settings()).
Also `bootfleet migrate`, which prepares the same way.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
from pathlib import Path

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
    return server.get_uri("postgres")


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
    serve(args.host, port, args.workers, args.threads, demo=not args.no_demo, settings=settings)


def cmd_migrate(args, settings: Settings) -> None:
    from bootfleet.db import get_database
    from bootfleet.db.migrate import apply_migrations

    prepare_environment(settings)
    applied = apply_migrations(get_database())
    print(f"applied: {', '.join(applied)}" if applied else "the database is up to date")


def serve(host: str, port: int, workers: int, threads: int, demo: bool, settings: Settings) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    metrics_environment(settings)  # before anything imports prometheus_client
    from bootfleet import metrics
    from bootfleet.db import get_database, reset_database
    from bootfleet.db.migrate import apply_migrations
    settings = prepare_environment(settings)
    applied = apply_migrations(get_database())
    if applied:
        print(f"bootfleet: applied migrations {', '.join(applied)}", flush=True)
    if demo and add_demo_profile():
        print("bootfleet: created the demo profile", flush=True)
    reset_database()  # each worker opens its own connections after the fork
    metrics.flush()
    metrics.worker_exited(os.getpid(), settings)  # this process serves nothing: its pool is not counted

    base = f"http://{host}:{port}"
    print(
        f"""
bootfleet is running
  dashboard     {base}/
  chainloader   {base}/boot/boot.ipxe
  node script   {base}/boot/ipxe?mac=52:54:00:12:34:56
  operator API  {base}/config/api/v1/   (Authorization: Bearer <admin token>)
  status        {base}/status/
  admin token   {settings.admin_token}
  database      {settings.database_url}
Try: bootfleet node create --mac 52:54:00:12:34:56 --profile demo
Stop with Ctrl-C.
""",
        flush=True,
    )

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("threads", threads)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", settings.access_log)
            self.cfg.set("child_exit", lambda server, worker: metrics.worker_exited(worker.pid, settings))

        def load(self):  # by its import string, as the systemd unit and the container name it
            return import_app("bootfleet.web.router:create_router()")

    Server().run()
