"""The floor for the boot storm (issue 24): the least code that does a node script's job with
the design's own parts, and nothing else. functions-framework, pg8000, one prepared statement
per connection (find the node by MAC with its profile, open its install when it is not booting
yet: stage, token version, the stage event; else note it was seen), an HMAC-signed token in the
script. No validation, no proof (secrets, boot networks), no logging, no metrics, no retries:
what bootfleet's node script is measured against in the same run (bench/boot_storm.py).

    BOOTFLEET_DATABASE_URL=postgresql://... BOOTFLEET_TOKEN_SECRET=... \
      functions-framework --target floor --source bench/floor/main.py --port 8082
"""

import hashlib
import hmac
import os
import threading
import time

import pg8000.native

from bootfleet.db.connection import connect_args  # how to reach the database (a URL's parts), not on the request's path

STATEMENT = """
WITH found AS (
  SELECT n.id, n.stage, n.token_version, n.deployment_id, p.name, p.kernel, p.initrds, p.args
  FROM node_mac m JOIN node n ON n.id = m.node_id
  JOIN profile p ON p.id = COALESCE(n.profile_id, (SELECT profile_id FROM deployment WHERE id = n.deployment_id))
  WHERE m.mac = :mac
  FOR UPDATE OF n
),
changed AS (
  UPDATE node x SET last_seen = now(),
    stage = 'booting',
    token_version = x.token_version + CASE WHEN f.stage = 'booting' THEN 0 ELSE 1 END,
    stage_changed_at = CASE WHEN f.stage = 'booting' THEN x.stage_changed_at ELSE now() END
  FROM found f WHERE x.id = f.id
  RETURNING x.token_version
),
opened AS (
  INSERT INTO event (node_id, deployment_id, stage, kind, message, source)
  SELECT id, deployment_id, 'booting', 'stage', 'boot script served, profile ' || name, 'boot'
  FROM found WHERE stage <> 'booting'
)
SELECT f.id::text, c.token_version, f.name, f.kernel, f.initrds, f.args FROM found f, changed c
"""

_ARGS = connect_args(os.environ["BOOTFLEET_DATABASE_URL"])
_SECRET = os.environ["BOOTFLEET_TOKEN_SECRET"].encode()
_local = threading.local()


def _statement():
    if not hasattr(_local, "statement"):
        conn = pg8000.native.Connection(**_ARGS)
        _local.conn, _local.statement = conn, conn.prepare(STATEMENT)
    return _local.statement


def floor(request):
    rows = _statement().run(mac=request.args.get("mac", ""))
    if not rows:
        return "#!ipxe\necho no boot script for this machine\nsleep 30\n", 200, {"Content-Type": "text/plain"}
    node_id, version, name, kernel, initrds, args = rows[0]
    expiry = int(time.time()) + 86400
    token = f"{expiry}." + hmac.new(_SECRET, f"{node_id}.{version}.{expiry}".encode(), hashlib.sha256).hexdigest()
    base = request.host_url.rstrip("/")
    args = args.replace("{{ config_url }}", f"{base}/config/{node_id}?token={token}")
    args = args.replace("{{ status_url }}", f"{base}/status/report?node={node_id}&token={token}")
    script = [f"#!ipxe\necho floor: node {node_id} boots profile {name}\n",
              f"kernel {base}/images/{kernel} {args} || goto failed\n"]
    script += [f"initrd {base}/images/{key} || goto failed\n" for key in initrds]
    script.append(f"boot || goto failed\n:failed\nsleep 30\nchain --autofree {base}/boot/ipxe?mac={request.args.get('mac', '')}\n")
    return "".join(script), 200, {"Content-Type": "text/plain; charset=utf-8"}
