"""docs/configuration.md is generated from the settings (gateway/settings_docs.py): it must match
what the generator writes now, and every setting must carry a description to write."""

from pathlib import Path

from gateway.settings import Settings
from gateway.settings_docs import _is_model, main, render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _fields(model: type, path: str = ""):
    for name, field in model.model_fields.items():
        dotted = f"{path}{name}"
        if _is_model(field.annotation):
            yield from _fields(field.annotation, f"{dotted}.")
        else:
            yield dotted, field


def test_configuration_page_is_current() -> None:
    assert PAGE.read_text() == render(), "docs/configuration.md is stale: run `make docs-config`"


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in _fields(Settings) if not (field.description or "").strip()]
    assert not missing, f"add description=... in gateway/settings.py for: {missing}"


def test_every_setting_is_on_the_page() -> None:
    text = PAGE.read_text()
    absent = [name for name, _ in _fields(Settings) if f"| `{name}` |" not in text]
    assert not absent


def test_check_mode_reports_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("listen port", "some other words"))
    assert main(["--check", str(stale)]) == 1
    assert main([str(stale)]) == 0
    assert main(["--check", str(stale)]) == 0
