"""Language fidelity: answer people in the language they wrote in, and measure how often models do.

Detection uses lingua (high-accuracy mode), restricted to the deployment's languages
(``assistant.languages``): fewer candidates means fewer confusions (Ukrainian is never taken
for Russian on a deployment that does not serve Russian). A detector takes seconds to build
and ~300 MB for eight languages, so one is built per language set per process and shared.

Short or ambiguous text ("ok", "Hola", a number) yields ``None``: guessing would instruct the
model in the wrong language more often than it helps.

The web chat service drives the retry (it owns the stream): after an answer,
``interceptor.needs_retry(ctx, result)`` says whether it came in the wrong language, and
``strengthen(messages, lang)`` gives the messages to send once more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge

from sovhub import linear_re

from ..errors import ConfigError
from ..pipeline import ChatContext, ChatResult, OutputVerdict

if TYPE_CHECKING:
    from lingua import LanguageDetector

    from ..hub import Hub

__all__ = [
    "DEFAULT_LANGUAGES",
    "FidelityInterceptor",
    "FidelityTracker",
    "LanguageDetection",
    "detect",
    "readable",
    "reminder",
    "detector_for",
    "instruction",
    "needs_retry",
    "strengthen",
]

log = logging.getLogger("sovhub.assistant.fidelity")

DEFAULT_LANGUAGES = ("en", "uk", "pl", "de", "fr", "es", "ar", "ja")
# Below this many letters (CJK characters count triple: each carries a word's worth) text is
# too short to tell languages apart reliably.
MIN_LETTERS = 8
MIN_CONFIDENCE = 0.5
MIN_MARGIN = 0.2
# Enough text to decide; lingua's cost grows with length.
MAX_DETECT_CHARS = 2000

# (normal, strong) instruction per language, written in that language: small models follow an
# instruction in the target language more reliably than an English one naming it.
_INSTRUCTIONS: dict[str, tuple[str, str]] = {
    "en": (
        "Answer in English.",
        "Answer ONLY in English, even if the sources or earlier messages are in another language.",
    ),
    "uk": (
        "Відповідай українською мовою.",
        "Відповідай ЛИШЕ українською мовою, навіть якщо джерела чи попередні повідомлення іншою мовою. "
        "Не переходь на російську чи англійську.",
    ),
    "pl": (
        "Odpowiadaj po polsku.",
        "Odpowiadaj WYŁĄCZNIE po polsku, nawet jeśli źródła lub wcześniejsze wiadomości są w innym języku.",
    ),
    "de": (
        "Antworte auf Deutsch.",
        "Antworte AUSSCHLIESSLICH auf Deutsch, auch wenn Quellen oder frühere Nachrichten in einer anderen "
        "Sprache sind.",
    ),
    "fr": (
        "Réponds en français.",
        "Réponds UNIQUEMENT en français, même si les sources ou les messages précédents sont dans une autre langue.",
    ),
    "es": (
        "Responde en español.",
        "Responde ÚNICAMENTE en español, aunque las fuentes o los mensajes anteriores estén en otro idioma.",
    ),
    "ar": (
        "أجب باللغة العربية.",
        "أجب باللغة العربية فقط، حتى لو كانت المصادر أو الرسائل السابقة بلغة أخرى.",
    ),
    "ja": (
        "日本語で回答してください。",
        "必ず日本語だけで回答してください。参考資料や前のメッセージが他の言語で書かれていても、日本語で答えてください。",
    ),
}
# A reminder appended to the person's last message on the retry: the last words a model reads.
_REMINDERS: dict[str, str] = {
    "en": "(Please answer in English.)",
    "uk": "(Будь ласка, відповідай українською.)",
    "pl": "(Proszę odpowiedzieć po polsku.)",
    "de": "(Bitte auf Deutsch antworten.)",
    "fr": "(Merci de répondre en français.)",
    "es": "(Por favor, responde en español.)",
    "ar": "(من فضلك أجب باللغة العربية.)",
    "ja": "（日本語で答えてください。）",
}

_CODE = linear_re.compile(f"```.*?(```|$)|`[^`\\n]*`|https?://[^{linear_re.SPACE}]+", dotall=True)
_CJK = linear_re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def _language_name(lang: str) -> str:
    import pycountry

    found = pycountry.languages.get(alpha_2=lang)
    return str(found.name) if found is not None else lang


def instruction(lang: str, strong: bool = False) -> str:
    """The answer-in-this-language instruction, in that language (English naming it otherwise)."""
    pair = _INSTRUCTIONS.get(lang)
    if pair is None:
        name = _language_name(lang)
        pair = (f"Answer in {name}.", f"Answer ONLY in {name}, whatever the language of the sources or messages.")
    return pair[1] if strong else pair[0]


def reminder(lang: str) -> str:
    """The short reminder the retry adds to the last question, in that language."""
    return _REMINDERS.get(lang) or f"(Please answer in {_language_name(lang)}.)"


class LanguageDetection:
    """A lingua detector over a fixed set of ISO 639-1 codes; build through :func:`detector_for`."""

    def __init__(self, languages: Sequence[str]) -> None:
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        chosen = []
        for code in languages:
            iso = getattr(IsoCode639_1, code.upper(), None)
            if iso is None or len(code) != 2:
                raise ConfigError(f"assistant.languages: {code!r} is not a language the detector knows (ISO 639-1)")
            chosen.append(Language.from_iso_code_639_1(iso))
        if len(chosen) < 2:
            raise ConfigError("assistant.languages: name at least two languages to tell apart")
        self.languages = tuple(languages)
        self._detector: LanguageDetector = (
            LanguageDetectorBuilder.from_languages(*chosen).with_preloaded_language_models().build()
        )

    def confidences(self, text: str) -> list[tuple[str, float]]:
        """(language, confidence) best first, for the text with code and links removed."""
        cleaned = _CODE.sub(" ", text)[:MAX_DETECT_CHARS]
        values = self._detector.compute_language_confidence_values(cleaned)
        return [(v.language.iso_code_639_1.name.lower(), float(v.value)) for v in values]

    def detect(self, text: str) -> str | None:
        cleaned = _CODE.sub(" ", text)
        letters = sum(1 for ch in cleaned if ch.isalpha()) + 2 * len(_CJK.findall(cleaned))
        if letters < MIN_LETTERS:
            return None
        ranked = self.confidences(cleaned)
        if not ranked:
            return None
        best, score = ranked[0]
        runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
        if score < MIN_CONFIDENCE or score - runner_up < MIN_MARGIN:
            return None
        return best


_detectors: dict[tuple[str, ...], LanguageDetection] = {}
_detectors_lock = threading.Lock()


def detector_for(languages: Sequence[str] = DEFAULT_LANGUAGES) -> LanguageDetection:
    """The process's detector for this language set (built on first use; seconds)."""
    key = tuple(sorted({code.lower() for code in languages}))
    found = _detectors.get(key)
    if found is None:
        with _detectors_lock:
            found = _detectors.get(key)
            if found is None:
                found = _detectors[key] = LanguageDetection(key)
    return found


def detect(text: str, languages: Sequence[str] = DEFAULT_LANGUAGES) -> str | None:
    """The ISO 639-1 code of the text's language among `languages`, or None when unsure."""
    return detector_for(languages).detect(text)


def _last_user_texts(messages: Sequence[dict[str, Any]], count: int) -> list[str]:
    out = []
    for message in reversed(messages):
        if message.get("role") == "user":
            out.append(_content_text(message.get("content")))
            if len(out) == count:
                break
    return out


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _with_instruction(messages: Sequence[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    # Appended to the first system message rather than added mid-conversation: several chat
    # templates (served by vLLM, llama.cpp) reject a system message anywhere but first.
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content'].rstrip()}\n\n{text}"
    else:
        out.insert(0, {"role": "system", "content": text})
    return out


def strengthen(messages: Sequence[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Messages for the retry: the strong instruction replaces the normal one, and the last user
    message ends with a short reminder. A copy: the stored conversation keeps the original text."""
    weak, strong = instruction(lang), instruction(lang, strong=True)
    out = [dict(m) for m in messages]
    for message in out:
        if message.get("role") == "system" and isinstance(message.get("content"), str):
            message["content"] = message["content"].replace(f"\n\n{weak}", "").replace(weak, "").strip()
    out = [m for m in out if not (m.get("role") == "system" and m.get("content") == "")]
    out = _with_instruction(out, strong)
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = f"{message['content']}\n\n{reminder(lang)}"
            break
    return out


Outcome = Literal["right", "wrong", "unreadable", "failed", "undetermined"]
# Longer answers than this that no language can be read in are counted unreadable, not undetermined.
UNREADABLE_MIN_CHARS = 40
# Text in the right script is not yet text in the language: a small model's Cyrillic gibberish reads
# as Ukrainian to a character-based detector. At least this share of its words must be words of the
# detected language (wordfreq's offline lists) for it to count as written in it.
KNOWN_WORDS_MIN = 0.5
READABLE_MIN_WORDS = 6
# Written without spaces: wordfreq needs a segmenter (MeCab) to find their words, so they are not checked.
_UNSEGMENTED = frozenset({"ja", "zh", "ko", "th"})
_WORD = linear_re.compile(f"[{linear_re.LETTER}]{{2,}}")
# Languages not written in Latin letters: only the words in their own script are judged. An English
# aside ("(The truth is clear)") in a Ukrainian answer otherwise lifted a recorded SmolLM2 gibberish
# ("Ябложење відесет: Раздразів старого місце ...") over the bar, since English words are in the lists too.
_SCRIPT = {"uk": linear_re.compile("[\u0400-\u04ff]"), "ar": linear_re.compile("[\u0600-\u06ff]")}


def readable(text: str, lang: str) -> bool:
    """Whether most words of `text` are words of `lang` (True when there are too few to tell)."""
    if lang in _UNSEGMENTED:
        return True
    words = _WORD.findall(_CODE.sub(" ", text))[:300]
    script = _SCRIPT.get(lang)
    if script is not None:
        words = [word for word in words if script.match(word)]
    if len(words) < READABLE_MIN_WORDS:
        return True
    from wordfreq import zipf_frequency

    known = sum(1 for word in words if zipf_frequency(word.casefold(), lang) >= 1.0)
    return known / len(words) >= KNOWN_WORDS_MIN


@dataclass(slots=True)
class _Counts:
    right: int = 0
    wrong: int = 0
    unreadable: int = 0
    failed: int = 0
    undetermined: int = 0
    retries: int = 0
    fixed_by_retry: int = 0

    @property
    def decided(self) -> int:
        return self.right + self.wrong + self.unreadable + self.failed

    def view(self) -> dict[str, Any]:
        return {
            "answers": self.decided + self.undetermined, "right": self.right, "wrong": self.wrong,
            "unreadable": self.unreadable, "failed": self.failed, "undetermined": self.undetermined,
            "rate": (self.right / self.decided) if self.decided else None,
            "retries": self.retries, "fixed_by_retry": self.fixed_by_retry,
        }


class FidelityTracker:
    """Counts, per model, answers in the expected language; Prometheus metrics and a dict.

    The rate counts first attempts only: it says how well the model follows the person's
    language unaided, which is what an operator choosing a model needs to know.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: dict[str, _Counts] = {}
        self._by_language: dict[tuple[str, str], _Counts] = {}
        self._answers = Counter(
            "sovhub_assistant_language_answers",
            "Assistant answers by whether they came in the person's language (first attempts)",
            ["model", "expected", "outcome"], registry=self.registry,
        )
        self._retries = Counter(
            "sovhub_assistant_language_retries",
            "Answers asked again with a stronger language instruction, and whether that fixed them",
            ["model", "fixed"], registry=self.registry,
        )
        self._rate = Gauge(
            "sovhub_assistant_language_fidelity_ratio",
            "Share of first-attempt answers in the person's language (undetermined ones left out)",
            ["model"], registry=self.registry,
        )

    def record(
        self, model: str, expected: str, detected: str | None, *, retry: bool = False, text: str = "",
        failed: bool = False,
    ) -> Outcome:
        """Count one answer. `failed`: none came (an error); a long `text` in no language, or whose words
        are not words of the language it was detected in, is unreadable."""
        outcome: Outcome
        if failed:
            outcome = "failed"
        elif detected is not None and not readable(text, detected):
            outcome = "unreadable"
        elif detected is not None:
            outcome = "right" if detected == expected else "wrong"
        else:
            outcome = "unreadable" if len(text.strip()) >= UNREADABLE_MIN_CHARS else "undetermined"
        with self._lock:
            counts = self._counts.setdefault(model, _Counts())
            per_language = self._by_language.setdefault((model, expected), _Counts())
            if retry:
                for c in (counts, per_language):
                    c.retries += 1
                    c.fixed_by_retry += outcome == "right"
                self._retries.labels(model, "yes" if outcome == "right" else "no").inc()
                return outcome
            for c in (counts, per_language):
                setattr(c, outcome, getattr(c, outcome) + 1)
            self._answers.labels(model, expected, outcome).inc()
            if counts.decided:
                self._rate.labels(model).set(counts.right / counts.decided)
        return outcome

    def language_rate(self, model: str, lang: str) -> tuple[int, float] | None:
        """(first answers counted, share right) of `model` in `lang`; None before any."""
        with self._lock:
            c = self._by_language.get((model, lang))
            if c is None or not c.decided:
                return None
            return c.decided, c.right / c.decided

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """{model: {answers, right, wrong, unreadable, failed, undetermined, rate, retries, fixed_by_retry,
        languages: {lang: the same counts}}} for the admin page and the CLI."""
        with self._lock:
            out = {}
            for model, c in sorted(self._counts.items()):
                out[model] = c.view()
                out[model]["languages"] = {
                    lang: lc.view() for (m, lang), lc in sorted(self._by_language.items()) if m == model
                }
            return out



# ctx.state keys this module writes; the web app reads them.
STATE_LANG = "fidelity_lang"
STATE_DETECTED = "fidelity_detected"
STATE_RETRIED = "fidelity_retried"
STATE_OUTCOME = "fidelity_outcome"
ASSISTANT_FLAG = "assistant"


def unfit(ctx: ChatContext) -> str | None:
    """Why the answer recorded in `ctx` cannot be shown as it is: "language", "unreadable", or None."""
    outcome = ctx.state.get(STATE_OUTCOME)
    return {"wrong": "language", "unreadable": "unreadable"}.get(outcome) if isinstance(outcome, str) else None


def needs_retry(ctx: ChatContext, result: ChatResult, languages: Sequence[str] = DEFAULT_LANGUAGES) -> bool:
    """True once per request: the answer is in another language than the person's, or unreadable
    (as the interceptor recorded it; without a record, when its detected language is another)."""
    expected = ctx.state.get(STATE_LANG)
    if not expected or ctx.state.get(STATE_RETRIED) or result.finish_reason == "content_filter":
        return False
    if STATE_OUTCOME in ctx.state:
        return unfit(ctx) is not None
    detected = ctx.state.get(STATE_DETECTED, "unset")
    if detected == "unset":
        detected = detect(result.text, languages)
    return detected is not None and detected != expected


class FidelityInterceptor:
    """Detects the person's language, instructs the model, records whether the answer followed.

    Acts only on assistant conversations (``ctx.conversation_id`` set, or
    ``ctx.state["assistant"]`` true): an API client's own prompts are left untouched.
    """

    name = "language-fidelity"
    checks_output = False

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.languages = tuple(hub.settings.assistant.languages)
        self.tracker = hub.services.get(FidelityTracker)

    @staticmethod
    def applies(ctx: ChatContext) -> bool:
        return ctx.conversation_id is not None or bool(ctx.state.get(ASSISTANT_FLAG))

    def language_of(self, ctx: ChatContext) -> str | None:
        """The last user message's language; else the recent ones together; else the UI's (ctx.lang)."""
        detector = detector_for(self.languages)
        recent = _last_user_texts(ctx.messages, 3)
        lang = detector.detect(recent[0]) if recent else None
        if lang is None and len(recent) > 1:
            lang = detector.detect("\n".join(reversed(recent)))
        if lang is None and ctx.lang:
            base = ctx.lang.split("-")[0].lower()
            lang = base if base in self.languages else None
        return lang

    async def before(self, ctx: ChatContext) -> None:
        if not self.applies(ctx):
            return
        # In a thread: the first call builds the detector (seconds), which must not stall the loop.
        lang = await asyncio.to_thread(self.language_of, ctx)
        if lang is None:
            return
        ctx.lang = lang
        ctx.state[STATE_LANG] = lang
        ctx.messages = _with_instruction(ctx.messages, instruction(lang))

    async def check_output(self, ctx: ChatContext, text: str, final: bool) -> OutputVerdict | None:
        return None

    async def after(self, ctx: ChatContext, result: ChatResult) -> None:
        expected = ctx.state.get(STATE_LANG)
        if not expected or result.finish_reason == "content_filter":
            return
        detected = await asyncio.to_thread(detector_for(self.languages).detect, result.text)
        ctx.state[STATE_DETECTED] = detected
        # In a worker thread: the readability check looks words up (the word lists load on first use).
        outcome = await asyncio.to_thread(lambda: self.tracker.record(
            ctx.model, expected, detected, retry=bool(ctx.state.get(STATE_RETRIED)), text=result.text))
        ctx.state[STATE_OUTCOME] = outcome
        if outcome == "wrong":
            log.info("answer of %s in %s, expected %s", ctx.model, detected, expected,
                     extra={"request_id": ctx.request_id})

    def needs_retry(self, ctx: ChatContext, result: ChatResult) -> bool:
        return needs_retry(ctx, result, self.languages)

    def retry_messages(self, ctx: ChatContext) -> list[dict[str, Any]]:
        """Marks the context as retried and returns the strengthened messages to send."""
        lang = ctx.state[STATE_LANG]
        ctx.state[STATE_RETRIED] = True
        ctx.state.pop(STATE_DETECTED, None)
        ctx.state.pop(STATE_OUTCOME, None)
        return strengthen(ctx.messages, lang)
