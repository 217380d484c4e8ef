"""The language-fidelity evaluation: ask the embedded model everyday questions in each language and
count its answers as right, wrong language, unreadable or failed (what `sovhub locales fidelity` prints).

The live tracker (:mod:`.fidelity`) counts what people were answered; this asks on demand, so an
operator can see, before any citizen does, which languages a model writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..backends.base import BackendConfig, CancelToken
from ..errors import SovhubError
from .fidelity import FidelityTracker, detector_for, instruction

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["PROMPTS", "evaluate_embedded"]

# Two everyday questions per language, written in it.
PROMPTS: dict[str, tuple[str, str]] = {
    "en": ("How do I renew my passport?", "What documents do I need to rent a flat?"),
    "uk": ("Як поновити паспорт?", "Які документи потрібні, щоб орендувати квартиру?"),
    "pl": ("Jak odnowić paszport?", "Jakie dokumenty są potrzebne do wynajęcia mieszkania?"),
    "de": ("Wie verlängere ich meinen Reisepass?", "Welche Unterlagen brauche ich, um eine Wohnung zu mieten?"),
    "fr": ("Comment renouveler mon passeport ?", "Quels documents faut-il pour louer un appartement ?"),
    "es": ("¿Cómo renuevo mi pasaporte?", "¿Qué documentos necesito para alquilar un piso?"),
    "ar": ("كيف أجدد جواز سفري؟", "ما المستندات التي أحتاجها لاستئجار شقة؟"),
    "ja": ("パスポートを更新するにはどうすればいいですか？", "アパートを借りるにはどんな書類が必要ですか？"),
}


def evaluate_embedded(hub: Hub, languages: Sequence[str], max_tokens: int = 96) -> dict[str, Any]:
    """Load the embedded model, ask PROMPTS in `languages`, return the tracker's snapshot for it."""
    from ..backends.embedded import EmbeddedBackend

    s = hub.settings
    model = s.embedded_model_id
    options = {"path": s.embedded_model_path} if s.embedded_model_path else {}
    backend = EmbeddedBackend(BackendConfig(name="fidelity-eval", kind="embedded", models=[model], options=options),
                              threads=s.embedded_threads, context=s.embedded_context)
    tracker = FidelityTracker()
    detector = detector_for(s.assistant.languages)

    async def run() -> None:
        await backend.start()
        try:
            for lang in languages:
                for question in PROMPTS.get(lang, ()):
                    messages = [{"role": "system", "content": instruction(lang)}, {"role": "user", "content": question}]
                    text: list[str] = []
                    try:
                        async for chunk in backend.chat_stream(model, messages, {"max_tokens": max_tokens,
                                                                                 "temperature": 0.0}, CancelToken()):
                            for choice in chunk.get("choices", []):
                                text.append((choice.get("delta") or {}).get("content") or "")
                    except SovhubError:
                        tracker.record(model, lang, None, failed=True)
                        continue
                    answer = "".join(text)
                    tracker.record(model, lang, detector.detect(answer), text=answer)
        finally:
            await backend.close()

    asyncio.run(run())
    return tracker.snapshot()
