"""BOOTFLEET_CORS_ORIGIN, the origins the dashboard may be served from, as the settings read it."""

import pytest


@pytest.mark.parametrize("value, expected", [
    ("https://dash.example.com", ("https://dash.example.com",)),
    ("https://Dash.Example.com/, http://127.0.0.1:8081", ("https://dash.example.com", "http://127.0.0.1:8081")),
    ("", ()),
])
def test_cors_origin_setting(monkeypatch, value, expected):
    from bootfleet.settings import Settings

    monkeypatch.setenv("BOOTFLEET_CORS_ORIGIN", value)
    assert Settings.from_env().cors_origins == expected


@pytest.mark.parametrize("value", ["*", "dash.example.com", "https://dash.example.com/path", "ftp://x.example"])
def test_cors_origin_setting_refuses_what_is_not_an_origin(monkeypatch, value):
    from bootfleet.errors import SettingsError
    from bootfleet.settings import Settings

    monkeypatch.setenv("BOOTFLEET_CORS_ORIGIN", value)
    with pytest.raises(SettingsError, match="BOOTFLEET_CORS_ORIGIN: expected an origin like https://"):
        Settings.from_env()
