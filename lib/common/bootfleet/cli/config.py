"""The client settings `bootfleet serve` leaves for the `bootfleet` command, so that it
works from any directory: <XDG_CONFIG_HOME>/bootfleet/client.json (mode 0600) with the
server's URL, its admin token and its data directory.

Where each value comes from, first found wins:
    URL          --url, BOOTFLEET_URL, the file, http://127.0.0.1:8080
    admin token  --token, BOOTFLEET_ADMIN_TOKEN, the file, <BOOTFLEET_DATA_DIR>/secrets.json
    data dir     BOOTFLEET_DATA_DIR, the file (migrate, and images in the local folder)
    database     BOOTFLEET_DATABASE_URL, the file (an external one), the data dir's embedded one (migrate)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bootfleet.cli.client import Client, CliError
from bootfleet.settings import Settings


def config_path(settings: Settings) -> Path:
    return Path(settings.xdg_config_home) / "bootfleet" / "client.json"


def write_client_config(settings: Settings, url: str, admin_token: str, data_dir: Path,
                        database_url: str | None = None) -> Path:
    """Written by serve: readable by this user only (it holds the admin token, and the URL of
    an external database, which `bootfleet migrate` then uses; an embedded one is found
    through the data dir)."""
    path = config_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = {"url": url, "admin_token": admin_token, "data_dir": str(data_dir)}
    if database_url:
        values["database_url"] = database_url
    body = json.dumps(values, indent=2) + "\n"
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.chmod(path.with_suffix(".tmp"), 0o600)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def read_client_config(settings: Settings) -> dict:
    path = config_path(settings)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CliError(f"cannot read {path}: {e}; remove it, or run bootfleet serve again") from None
    return data if isinstance(data, dict) else {}


@dataclass
class Target:
    url: str
    token: str | None
    token_from: str  # where the token came from, for the hint on a 401 or 403


def target(args, settings: Settings) -> Target:
    saved = read_client_config(settings)
    url = getattr(args, "url", None) or (None if settings.is_default("url") else settings.url) \
        or saved.get("url") or settings.url
    if getattr(args, "token", None):
        return Target(url, args.token, "--token")
    if settings.admin_token:
        return Target(url, settings.admin_token, "BOOTFLEET_ADMIN_TOKEN")
    if saved.get("admin_token"):
        return Target(url, saved["admin_token"], str(config_path(settings)))
    secrets = Path(settings.data_dir) / "secrets.json"
    if not settings.is_default("data_dir") and secrets.exists():
        return Target(url, json.loads(secrets.read_text()).get("admin_token"), str(secrets))
    return Target(url, None, "")


def server_data_dir(settings: Settings) -> Path:
    """The data directory of the server this user runs: BOOTFLEET_DATA_DIR, else the one
    serve wrote down; never the current directory's .data by accident."""
    if not settings.is_default("data_dir"):
        return Path(settings.data_dir).resolve()
    saved = read_client_config(settings).get("data_dir")
    if saved:
        return Path(saved)
    raise CliError(f"no server data directory: set BOOTFLEET_DATA_DIR, or start bootfleet serve once"
                   f" (it records its own in {config_path(settings)})")


def connect(args, settings: Settings) -> Client:
    """A client for the server and token found as the module docstring says."""
    found = target(args, settings)
    return Client(found.url, found.token, found.token_from)
