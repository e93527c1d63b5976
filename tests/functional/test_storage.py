"""Image storage: the local folder and an S3 endpoint (moto's real S3 HTTP API on
127.0.0.1, through boto3 exactly as IBM COS is used), the URLs boot renders for
each, and `bootfleet images`. The local folder on its own, and storage settings:
tests/unit/test_storage.py."""

import json
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from support import ROOT
from support.helpers import make_node, make_profile
from support.objectstore import ACCESS_KEY, REGION, S3Server

from bootfleet.providers.storage.base import ImageNotFoundError, StorageError
from bootfleet.providers.storage.choose import get_storage, image_url
from bootfleet.providers.storage.s3 import S3Storage
from bootfleet.settings import get_settings


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3, request):
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    return s3.create_bucket(name)


def cli(env_overrides: dict, *args, cwd=ROOT):
    import os

    env = {**os.environ, **env_overrides}
    return subprocess.run([sys.executable, "-m", "bootfleet.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


# --- S3 --------------------------------------------------------------------------------------


def test_s3_put_list_delete_through_boto3(s3, bucket, settings, tmp_path):
    settings(s3.env(bucket))
    storage = get_storage(get_settings())
    assert isinstance(storage, S3Storage)
    source = tmp_path / "initrd.img"
    source.write_bytes(b"initramfs" * 500)
    image = storage.image_put("debian/initrd.img", source)
    assert image.key == "debian/initrd.img" and image.size == 4500
    assert [(i.key, i.size) for i in storage.image_list("debian/")] == [("debian/initrd.img", 4500)]
    # What the bucket holds is what boto3 reads back, not just what we remember.
    assert s3.client().get_object(Bucket=bucket, Key="debian/initrd.img")["Body"].read() == source.read_bytes()
    storage.image_delete("debian/initrd.img")
    assert storage.image_list() == []
    with pytest.raises(ImageNotFoundError, match=rf"no image 'debian/initrd.img' in bucket {bucket} at "):
        storage.image_delete("debian/initrd.img")


def test_presigned_url_is_sigv4_and_fetches_the_bytes(s3, bucket, settings, tmp_path):
    settings(s3.env(bucket), s3_url_ttl=600)
    source = tmp_path / "vmlinuz"
    source.write_bytes(b"bzImage" * 3000)
    get_storage(get_settings()).image_put("k/vmlinuz", source)
    before = len(s3.requests)
    url = image_url("k/vmlinuz", "http://unused", get_settings())
    assert len(s3.requests) == before, "presigning must not call the endpoint"
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{s3.url}/{bucket}/k/vmlinuz"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY}/") and f"/{REGION}/s3/aws4_request" in \
        query["X-Amz-Credential"][0]
    assert query["X-Amz-Expires"] == ["600"] and query["X-Amz-SignedHeaders"] == ["host"]
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"][0])
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == source.read_bytes()


def test_presigned_url_is_signed_for_the_endpoint_machines_reach(s3, bucket, settings):
    settings(s3.env(bucket, public_endpoint="http://10.0.2.101"))
    url = image_url("k/vmlinuz", "http://unused", get_settings())
    assert url.startswith(f"http://10.0.2.101/{bucket}/k/vmlinuz?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    # Uploads still go to the endpoint bootfleet itself reaches.
    assert get_storage(get_settings()).client.meta.endpoint_url == s3.url


def test_cdn_base_url_wins_over_presigning(s3, bucket, settings):
    settings(s3.env(bucket), images_base_url="https://cdn.example.com/images/")
    assert image_url("k/vmlinuz", "http://unused", get_settings()) == "https://cdn.example.com/images/k/vmlinuz"


def test_a_full_url_is_left_as_it_is(s3, bucket, settings):
    settings(s3.env(bucket))
    assert image_url("https://mirror.example.com/vmlinuz", "http://x", get_settings()) == "https://mirror.example.com/vmlinuz"


def test_missing_bucket_is_named(s3, settings, tmp_path):
    settings(s3.env("no-such-bucket"))
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(StorageError, match="bucket no-such-bucket at .*: the bucket does not exist"):
        get_storage(get_settings()).image_list()


# --- boot renders the backend's URLs ----------------------------------------------------------


def test_boot_points_ipxe_at_presigned_urls(s3, bucket, settings, boot, config, admin, tmp_path):
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd.img"
    kernel.write_bytes(b"kernel bytes")
    initrd.write_bytes(b"initrd bytes")
    settings(s3.env(bucket))
    get_storage(get_settings()).image_put("fleet/vmlinuz", kernel)
    get_storage(get_settings()).image_put("fleet/initrd.img", initrd)
    make_profile(config, admin, kernel="fleet/vmlinuz", initrds=["fleet/initrd.img"])
    make_node(config, admin, profile="worker")
    script = boot.get("/ipxe?mac=52:54:00:00:00:01", base_url="http://10.0.2.100").get_data(as_text=True)
    kernel_url = re.search(r"^kernel (\S+) ", script, re.M).group(1)
    initrd_url = re.search(r"^initrd (\S+) \|\| goto failed$", script, re.M).group(1)
    for url, source in ((kernel_url, kernel), (initrd_url, initrd)):
        assert url.startswith(f"{s3.url}/{bucket}/fleet/") and "X-Amz-Signature=" in url
        assert "/images/" not in url
        assert requests.get(url, timeout=10).content == source.read_bytes()


def test_boot_points_ipxe_at_the_local_folder_by_default(boot, config, admin):
    make_profile(config, admin, kernel="fleet/vmlinuz", initrds=["fleet/initrd.img"])
    make_node(config, admin, profile="worker")
    script = boot.get("/ipxe?mac=52:54:00:00:00:01", base_url="http://10.0.2.100").get_data(as_text=True)
    assert "kernel http://10.0.2.100/images/fleet/vmlinuz " in script
    assert "initrd http://10.0.2.100/images/fleet/initrd.img || goto failed" in script


# --- bootfleet images ------------------------------------------------------------------------


def test_images_cli_on_the_local_folder(tmp_path):
    env = {"BOOTFLEET_IMAGES_DIR": str(tmp_path / "images"), "BOOTFLEET_STORAGE": "local"}
    (tmp_path / "vmlinuz").write_bytes(b"k" * 2048)
    (tmp_path / "initrd.img").write_bytes(b"i" * 10)
    result = cli(env, "images", "upload", "--prefix", "debian/12", str(tmp_path / "vmlinuz"), str(tmp_path / "initrd.img"))
    assert result.returncode == 0, result.stderr
    assert "debian/12/vmlinuz" in result.stdout and "2.0 KiB" in result.stdout
    listed = json.loads(cli(env, "--json", "images", "list").stdout)
    assert [(i["key"], i["size"]) for i in listed] == [("debian/12/initrd.img", 10), ("debian/12/vmlinuz", 2048)]
    result = cli(env, "images", "rm", "--yes", "debian/12/vmlinuz")
    assert result.returncode == 0 and "removed debian/12/vmlinuz" in result.stdout
    assert not (tmp_path / "images" / "debian" / "12" / "vmlinuz").exists()


@pytest.mark.parametrize("args,message", [
    (["images", "upload", "--key", "../escape", "FILE"], "image key '../escape'"),
    (["images", "upload", "/no/such/file"], "/no/such/file: no such file"),
    (["images", "upload", "--key", "one", "FILE", "FILE"], "--key names one image"),
    (["images", "rm", "--yes", "never-uploaded"], "no image 'never-uploaded' in folder"),
])
def test_images_cli_errors_are_clear_and_change_nothing(tmp_path, args, message):
    source = tmp_path / "vmlinuz"
    source.write_bytes(b"k")
    env = {"BOOTFLEET_IMAGES_DIR": str(tmp_path / "images"), "BOOTFLEET_STORAGE": "local"}
    result = cli(env, *[str(source) if a == "FILE" else a for a in args])
    assert result.returncode == 1
    assert result.stderr.startswith("bootfleet: ") and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").rglob("*"))
    assert not (tmp_path / "escape").exists()


def test_images_cli_on_s3(s3, bucket, tmp_path):
    (tmp_path / "vmlinuz").write_bytes(b"k" * 100)
    env = s3.env(bucket)
    assert cli(env, "images", "upload", "--key", "fleet/kernel", str(tmp_path / "vmlinuz")).returncode == 0
    listed = json.loads(cli(env, "--json", "images", "list").stdout)
    assert [(i["key"], i["size"]) for i in listed] == [("fleet/kernel", 100)]
    result = cli(env, "images", "rm", "--yes", "fleet/kernel")
    assert result.returncode == 0 and f"from bucket {bucket}" in result.stdout
    result = cli(env, "images", "rm", "--yes", "fleet/kernel")
    assert result.returncode == 1 and "no image 'fleet/kernel' in bucket" in result.stderr


# --- uploads IBM COS accepts: no aws-chunked body, no checksum trailer -------------------------------


def upload_through(proxy, client, bucket, tmp_path) -> tuple[str, dict, bytes]:
    source = tmp_path / "initrd.img"
    source.write_bytes(b"initramfs-bytes\n" * 4096)  # 64 KiB: one PutObject
    client.upload_file(str(source), bucket, "wire/initrd.img")
    [put] = [r for r in proxy.requests() if r[0].startswith("PUT ")]
    return put[0], put[1], put[2]


def test_an_upload_is_a_plain_body_without_aws_chunked_or_a_checksum_trailer(s3, bucket, settings, tmp_path,
                                                                            monkeypatch):
    """Watched on the wire (a recording proxy in front of moto): boto3 1.36+ would send the
    body aws-chunked with an x-amz-checksum-crc32 trailer, which S3-compatible stores
    may refuse; bootfleet's client sends the file as it is, signed with its SHA-256."""
    from support.wire import RecordingProxy

    with RecordingProxy("127.0.0.1", s3.port, tls=True) as proxy:  # IBM COS is HTTPS
        monkeypatch.setenv("AWS_CA_BUNDLE", proxy.ca_file)
        settings(s3.env(bucket), s3_endpoint=proxy.url)
        storage = get_storage(get_settings())
        line, headers, body = upload_through(proxy, storage.client, bucket, tmp_path)
        assert line.startswith(f"PUT /{bucket}/wire/initrd.img ")
        assert "aws-chunked" not in headers.get("content-encoding", "")
        assert "x-amz-trailer" not in headers and not any(h.startswith("x-amz-checksum") for h in headers)
        assert "x-amz-decoded-content-length" not in headers and "transfer-encoding" not in headers
        assert headers["content-length"] == str(64 * 1024) and body == (tmp_path / "initrd.img").read_bytes()
        assert re.fullmatch(r"[0-9a-f]{64}", headers["x-amz-content-sha256"])  # the payload's hash, not STREAMING-*
        # Downloads are not checked against a checksum the store may not have sent.
        assert storage.client.meta.config.response_checksum_validation == "when_required"
        assert s3.client().get_object(Bucket=bucket, Key="wire/initrd.img")["Body"].read() == body


def test_the_wire_check_sees_what_boto3_sends_by_default(s3, bucket, tmp_path):
    """The check above could pass for the wrong reason: the same proxy sees boto3's default
    (when_supported) upload as aws-chunked with a checksum trailer."""
    import boto3
    from support.objectstore import REGION, SECRET_KEY
    from support.wire import RecordingProxy

    with RecordingProxy("127.0.0.1", s3.port, tls=True) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                              aws_secret_access_key=SECRET_KEY, verify=proxy.ca_file)
        _, headers, body = upload_through(proxy, client, bucket, tmp_path)
    assert "aws-chunked" in headers["content-encoding"] and headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert headers["x-amz-content-sha256"].startswith("STREAMING-") and b"x-amz-checksum-crc32:" in body


def test_boot_says_when_a_profile_names_an_image_the_bucket_lacks(s3, bucket, settings, boot, config, admin,
                                                                   clean_db):
    """Checked from a thread (boot never waits on the bucket): the first boot finds out, a later
    one records it on the node, once."""
    import time

    settings(s3.env(bucket))
    make_profile(config, admin, kernel="fleet/not-uploaded")
    node = make_node(config, admin, profile="worker")

    def missing_events():
        with clean_db.transaction() as tx:
            return tx.all("SELECT message FROM event WHERE node_id = :id AND kind = 'image-missing'", id=node["id"])

    deadline = time.monotonic() + 10
    while not missing_events() and time.monotonic() < deadline:
        assert boot.get("/ipxe?mac=52:54:00:00:00:01").status_code == 200
        time.sleep(0.2)
    assert [e["message"] for e in missing_events()] == ["profile worker names image(s) that are not in storage:"
                                                        " fleet/not-uploaded, initrd.img (bootfleet images upload ...); its nodes cannot boot"]
    boot.get("/ipxe?mac=52:54:00:00:00:01")
    assert len(missing_events()) == 1


def test_image_url_in_a_template_is_signed_for_any_object_in_the_bucket(s3, bucket, settings, boot, config, status,
                                                                        admin, tmp_path):
    """image_url('key') in args and configs (issue 25: FCOS's coreos.live.rootfs_url): presigned
    like the kernel's, fetchable; a bad key fails the node's config with the reason."""
    from support.helpers import token_from_script

    rootfs = tmp_path / "rootfs.img"
    rootfs.write_bytes(b"rootfs bytes")
    settings(s3.env(bucket))
    get_storage(get_settings()).image_put("fcos/rootfs.img", rootfs)
    make_profile(config, admin, kernel="fcos/vmlinuz", initrds=[],
                 args="coreos.live.rootfs_url={{ image_url('fcos/rootfs.img') }} st={{ status_url }}",
                 config_template="#cloud-config\nrootfs: {{ image_url('fcos/rootfs.img') }}\n")
    node = make_node(config, admin, profile="worker", labels={"rack": "r1"})
    script = boot.get("/ipxe?mac=52:54:00:00:00:01").get_data(as_text=True)
    url = re.search(r"coreos\.live\.rootfs_url=(\S+)", script).group(1)
    assert url.startswith(f"{s3.url}/{bucket}/fcos/rootfs.img?") and "X-Amz-Signature=" in url
    assert requests.get(url, timeout=10).content == b"rootfs bytes"
    token = token_from_script(script)
    user_data = config.get(f"/nodes/{node['id']}/user-data?token={token}").get_data(as_text=True)
    import yaml

    signed = yaml.safe_load(user_data)["rootfs"]
    assert signed.startswith(f"{s3.url}/{bucket}/fcos/rootfs.img?") and requests.get(signed, timeout=10).ok
    # A key that is no image key: refused when the profile is saved.
    bad = config.post("/api/v1/profiles", headers=admin, json={"name": "bad", "kernel": "k",
                                                               "args": "x={{ image_url('-rf') }}"})
    assert bad.status_code == 400 and "image_url()" in bad.json["error"]
