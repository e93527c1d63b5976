"""What the tests (unit, functional, e2e, infra), bench/ and `make demo` share.

tests/ is on sys.path (pyproject's pytest `pythonpath`; bench/ and tests/e2e/demo.py
add it themselves), so this is imported as `support`:

    from support import ADMIN, ROOT
    from support.helpers import make_node, snapshot
    from support.server import RunningServer
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token"
TOKEN_SECRET = "test-token-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
