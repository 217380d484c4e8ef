"""The web assistant's quota message in each UI language (a person's own limit, access.user_limits).

Python-side, as the safety explanations are: the message is sent in an SSE error event, not
rendered from a template, so it cannot be in the templates' gettext catalog.
"""

from __future__ import annotations

import math

__all__ = ["quota_message"]

_TEXT = {
    "en": "You have reached your usage limit for now. You can write again in {wait}.",
    "de": "Sie haben Ihr Nutzungslimit vorerst erreicht. Sie können in {wait} wieder schreiben.",
    "fr": "Vous avez atteint votre limite d'utilisation pour le moment. Vous pourrez écrire de nouveau dans {wait}.",
    "es": "Ha alcanzado su límite de uso por ahora. Podrá volver a escribir dentro de {wait}.",
    "pl": "Osiągnięto na razie limit użycia. Można znów pisać za {wait}.",
    "uk": "Ви поки що вичерпали свій ліміт використання. Писати знову можна через {wait}.",
    "ja": "現在、利用上限に達しました。{wait}後に再度送信できます。",
    "ar": "لقد بلغت حد الاستخدام المسموح لك حاليًا. يمكنك الكتابة مجددًا بعد {wait}.",
}
# Minutes and seconds, the units a wait is shown in.
_UNITS = {
    "en": ("{n} min", "{n} s"), "de": ("{n} Min.", "{n} Sek."), "fr": ("{n} min", "{n} s"),
    "es": ("{n} min", "{n} s"), "pl": ("{n} min", "{n} s"), "uk": ("{n} хв", "{n} с"),
    "ja": ("{n}分", "{n}秒"), "ar": ("{n} دقيقة", "{n} ثانية"),
}


def quota_message(lang: str | None, retry_after_s: float) -> str:
    """The quota message in ``lang`` (its language part; English when unknown), with the wait."""
    base = (lang or "en").replace("_", "-").split("-")[0].lower()
    base = base if base in _TEXT else "en"
    minutes_unit, seconds_unit = _UNITS[base]
    seconds = max(1, math.ceil(retry_after_s))
    wait = minutes_unit.format(n=math.ceil(seconds / 60)) if seconds >= 120 else seconds_unit.format(n=seconds)
    return _TEXT[base].format(wait=wait)
