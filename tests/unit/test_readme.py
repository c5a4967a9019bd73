"""The README's settings table is generated from the settings; keep it in step."""

from __future__ import annotations

from imgkit.settings import settings_markdown
from tests.conftest import REPO


def test_readme_settings_table_is_current() -> None:
    readme = (REPO / "README.md").read_text()
    assert settings_markdown() in readme, (
        "README's settings table is stale: paste the output of `imgkit settings --markdown`")


def test_quick_start_commands_exist() -> None:
    readme = (REPO / "README.md").read_text()
    for command in ("bash deploy/dev.sh", "bash .ci/run"):
        assert command in readme
    assert (REPO / "deploy" / "dev.sh").exists() and (REPO / ".ci" / "run").exists()
