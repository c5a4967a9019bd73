"""Settings come from IMGKIT_* variables; bad values fail with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgkit.errors import ConfigError
from imgkit.settings import Settings, load_settings, settings_markdown


def test_defaults_derive_paths_from_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGKIT_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.clickhouse_url == f"chdb://{tmp_path}/clickhouse"
    assert settings.sources_dir == tmp_path / "sources"
    assert settings.embedded_storage


def test_bad_values_name_the_variable_and_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGKIT_PORT", "eighty")
    monkeypatch.setenv("IMGKIT_CLICKHOUSE_URL", "mysql://db")
    monkeypatch.setenv("IMGKIT_RENDER_FORMATS", "jpeg,bmp")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    text = raised.value.message
    assert "IMGKIT_PORT='eighty'" in text and "valid integer" in text
    assert "IMGKIT_CLICKHOUSE_URL='mysql://db'" in text and "chdb://" in text
    assert "IMGKIT_RENDER_FORMATS" in text and "bmp" in text


def test_relative_chdb_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="absolute path"):
        load_settings(clickhouse_url="chdb://relative/dir")


def test_lists_from_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGKIT_INDEX_URLS", "http://a:8100, http://b:8100")
    assert load_settings().index_urls == ["http://a:8100", "http://b:8100"]


def test_every_setting_is_documented() -> None:
    table = settings_markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"`IMGKIT_{name.upper()}`" in table
