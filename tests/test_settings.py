"""The settings schema: defaults, types, fallback with one warning, required values."""

from __future__ import annotations

import pytest

from base.errors import SettingsError
from base.settings import (
    SCHEMA,
    Settings,
    load_settings,
    parse_path_map,
    plugin_settings_map,
)


def load(raw: dict | None) -> tuple[Settings, list[str]]:
    warnings: list[str] = []
    return load_settings(raw, warnings.append), warnings


def test_nothing_saved_gives_every_default_silently() -> None:
    settings, warnings = load(None)
    assert warnings == []
    for spec in SCHEMA:
        value = getattr(settings, spec.name)
        if spec.name in ("plex_library", "path_map"):
            assert value == ()
        else:
            assert value == spec.default, spec.name


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("max_retries", 7, 7),
        ("max_retries", "9", 9),
        ("connect_timeout", 2.5, 2.5),
        ("enabled", False, False),
        ("enabled", "false", False),
        ("plex_url", "http://plex:32400/", "http://plex:32400"),
        ("plex_library", " Movies, Stash ,", ("Movies", "Stash")),
        ("reconcile_interval", "Weekly", "weekly"),
        ("max_tags", 0, 0),
    ],
)
def test_values_are_typed(name: str, given: object, expected: object) -> None:
    settings, warnings = load({name: given})
    assert getattr(settings, name) == expected
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("max_retries", "lots"),
        ("max_retries", 0),
        ("max_retries", 1000),
        ("read_timeout", float("nan")),
        ("enabled", "perhaps"),
        ("enabled", 3),
        ("reconcile_interval", "fortnightly"),
        ("path_map", "/data -> /media"),
        ("sync_tags", {"x": 1}),
    ],
)
def test_bad_optional_value_falls_back_with_one_warning(name: str, given: object) -> None:
    settings, warnings = load({name: given, "plex_url": "http://p:1", "plex_token": "tok"})
    spec = next(s for s in SCHEMA if s.name == name)
    expected = () if name == "path_map" else spec.default
    assert getattr(settings, name) == expected
    assert len(warnings) == 1 and name in warnings[0]
    assert settings.enabled is (given is False or True)  # never disables the plugin


def test_secret_value_is_not_echoed_in_a_warning() -> None:
    _, warnings = load({"plex_token": 12345678})
    assert warnings and "12345678" not in warnings[0]


def test_missing_required_value_names_it_and_where() -> None:
    settings, _ = load({"plex_token": "abc"})
    with pytest.raises(SettingsError) as info:
        settings.require()
    text = str(info.value)
    assert "plex_url" in text and "Settings" in text and "Plugins" in text
    assert "\n" not in text


def test_path_map_parses_longest_prefix_first() -> None:
    pairs = parse_path_map(r"/data=>/media; /data/special=>/mnt/x ; C:\Videos=>/videos")
    assert pairs[0] == ("/data/special", "/mnt/x")
    assert ("/data", "/media") in pairs and (r"C:\Videos", "/videos") in pairs


def test_plugin_id_is_matched_case_insensitively() -> None:
    assert plugin_settings_map({"stash2plex": {"plex_url": "u"}}) == {"plex_url": "u"}
    assert plugin_settings_map({"Other": {"a": 1}}) == {}
    assert plugin_settings_map(None) == {}


def test_master_switch_overrides_field_toggles() -> None:
    on, _ = load({"sync_tags": True})
    off, _ = load({"sync_master": False, "sync_tags": True})
    assert on.field_enabled("sync_tags") and not off.field_enabled("sync_tags")


def test_secrets_lists_the_token_only() -> None:
    settings, _ = load({"plex_token": "sekrit-token", "plex_url": "http://x"})
    assert settings.secrets() == ("sekrit-token",)
