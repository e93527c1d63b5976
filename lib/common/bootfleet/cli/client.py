"""Talking to bootfleet's HTTP API: the `Client` every operator command uses, and `CliError`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class CliError(Exception):
    """Something the operator should read; printed as one line, without a traceback."""


class UnreachableError(CliError):
    """The server did not answer at all (not running, restarting, or too slow): worth asking again."""


def _session(token: str | None) -> requests.Session:
    session = requests.Session()
    # A connection the server's keep-alive closed between two polls (watch, events --follow)
    # is retried: for every method on a connect error (nothing was sent), and for reads also on
    # a reset mid-request (GET is safe to repeat).
    retry = Retry(total=3, connect=3, read=2, status=0, backoff_factor=0.2, allowed_methods={"GET", "HEAD"},
                  raise_on_status=False)
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--url {url!r} is not a base URL; give one like http://127.0.0.1:8080")
    return url.rstrip("/")


class Client:
    def __init__(self, url: str, token: str | None, token_from: str = ""):
        self.url = check_url(url)
        self.token_from = token_from
        self.session = _session(token)
        self.last_response: requests.Response | None = None

    def call(self, method: str, path: str, body: Any = None, params: dict | None = None, data: Any = None,
             timeout: float = 30) -> Any:
        try:
            resp = self.session.request(method, self.url + path, json=body, data=data, params=params,
                                        timeout=timeout,
                                        headers={"Content-Type": "application/json"} if data is not None else None)
        except requests.ConnectionError:
            raise UnreachableError(f"cannot reach bootfleet at {self.url}; is it running (make run)?") from None
        except requests.Timeout:
            raise UnreachableError(f"bootfleet at {self.url} did not answer within {timeout:.0f} s") from None
        except requests.RequestException as e:
            raise CliError(f"{method} {self.url}{path}: {e}") from None
        self.last_response = resp
        if resp.status_code == 204:
            return None
        try:
            data = resp.json()
        except ValueError:
            data = {"error": resp.text.strip()[:300] or resp.reason}
        if resp.status_code in (502, 503, 504):  # a gateway without its server, or a server starting
            message = data.get("error", data) if isinstance(data, dict) else data
            raise UnreachableError(f"{method} {path}: {resp.status_code} {message}")
        if resp.status_code >= 400:
            message = data.get("error", data) if isinstance(data, dict) else data
            hint = "" if "role" in str(message) else self._hint(resp.status_code)  # a wrong role: the token is fine
            raise CliError(f"{method} {path}: {resp.status_code} {message}{hint}")
        return data

    def _hint(self, status: int) -> str:
        if status == 401:
            return ("; no admin token: pass --token, set BOOTFLEET_ADMIN_TOKEN, or start bootfleet serve"
                    " (it writes the token where this command finds it)")
        if status == 403 and self.token_from:
            return f"; the admin token from {self.token_from} is not this server's (--url {self.url})"
        return ""
