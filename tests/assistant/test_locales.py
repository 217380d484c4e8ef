"""Locale packs: the bundled eight load and speak their language; operators add and override packs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sovhub.assistant.fidelity import detect
from sovhub.assistant.locales import BUILTIN_PACKS, LocaleRegistry, load_pack, pack_dirs
from sovhub.errors import ConfigError, NotFound
from sovhub.hub import build_hub
from tests.conftest import make_settings

SHIPPED = ["ar-AE", "de-DE", "en-GB", "es-ES", "fr-FR", "ja-JP", "pl-PL", "uk-UA"]
EMERGENCY = {"ar-AE": "999", "de-DE": "112", "en-GB": "999", "es-ES": "112", "fr-FR": "112", "ja-JP": "119",
             "pl-PL": "112", "uk-UA": "112"}


@pytest.fixture(scope="module")
def registry() -> LocaleRegistry:
    return LocaleRegistry([BUILTIN_PACKS])


def test_the_eight_bundled_packs_load(registry: LocaleRegistry) -> None:
    assert registry.codes == SHIPPED
    assert registry.default.code == "en-GB"
    assert all(p.builtin for p in registry.packs())
    assert [p.code for p in registry.packs() if p.rtl] == ["ar-AE"]


@pytest.mark.parametrize("code", SHIPPED)
def test_each_pack_is_written_in_its_own_language(registry: LocaleRegistry, code: str) -> None:
    pack = registry.get(code)
    assert detect(pack.system_prompt) == pack.language
    assert detect(pack.guidance) == pack.language
    assert EMERGENCY[code] in pack.guidance and EMERGENCY[code] in pack.system_prompt
    assert len(pack.glossary) >= 8 and pack.lexicon and set(pack.lexicon) <= {f"S{i}" for i in range(1, 15)}
    composed = pack.compose_system_prompt()
    assert composed.startswith(pack.system_prompt) and pack.guidance in composed
    assert next(iter(pack.glossary)) in composed
    assert pack.compose_system_prompt(guidance=False, glossary=False) == pack.system_prompt
    c = pack.conventions
    assert c.decimal_separator != c.group_separator and c.phone_prefix.startswith("+")
    assert pack.default_collection.startswith("gov-")
    assert pack.summary()["direction"] == pack.direction


def test_match_picks_exact_then_language_then_default(registry: LocaleRegistry) -> None:
    assert registry.match("uk-UA").code == "uk-UA"
    assert registry.match("uk").code == "uk-UA"
    assert registry.match("de_AT").code == "de-DE"
    assert registry.match("en-US").code == "en-GB"
    assert registry.match("pt-BR").code == "en-GB"
    assert registry.match(None).code == "en-GB"
    with pytest.raises(NotFound, match="no locale pack 'pt-PT'"):
        registry.get("pt-PT")


def test_lexicons_are_exposed_for_the_safety_guard(registry: LocaleRegistry) -> None:
    paths = registry.lexicon_paths()
    assert len(paths) == 8 and all(p.name == "lexicon.yaml" and p.is_file() for p in paths)
    assert "купити підроблений паспорт" in registry.lexicons()["uk-UA"]["S2"]


def _copy_pack(src: str, dest_root: Path, code: str | None = None) -> Path:
    dest = dest_root / (code or src)
    shutil.copytree(BUILTIN_PACKS / src, dest)
    if code:
        manifest = dest / "pack.yaml"
        language, country = code.split("-")
        text = manifest.read_text(encoding="utf-8").replace(f"code: {src}", f"code: {code}")
        text = text.replace(f"language: {src[:2]}", f"language: {language}").replace(
            f"country: {src[3:]}", f"country: {country}")
        manifest.write_text(text, encoding="utf-8")
    return dest


def test_operators_add_and_override_packs_without_code(data_dir: Path, tmp_path: Path) -> None:
    _copy_pack("es-ES", data_dir / "locales", "es-MX")
    override = _copy_pack("uk-UA", data_dir / "locales")
    (override / "system_prompt.txt").write_text("Ви — помічник міністерства цифрової трансформації.", encoding="utf-8")
    extra = tmp_path / "ministry-packs"
    _copy_pack("pl-PL", extra, "pl-DE")
    settings = make_settings(data_dir, assistant={"locale_dirs": [str(extra), "more"]})
    assert pack_dirs(settings)[-1] == data_dir / "more"
    hub = build_hub(settings)
    try:
        registry = hub.services.get(LocaleRegistry)
        assert hub.services.get(LocaleRegistry) is registry
        assert {"es-MX", "pl-DE"} <= set(registry.codes)
        assert registry.get("uk-UA").system_prompt.startswith("Ви — помічник міністерства")
        assert not registry.get("uk-UA").builtin and registry.get("de-DE").builtin
        assert registry.match("es").code == "es-ES"  # same language: ties resolve by code, not folder order
    finally:
        hub.close()


def _broken(tmp_path: Path, edit: str, content: str | bytes | None) -> Path:
    pack = _copy_pack("de-DE", tmp_path)
    target = pack / edit
    if content is None:
        target.unlink()
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    return pack


@pytest.mark.parametrize(
    ("edit", "content", "message"),
    [
        ("guidance.md", None, "missing guidance.md"),
        ("system_prompt.txt", "   \n", "system_prompt.txt: is empty"),
        ("system_prompt.txt", b"\xff\xfe\xfa broken", "not UTF-8"),
        ("glossary.yaml", "term: [unclosed", "not valid YAML"),
        ("glossary.yaml", "- a list\n- not a mapping\n", "must map each term"),
        ("lexicon.yaml", "S99: [phrase]\n", "unknown hazard code 'S99'"),
        ("lexicon.yaml", "S1: []\n", "S1 must be a non-empty list"),
        ("lexicon.yaml", "- S1\n", "must map hazard codes"),
        ("pack.yaml", "just text\n", "must be a mapping"),
    ],
)
def test_broken_packs_are_refused_with_the_file_and_the_problem(
    tmp_path: Path, edit: str, content: str | bytes | None, message: str
) -> None:
    pack = _broken(tmp_path, edit, content)
    with pytest.raises(ConfigError, match=message) as info:
        load_pack(pack)
    assert str(pack) in info.value.message


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("direction: ltr", "direction: sideways", "unknown text direction 'sideways'"),
        ("code: de-DE", "code: german", "must look like uk-UA"),
        ("code: de-DE", "code: de-AT", "folder name must be the pack's code"),
        ("country: DE", "country: AT", "disagrees with language/country"),
        ("currency: EUR", "currency: euro", "conventions.currency"),
        ("native_name: Deutsch (Deutschland)", "colour: blue", "native_name: Field required"),
    ],
)
def test_invalid_manifests_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    pack = _copy_pack("de-DE", tmp_path)
    manifest = pack / "pack.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_pack(pack)


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        load_pack(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no locale pack 'xx-XX'"):
        LocaleRegistry([BUILTIN_PACKS], default="xx-XX")
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="is a file"):
        LocaleRegistry([BUILTIN_PACKS, a_file])
    # A broken operator pack stops the start with a clear error rather than being skipped silently.
    _broken(tmp_path / "ops", "lexicon.yaml", "S0: [x]\n")
    with pytest.raises(ConfigError, match="unknown hazard code 'S0'"):
        LocaleRegistry([BUILTIN_PACKS, tmp_path / "ops"])
    assert LocaleRegistry([BUILTIN_PACKS, tmp_path / "missing"]).codes == SHIPPED
