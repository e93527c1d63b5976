"""Talking to bootfleet's HTTP API: the `Client` every operator command uses, and `CliError`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from bootfleet.settings import Settings


class CliError(Exception):
    """Something the operator should read; printed without a traceback."""


class Client:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        try:
            resp = self.session.request(method, self.url + path, json=body, params=params, timeout=30)
        except requests.ConnectionError:
            raise CliError(f"cannot reach bootfleet at {self.url}; is it running (make run)?") from None
        if resp.status_code == 204:
            return None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text.strip()}
        if resp.status_code >= 400:
            raise CliError(f"{method} {path}: {resp.status_code} {data.get('error', data)}")
        return data


def local_token(settings: Settings) -> str | None:
    """The admin token `bootfleet serve` keeps in <BOOTFLEET_DATA_DIR>/secrets.json, if there is one."""
    path = Path(settings.data_dir) / "secrets.json"
    if path.exists():
        return json.loads(path.read_text()).get("admin_token")
    return None


def connect(args, settings: Settings) -> Client:
    """A client for --url (else BOOTFLEET_URL) with --token (else BOOTFLEET_ADMIN_TOKEN, else the local one)."""
    return Client(args.url or settings.url, args.token or settings.admin_token or local_token(settings))
