"""Image storage without a server: the local folder (in a temp dir), the URLs it gives,
keys that are refused, and storage settings that cannot work."""

import re

import pytest

from bootfleet.errors import SettingsError
from bootfleet.providers.storage.base import ImageNotFoundError, StorageError
from bootfleet.providers.storage.choose import storage_from_settings
from bootfleet.providers.storage.folder import LocalStorage
from bootfleet.settings import Settings

BAD_KEYS = ["../etc/passwd", "/vmlinuz", "a//b", "a/./b", "a/../b", "", "with space", "x" * 1025, "k\nernel",
            "${x}"]


# --- the local folder ---------------------------------------------------------------------


def test_local_urls_are_under_images_or_the_cdn(tmp_path):
    assert LocalStorage(tmp_path).image_url("debian/vmlinuz", "http://10.0.2.100") == \
        "http://10.0.2.100/images/debian/vmlinuz"
    assert LocalStorage(tmp_path, "https://cdn.example.com/boot").image_url("debian/vmlinuz", "http://x") == \
        "https://cdn.example.com/boot/debian/vmlinuz"


def test_local_put_list_delete(tmp_path):
    source = tmp_path / "kernel.bin"
    source.write_bytes(b"\x7fkernel" * 1000)
    storage = LocalStorage(tmp_path / "images")
    image = storage.image_put("debian/12/vmlinuz", source)
    assert image.key == "debian/12/vmlinuz" and image.size == 7000
    assert (tmp_path / "images" / "debian" / "12" / "vmlinuz").read_bytes() == source.read_bytes()
    storage.image_put("other", source)
    assert [i.key for i in storage.image_list()] == ["debian/12/vmlinuz", "other"]
    assert [i.key for i in storage.image_list("debian/")] == ["debian/12/vmlinuz"]
    storage.image_delete("debian/12/vmlinuz")
    assert [i.key for i in storage.image_list()] == ["other"]
    with pytest.raises(ImageNotFoundError, match=r"no image 'debian/12/vmlinuz' in folder "):
        storage.image_delete("debian/12/vmlinuz")


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_or_break_a_script_are_refused(tmp_path, key):
    source = tmp_path / "f"
    source.write_bytes(b"x")
    storage = LocalStorage(tmp_path / "images")
    with pytest.raises(StorageError, match="image key"):
        storage.image_put(key, source)
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").rglob("*"))


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("env,message", [
    ({"BOOTFLEET_STORAGE": "ftp"}, "BOOTFLEET_STORAGE must be one of local, s3, got 'ftp'"),
    ({"BOOTFLEET_S3_URL_TTL": "soon"}, "BOOTFLEET_S3_URL_TTL must be a whole number"),
])
def test_bad_storage_settings_say_what_is_wrong(monkeypatch, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env()


def test_s3_without_a_bucket_says_so():
    with pytest.raises(SettingsError, match="BOOTFLEET_S3_BUCKET is not set"):
        storage_from_settings(Settings(storage="s3", s3_endpoint="http://127.0.0.1:1"))
