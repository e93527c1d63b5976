"""infra/terraform sizes the function apps for a boot storm within the database's connections
(docs/deployment.md, Sizing): each app's container concurrency is its gunicorn threads and its
database pool, and every instance of every app at once stays under database_connection_limit."""

from __future__ import annotations

import math

from test_infra_terraform import config, unquote


def literal_env(app: dict) -> dict[str, str]:
    return {unquote(e["name"]): e.get("value") for e in app["run_env_variables"] if unquote(e["type"]) == "literal"}


def test_concurrency_sets_threads_and_the_pool():
    cfg = config()
    app = cfg["resource"][("ibm_code_engine_app", "function")]
    assert app["scale_concurrency"] == "${each.value.concurrency}"
    assert "each.value.concurrency" in app["scale_concurrency_target"]
    env = literal_env(app)
    assert env["THREADS"] == env["BOOTFLEET_DB_POOL_SIZE"] == "${tostring(local.function_threads[each.key])}"
    assert env["WORKERS"] == "${tostring(local.function_workers[each.key])}"
    settings = cfg["locals"]["settings"]
    assert "BOOTFLEET_DB_POOL_SIZE" not in settings, "the pool is set per app, not for all in the config map"
    precondition = app["lifecycle"][0]["precondition"][0]
    assert "local.database_connections <= var.database_connection_limit" in precondition["condition"]


def default_connections(functions: dict) -> int:
    """What code_engine.tf's locals compute: processes per whole vCPU, threads for the rest, a pool each."""
    total = 1  # cleanup's advisory lock, on a connection of its own
    for f in functions.values():
        workers = max(1, math.floor(float(unquote(f["cpu"]))))
        threads = math.ceil(f["concurrency"] / workers)
        total += f["max_instances"] * workers * threads
    return total


def test_the_default_sizing_fits_the_databases_connection_limit():
    variables = config()["variable"]
    functions = variables["functions"]["default"]
    limit = variables["database_connection_limit"]["default"]
    assert limit == 100  # Databases for PostgreSQL: max_connections 115, 15 kept for its superuser
    assert default_connections(functions) <= limit
    boot = functions["boot"]
    assert boot["min_instances"] == 0 and boot["max_instances"] >= 2 and boot["concurrency"] >= 4
    # the budget check would catch a sizing past the limit
    assert default_connections({**functions, "boot": {**boot, "max_instances": 20}}) > limit
