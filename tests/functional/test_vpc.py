"""The VPC provider over the real ibm-vpc SDK, and the fake it is tested against:
the fake's answers must parse with the SDK's own response models, and the
provider's retries must behave (backoff, jitter, Retry-After, no duplicate create)."""

from __future__ import annotations

import re
import time

import pytest
import requests
from fakes.vpc_api import API_KEY, FakeCloud
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import IAMAuthenticator
from ibm_platform_services import GlobalTaggingV1
from ibm_vpc import VpcV1, vpc_v1

from bootfleet.providers.vpc.base import ServerSpec, VpcError
from bootfleet.providers.vpc.ibm import IbmProvider, Retrier

SPEC = dict(deployment="web", zone="us-south-1", vpc="r006-vpc-1", subnet="0717-subnet-1",
            profile="bx2d-metal-96x384", image="r006-ipxe-netboot", user_data="#!ipxe\nchain http://x/boot/boot.ipxe\n")


@pytest.fixture(scope="module")
def cloud():
    fake = FakeCloud(boot_seconds=0.3, delete_seconds=0.2).start()
    yield fake
    fake.stop()


@pytest.fixture
def fresh(cloud):
    with cloud.lock:
        cloud.records.clear(), cloud.tags.clear(), cloud.faults.clear(), cloud.log.clear()
        cloud.failing_names.clear(), cloud.failing_reinitializations.clear()
        cloud.wrap_bare_metal_errors = False
    return cloud


def clients(cloud, key=API_KEY, timeout=2):
    auth = IAMAuthenticator(key, url=cloud.iam_url)
    vpc = VpcV1(version="2026-10-06", authenticator=auth)
    vpc.set_service_url(cloud.vpc_url)
    tagging = GlobalTaggingV1(authenticator=auth)
    tagging.set_service_url(cloud.tagging_url)
    for c in (vpc, tagging):
        c.set_http_config({"timeout": timeout})
    return vpc, tagging


def provider(cloud, kind="bare_metal", retries=4, backoff=0.02, sleeps=None):
    vpc, tagging = clients(cloud, timeout=1)
    sleep = (lambda s: sleeps.append(s) or time.sleep(s)) if sleeps is not None else time.sleep
    return IbmProvider(kind, "us-south", vpc, tagging, Retrier(retries, backoff, sleep), vpc_id="r006-vpc-1")


# --- the fake answers like the API ---------------------------------------------------------------


def test_answers_parse_with_the_sdk_models(fresh):
    p = provider(fresh)
    p.create(ServerSpec(name="bm-0", **SPEC))
    vsi = provider(fresh, kind="instance")
    vsi.create(ServerSpec(name="vm-0", **{**SPEC, "profile": "bx2-2x8", "image": "r006-custom-ipxe"}))
    vpc, _ = clients(fresh)
    for _ in range(2):  # pending, then running
        page = vpc.list_bare_metal_servers().get_result()
        vpc_v1.BareMetalServerCollection.from_dict(page)
        bm = vpc_v1.BareMetalServer.from_dict(page["bare_metal_servers"][0])
        page = vpc.list_instances().get_result()
        vpc_v1.InstanceCollection.from_dict(page)
        vm = vpc_v1.Instance.from_dict(vpc.get_instance(page["instances"][0]["id"]).get_result())
        vni = vpc.get_virtual_network_interface(bm.primary_network_attachment.virtual_network_interface.id)
        vpc_v1.VirtualNetworkInterface.from_dict(vni.get_result())
        time.sleep(0.35)
    assert (bm.status, vm.status) == ("running", "running")
    assert vni.get_result()["mac_address"]
    vpc_v1.ImageCollection.from_dict(vpc.list_images(user_data_format=["ipxe"]).get_result())
    action = vpc.create_instance_action(vm.id, "reboot").get_result()
    vpc_v1.InstanceAction.from_dict(action)
    vpc_v1.InstanceInitialization.from_dict(vpc.get_instance_initialization(vm.id).get_result())
    vpc_v1.BareMetalServerInitialization.from_dict(vpc.get_bare_metal_server_initialization(bm.id).get_result())


def test_version_and_generation_are_required(fresh):
    token = requests.post(f"{fresh.iam_url}/identity/token", timeout=5, data={
        "grant_type": "urn:ibm:params:oauth:grant-type:apikey", "apikey": API_KEY}).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for query, code in (("generation=2", "missing_version"), ("version=2026-13-01&generation=2", "invalid_version"),
                        ("version=2099-01-01&generation=2", "invalid_version"),
                        ("version=2026-10-06&generation=1", "invalid_generation")):
        resp = requests.get(f"{fresh.vpc_url}/instances?{query}", headers=auth, timeout=5)
        assert resp.status_code == 400
        body = resp.json()
        assert body["errors"][0]["code"] == code and body["errors"][0]["message"] and body["trace"]
    resp = requests.get(f"{fresh.vpc_url}/instances?version=2026-10-06&generation=2", timeout=5)
    assert resp.status_code == 401 and resp.json()["errors"][0]["code"] == "not_authorized"


def test_errors_come_back_through_the_sdk_with_the_api_message(fresh):
    vpc, _ = clients(fresh)
    with pytest.raises(ApiException) as e:
        vpc.get_bare_metal_server("0717-nope")
    assert e.value.status_code == 404 and e.value.message == "Bare metal server not found: 0717-nope"
    assert e.value.http_response.json()["errors"][0]["code"] == "bare_metal_server_not_found"
    body = IbmProvider("bare_metal", "us-south", vpc, None).prototype(ServerSpec(name="x-0", **SPEC))
    del body["initialization"]
    with pytest.raises(ApiException) as e:  # the SDK sends a plain dict as it is; the fake checks it
        vpc.create_bare_metal_server(body)
    assert e.value.status_code == 400 and "initialization" in e.value.message


def test_pagination_follows_next_href(fresh):
    for i in range(7):
        fresh.add_foreign_server(f"other-{i}")
    vpc, _ = clients(fresh)
    first = vpc.list_bare_metal_servers(limit=3).get_result()
    assert first["total_count"] == 7 and len(first["bare_metal_servers"]) == 3
    assert "start=" in first["next"]["href"] and "limit=3" in first["next"]["href"]
    pager = vpc_v1.BareMetalServersPager(client=vpc, limit=3)
    names = [s["name"] for s in pager.get_all()]
    assert sorted(names) == [f"other-{i}" for i in range(7)]
    assert len(fresh.requests("GET", r"^/v1/bare_metal_servers$")) == 1 + 3


def test_names_are_unique_and_create_answers_201(fresh):
    vpc, _ = clients(fresh)
    body = IbmProvider("bare_metal", "us-south", vpc, None).prototype(ServerSpec(name="dup-0", **SPEC))
    assert vpc.create_bare_metal_server(body).get_status_code() == 201
    with pytest.raises(ApiException) as e:
        vpc.create_bare_metal_server(body)
    assert e.value.status_code == 400 and e.value.message == "Provided Name (dup-0) is not unique"
    assert e.value.http_response.json()["errors"][0]["code"] == "validation_unique_failed"


def test_ipxe_user_data_needs_an_ipxe_image(fresh):
    p = provider(fresh)
    with pytest.raises(VpcError) as e:
        p.create(ServerSpec(name="bm-0", **{**SPEC, "image": "r006-ubuntu"}))
    assert e.value.http_status == 400 and e.value.code == "image_user_data_format_mismatch"
    assert not e.value.retryable
    assert p.ipxe_image() == "r006-ipxe-netboot"


# --- the provider -----------------------------------------------------------------------------------


def test_create_get_find_tag_reboot_delete(fresh):
    p = provider(fresh)
    server = p.create(ServerSpec(name="web-0", **SPEC))
    assert server.status == "pending" and server.ip is None and server.crn.endswith(server.id)
    assert p.find("web-0").id == server.id and p.find("web-1") is None
    assert not p.is_owned(server, "web")
    p.claim(server, "web")
    assert p.is_owned(server, "web") and not p.is_owned(server, "api")
    assert [s.id for s in p.list_owned("web")] == [server.id]
    time.sleep(0.35)
    running = p.get(server.id)
    record = fresh.records[server.id]
    assert (running.status, running.ip, running.mac) == ("running", record.ip, record.mac)
    p.reboot(server.id)
    assert record.restarts == 1
    assert p.delete(server.id) is True
    assert p.get(server.id).status == "deleting"
    time.sleep(0.25)
    assert p.get(server.id) is None
    assert p.delete(server.id) is False  # already gone: 404 is fine


def test_instances_reboot_with_an_action(fresh):
    p = provider(fresh, kind="instance")
    server = p.create(ServerSpec(name="vm-0", **{**SPEC, "profile": "bx2-2x8", "image": "r006-custom-ipxe"}))
    p.reboot(server.id)
    assert fresh.records[server.id].restarts == 1
    assert fresh.requests("POST", rf"^/v1/instances/{server.id}/actions$")[0].body == {"type": "reboot",
                                                                                       "force": True}


def test_failed_servers_carry_their_status_reasons(fresh):
    fresh.fail_servers_named("web-0", "cannot_start_capacity", "No capacity for bx2d-metal-96x384 in us-south-1")
    p = provider(fresh)
    server = p.create(ServerSpec(name="web-0", **SPEC))
    time.sleep(0.35)
    got = p.get(server.id)
    assert got.status == "failed"
    assert got.reasons == ["cannot_start_capacity: No capacity for bx2d-metal-96x384 in us-south-1"]


def test_retry_after_is_honoured_and_backoff_has_jitter(fresh):
    sleeps = []
    p = provider(fresh, sleeps=sleeps, backoff=0.05)
    fresh.inject("GET", r"^/v1/bare_metal_servers$", status=429, retry_after=1, times=1)
    fresh.inject("GET", r"^/v1/bare_metal_servers$", status=502, times=2)
    assert p.find("web-0") is None
    assert len(sleeps) == 3
    assert 1.0 <= sleeps[0] <= 1.025  # Retry-After: 1, plus at most backoff/2 of jitter
    assert 0 <= sleeps[1] <= 0.1 and 0 <= sleeps[2] <= 0.2  # full jitter under 0.05 * 2**attempt
    waits = {round(Retrier(5, 1.0).wait(3, None), 6) for _ in range(50)}
    assert len(waits) > 40 and max(waits) <= 8.0  # spread out, never above the exponential cap
    assert Retrier(5, 1.0).wait(0, 300) == pytest.approx(60, abs=0.5)  # Retry-After capped at 60 s


def test_timeouts_are_retried_and_give_up_with_a_clear_error(fresh):
    p = provider(fresh, retries=1)
    fresh.inject("GET", r"^/v1/bare_metal_servers/", timeout=1.3, times=2)
    started = time.monotonic()
    with pytest.raises(VpcError) as e:
        p.get("0717_x")
    assert e.value.code == "timeout" and "timed out" in str(e.value)
    assert time.monotonic() - started < 4


def test_a_lost_create_answer_is_found_by_name_not_sent_again(fresh):
    p = provider(fresh)
    fresh.inject("POST", r"^/v1/bare_metal_servers$", timeout=1.3, apply=True)
    server = p.create(ServerSpec(name="web-0", **SPEC))
    assert [s["id"] for s in fresh.servers()] == [server.id]
    assert len(fresh.requests("POST", r"^/v1/bare_metal_servers$")) == 1


def test_non_retryable_errors_are_not_retried(fresh):
    p = provider(fresh)
    with pytest.raises(VpcError) as e:
        p.create(ServerSpec(name="web-0", **{**SPEC, "subnet": "0717-nope"}))
    assert (e.value.http_status, e.value.code) == (400, "subnet_not_found")
    assert "Subnet not found: 0717-nope" in str(e.value)
    assert len(fresh.requests("POST", r"^/v1/bare_metal_servers$")) == 1


def test_a_wrong_api_key_is_an_unauthorized_error(fresh):
    vpc, tagging = clients(fresh, key="wrong")
    p = IbmProvider("bare_metal", "us-south", vpc, tagging, Retrier(3, 0.01))
    with pytest.raises(VpcError) as e:
        p.find("web-0")
    assert e.value.unauthorized and "Provided API key could not be found" in str(e.value)


def test_from_settings_pins_version_generation_and_endpoints(fresh):
    from bootfleet.errors import SettingsError
    from bootfleet.settings import Settings

    settings = Settings(ibmcloud_api_key=API_KEY, ibm_iam_url=fresh.iam_url, vpc_url=fresh.vpc_url,
                        tagging_url=fresh.tagging_url)
    p = IbmProvider.from_settings("bare_metal", "eu-de", "r006-vpc-1", settings)
    assert (p.vpc.version, p.vpc.generation, p.vpc.service_url) == ("2026-10-06", 2, fresh.vpc_url)
    assert p.tagging.service_url == fresh.tagging_url
    assert p.find("web-0") is None
    cloud_default = IbmProvider.from_settings("instance", "eu-de", None, Settings(ibmcloud_api_key="k"))
    assert cloud_default.vpc.service_url == "https://eu-de.iaas.cloud.ibm.com/v1"
    with pytest.raises(SettingsError, match="BOOTFLEET_IBMCLOUD_API_KEY"):
        IbmProvider.from_settings("instance", "eu-de", None, Settings())
    with pytest.raises(SettingsError, match="BOOTFLEET_VPC_URL"):
        IbmProvider.from_settings("instance", "mars-1", None, Settings(ibmcloud_api_key="k"))


# --- names, as the real API keeps them ------------------------------------------------------------


def test_a_taken_name_is_a_400_validation_unique_failed_and_create_answers_that_server(fresh):
    p = provider(fresh)
    first = p.create(ServerSpec(name="web-0", **SPEC))
    again = p.create(ServerSpec(name="web-0", **SPEC))  # refused with validation_unique_failed, found by name
    assert again.id == first.id and len(fresh.servers()) == 1
    [_, refused] = fresh.requests("POST", r"^/v1/bare_metal_servers$")
    assert refused.status == 400


def test_a_taken_name_wrapped_in_a_bad_field_is_a_taken_name_too(fresh):
    """terraform-provider-ibm issue 5389: on bare metal the API may wrap the refusal in a
    400 `bad_field` whose message carries the `validation_unique_failed` error's JSON."""
    import json

    from bootfleet.providers.ibmcloud import error_from

    fresh.wrap_bare_metal_errors = True
    vpc, _ = clients(fresh)
    body = IbmProvider("bare_metal", "us-south", vpc, None).prototype(ServerSpec(name="dup-0", **SPEC))
    body["primary_network_attachment"]["virtual_network_interface"]["name"] = "shared-vni"
    vpc.create_bare_metal_server(body)
    with pytest.raises(ApiException) as e:
        vpc.create_bare_metal_server({**body, "name": "dup-1"})
    answer = e.value.http_response.json()
    [error] = answer["errors"]
    assert e.value.status_code == 400 and (error["code"], error["more_info"]) == ("bad_field", "")
    prefix = "Handler Error: Status=400, JSON="
    assert error["message"].startswith(prefix)
    inner = json.loads(error["message"][len(prefix):])
    assert inner["errors"] == [{"code": "validation_unique_failed",
                                "message": "Another VNI with the requested name already exists"}]
    assert inner["trace"] == answer["trace"]
    wrapped = error_from("create bare metal server dup-1", e.value)
    assert wrapped.code == "bad_field" and wrapped.has_code("validation_unique_failed")
    assert not wrapped.has_code("not_found") and not error_from("x", e.value).retryable

    p = provider(fresh)
    first = p.create(ServerSpec(name="web-0", **SPEC))
    again = p.create(ServerSpec(name="web-0", **SPEC))  # refused (wrapped), found by name
    assert again.id == first.id
    [_, refused] = fresh.requests("POST", r"^/v1/bare_metal_servers$")[2:]
    assert refused.status == 400


def test_virtual_network_interface_names_are_unique_in_the_vpc(fresh):
    vpc, _ = clients(fresh)
    body = IbmProvider("bare_metal", "us-south", vpc, None).prototype(ServerSpec(name="a-0", **SPEC))
    assert "name" not in body["primary_network_attachment"]["virtual_network_interface"]  # the API makes one up
    body["primary_network_attachment"]["virtual_network_interface"]["name"] = "shared-vni"
    vpc.create_bare_metal_server(body)
    with pytest.raises(ApiException) as e:
        vpc.create_bare_metal_server({**body, "name": "a-1"})
    error = e.value.http_response.json()["errors"][0]
    assert e.value.status_code == 400 and error["code"] == "validation_unique_failed"
    assert error["message"] == "Another VNI with the requested name already exists"
    p = provider(fresh)
    made = [p.create(ServerSpec(name=f"b-{i}", **SPEC)) for i in range(3)]
    names = {vpc.get_virtual_network_interface(p.get(s.id).vni_id).get_result()["name"] for s in made}
    assert len(names) == 3 and "shared-vni" not in names


# --- one retrying client: faults injected over HTTP ----------------------------------------------


def inject_over_http(cloud, **fault):
    resp = requests.post(f"{cloud.base}/_fake/faults", json=fault, timeout=5)
    assert resp.status_code == 201, resp.text


def test_faults_injected_over_http_are_retried_with_retry_after_and_backoff(fresh):
    sleeps = []
    p = provider(fresh, sleeps=sleeps, backoff=0.04)
    inject_over_http(fresh, method="POST", path=r"^/v3/tags/attach$", status=429, retry_after=1)
    inject_over_http(fresh, method="GET", path=r"^/v3/tags$", status=503, times=2)
    server = p.create(ServerSpec(name="web-0", **SPEC))
    p.claim(server, "web")
    assert p.is_owned(server, "web")
    assert 1.0 <= sleeps[0] <= 1.02 and all(0 <= s <= 0.16 for s in sleeps[1:]) and len(sleeps) == 3
    listed = requests.get(f"{fresh.base}/_fake/faults", timeout=5).json()
    assert [(f["path"], f["hits"]) for f in listed] == [(r"^/v3/tags/attach$", 1), (r"^/v3/tags$", 2)]
    assert requests.delete(f"{fresh.base}/_fake/faults", timeout=5).status_code == 204


def test_a_fault_given_at_construction_and_errors_carry_ibms_code_and_trace():
    fake = FakeCloud(faults=[{"method": "GET", "path": r"^/v1/bare_metal_servers$", "status": 500, "times": 9,
                              "code": "internal_error", "message": "Internal error, try again"}]).start()
    try:
        p = provider(fake, retries=2, backoff=0.01)
        with pytest.raises(VpcError) as e:
            p.find("web-0")
        error = e.value
        assert (error.http_status, error.code, error.retryable) == (500, "internal_error", True)
        answered = {r.status for r in fake.requests("GET", r"^/v1/bare_metal_servers$")}
        assert answered == {500} and len(fake.requests("GET", r"^/v1/bare_metal_servers$")) == 3  # 1 + 2 retries
        assert re.fullmatch(r"[0-9a-f-]{36}", error.trace)
        assert str(error) == (f"list bare metal servers: Internal error, try again (internal_error, HTTP 500, "
                              f"trace {error.trace})")
    finally:
        fake.stop()


def test_an_iam_refusal_carries_iams_code_and_request_id(fresh):
    vpc, tagging = clients(fresh, key="wrong")
    p = IbmProvider("bare_metal", "us-south", vpc, tagging, Retrier(3, 0.01))
    with pytest.raises(VpcError) as e:
        p.find("web-0")
    assert e.value.code == "BXNIM0415E" and e.value.http_status == 400 and e.value.trace
    assert f"trace {e.value.trace}" in str(e.value) and len(fresh.requests("POST", "^/identity/token$")) == 1
