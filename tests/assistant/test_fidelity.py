"""Language fidelity: detection, instructions, the retry, and the per-model rate."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from sovhub.assistant.fidelity import (
    FidelityInterceptor,
    FidelityTracker,
    LanguageDetection,
    detect,
    detector_for,
    instruction,
    needs_retry,
    strengthen,
)
from sovhub.errors import ConfigError
from sovhub.hub import Hub
from sovhub.pipeline import ChatContext, ChatInterceptor, ChatResult, Principal

SAMPLES = {
    "en": "How do I renew my driving licence after moving house?",
    "uk": "Як мені оформити закордонний паспорт для дитини?",
    "pl": "Jak mogę złożyć wniosek o nowy dowód osobisty?",
    "de": "Wie melde ich meine neue Wohnung beim Bürgeramt an?",
    "fr": "Comment puis-je renouveler ma carte d'identité en ligne ?",
    "es": "¿Cómo puedo pedir cita previa para renovar el pasaporte?",
    "ar": "كيف يمكنني تجديد بطاقة الهوية الإماراتية عبر الإنترنت؟",
    "ja": "引っ越しをしたら、どこで住所変更の手続きをすればいいですか？",
}


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_detects_each_deployment_language(lang: str) -> None:
    assert detect(SAMPLES[lang]) == lang


@pytest.mark.parametrize("text", ["ok", "Hola", "12345 67", "👍👍", "", "https://example.org/a/b/c"])
def test_short_or_ambiguous_text_is_not_guessed(text: str) -> None:
    assert detect(text) is None


def test_code_and_links_do_not_sway_detection() -> None:
    text = "```python\nprint('hello world, this is english code')\n```\nWie beantrage ich Kindergeld für mein Kind?"
    assert detect(text) == "de"


def test_detection_is_restricted_to_the_deployment_languages() -> None:
    assert detect(SAMPLES["uk"], ["en", "de"]) != "uk"
    assert detector_for(["de", "en"]) is detector_for(["en", "de", "EN"])  # one detector per language set


def test_unknown_or_too_few_languages_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="'xx' is not a language"):
        LanguageDetection(["en", "xx"])
    with pytest.raises(ConfigError, match="'english' is not a language"):
        LanguageDetection(["english", "de"])
    with pytest.raises(ConfigError, match="at least two"):
        LanguageDetection(["en"])


@pytest.mark.parametrize("lang", sorted(SAMPLES))
def test_instructions_are_written_in_their_language(lang: str) -> None:
    normal, strong = instruction(lang), instruction(lang, strong=True)
    assert normal != strong and len(strong) > len(normal)
    if lang != "en":
        assert detect(strong) == lang


def test_instruction_for_a_language_without_a_translation_names_it() -> None:
    assert instruction("pt") == "Answer in Portuguese."
    assert "ONLY in Portuguese" in instruction("pt", strong=True)


def test_strengthen_swaps_the_instruction_and_reminds_without_touching_the_original() -> None:
    messages = [
        {"role": "system", "content": "You help citizens.\n\n" + instruction("uk")},
        {"role": "user", "content": SAMPLES["uk"]},
    ]
    out = strengthen(messages, "uk")
    assert out[0]["content"] == "You help citizens.\n\n" + instruction("uk", strong=True)
    assert out[1]["content"].startswith(SAMPLES["uk"]) and "українською" in out[1]["content"]
    assert messages[1]["content"] == SAMPLES["uk"]  # the stored conversation keeps the original
    # A system message that held only the instruction is replaced, not left empty.
    only = strengthen([{"role": "system", "content": instruction("de")}, {"role": "user", "content": "x"}], "de")
    assert [m["role"] for m in only] == ["system", "user"] and only[0]["content"] == instruction("de", strong=True)


def test_tracker_counts_per_model_and_exports_metrics() -> None:
    registry = CollectorRegistry()
    tracker = FidelityTracker(registry)
    assert tracker.record("small", "uk", "uk") == "right"
    assert tracker.record("small", "uk", "en") == "wrong"
    assert tracker.record("small", "uk", None) == "undetermined"
    assert tracker.record("small", "uk", "uk", retry=True) == "right"
    # Gibberish long enough to judge, and an answer that never came, count against the model.
    assert tracker.record("small", "uk", None, text="xq zvr " * 10) == "unreadable"
    assert tracker.record("small", "uk", None, failed=True) == "failed"
    tracker.record("big", "de", "de")
    snap = tracker.snapshot()
    counts = {"answers": 5, "right": 1, "wrong": 1, "unreadable": 1, "failed": 1, "undetermined": 1,
              "rate": 0.25, "retries": 1, "fixed_by_retry": 1}
    assert snap["small"] == {**counts, "languages": {"uk": counts}}
    assert snap["big"]["rate"] == 1.0 and set(snap["big"]["languages"]) == {"de"}
    assert tracker.language_rate("small", "uk") == (4, 0.25) and tracker.language_rate("small", "de") is None
    value = registry.get_sample_value
    assert value("sovhub_assistant_language_fidelity_ratio", {"model": "small"}) == 0.25
    assert value("sovhub_assistant_language_answers_total", {"model": "small", "expected": "uk", "outcome": "wrong"}) == 1
    assert value("sovhub_assistant_language_retries_total", {"model": "small", "fixed": "yes"}) == 1


def _ctx(messages: list[dict[str, str]], *, assistant: bool = True, lang: str | None = None) -> ChatContext:
    return ChatContext(
        request_id="r1", principal=Principal(org_id=None, user_id=1), model="smol", messages=messages,
        params={}, stream=True, lang=lang, conversation_id="c1" if assistant else None,
    )


def _result(text: str, finish: str | None = "stop") -> ChatResult:
    return ChatResult(text=text, finish_reason=finish, prompt_tokens=1, completion_tokens=1, latency_ms=1.0,
                      backend_name="b")


async def test_interceptor_instructs_checks_and_drives_one_retry(hub: Hub) -> None:
    interceptor = FidelityInterceptor(hub)
    assert isinstance(interceptor, ChatInterceptor)
    ctx = _ctx([{"role": "system", "content": "You help citizens."}, {"role": "user", "content": SAMPLES["pl"]}])
    await interceptor.before(ctx)
    assert ctx.lang == "pl"
    assert ctx.messages[0]["content"] == "You help citizens.\n\n" + instruction("pl")
    assert await interceptor.check_output(ctx, "anything", final=True) is None

    wrong = _result("You can apply for a new identity card at your local town hall, online or in person.")
    await interceptor.after(ctx, wrong)
    assert interceptor.needs_retry(ctx, wrong)
    retry_messages = interceptor.retry_messages(ctx)
    assert instruction("pl", strong=True) in retry_messages[0]["content"]
    right = _result("Wniosek o dowód osobisty można złożyć w urzędzie gminy albo przez internet.")
    await interceptor.after(ctx, right)
    assert not interceptor.needs_retry(ctx, right)  # once only
    snap = hub.services.get(FidelityTracker).snapshot()["smol"]
    assert (snap["wrong"], snap["retries"], snap["fixed_by_retry"]) == (1, 1, 1)


async def test_interceptor_leaves_api_requests_alone(hub: Hub) -> None:
    interceptor = FidelityInterceptor(hub)
    messages = [{"role": "user", "content": SAMPLES["fr"]}]
    ctx = _ctx(list(messages), assistant=False)
    await interceptor.before(ctx)
    assert ctx.messages == messages and ctx.lang is None
    await interceptor.after(ctx, _result("An English answer to a French question, which is fine for the API."))
    assert hub.services.get(FidelityTracker).snapshot() == {}
    flagged = _ctx(list(messages), assistant=False)
    flagged.state["assistant"] = True
    await interceptor.before(flagged)
    assert flagged.messages[0] == {"role": "system", "content": instruction("fr")}


async def test_short_messages_fall_back_to_earlier_ones_then_the_ui_language(hub: Hub) -> None:
    interceptor = FidelityInterceptor(hub)
    ctx = _ctx([{"role": "user", "content": SAMPLES["es"]}, {"role": "assistant", "content": "Claro."},
                {"role": "user", "content": "¿Y?"}])
    await interceptor.before(ctx)
    assert ctx.lang == "es"
    ui = _ctx([{"role": "user", "content": "ok"}], lang="ja-JP")
    await interceptor.before(ui)
    assert ui.lang == "ja" and ui.messages[0]["content"] == instruction("ja")
    unknown = _ctx([{"role": "user", "content": "ok"}], lang="sw")
    await interceptor.before(unknown)
    assert "fidelity_lang" not in unknown.state and unknown.messages == [{"role": "user", "content": "ok"}]
    await interceptor.after(unknown, _result("Whatever language at all, nothing was expected here."))
    assert "smol" not in hub.services.get(FidelityTracker).snapshot()


async def test_no_retry_for_blocked_undetermined_or_unexpected_answers(hub: Hub) -> None:
    interceptor = FidelityInterceptor(hub)
    ctx = _ctx([{"role": "user", "content": SAMPLES["de"]}])
    await interceptor.before(ctx)
    blocked = _result("This answer was stopped by the content filter part way.", finish="content_filter")
    await interceptor.after(ctx, blocked)
    assert not interceptor.needs_retry(ctx, blocked)
    assert not needs_retry(ctx, _result("OK"))  # too short to judge
    plain = _ctx([{"role": "user", "content": "ok"}])
    assert not needs_retry(plain, _result("An English answer that nobody asked to be in German."))


def test_plugin_registers_the_interceptor(hub: Hub) -> None:
    assert any(isinstance(i, FidelityInterceptor) for i in hub.interceptors)
