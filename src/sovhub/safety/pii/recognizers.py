"""Presidio pattern recognizers for identifiers that carry their own evidence (check digits).

Every recognizer here is a :class:`presidio_analyzer.PatternRecognizer`: the regex finds
candidates, ``validate_result`` applies the identifier's checksum (False drops the candidate;
None keeps the pattern's score, which is the confidence *given* a valid checksum), and
``enhance_using_context`` raises the score when a label such as "IBAN", "PESEL" or "РНОКПП"
stands just before the number. Context is matched on raw text, not lemmas, so it works in every
script without an NLP model (the analyzer runs with Presidio's no-op NLP engine).

Class names start with ``Checked``: Presidio's registry loader finds recognizer classes by name
among all subclasses, so ours must not shadow its own (``EmailRecognizer``, ``PhoneRecognizer``).

All recognizers use the language code ``xx`` (multilingual, as spaCy names it): the identifiers
look the same whatever language the message around them is written in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import phonenumbers
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult

from . import checksums

__all__ = ["HOMOGLYPHS", "LANGUAGE", "ChecksumRecognizer", "default_recognizers"]

LANGUAGE = "xx"
# How far before a candidate a label may stand, in characters, and how much it adds.
_CONTEXT_WINDOW = 40
_CONTEXT_BOOST = 0.35
# Edges of a number: not glued to other digits or Latin letters. Not \b: in Japanese or Chinese
# a number sits between word characters ("電話は+81 3-1234-5678です").
L = r"(?<![0-9A-Za-z])"
R = r"(?![0-9A-Za-z])"
# Letters that render like Latin ones; identifiers (IBAN country codes, NIE prefixes, e-mail
# domains) are Latin, so a look-alike inside one is an evasion, not a different script. The
# analyzer folds them before matching, so context words are folded the same way.
HOMOGLYPHS = str.maketrans(
    "АВЕКМНОРСТХУаеорсхуіІјЈѕЅԁΑΒΕΖΗΙΚΜΝΟΡΤΥΧαοερ",
    "ABEKMHOPCTXYaeopcxyiIjJsSdABEZHIKMNOPTYXaoep",
)


def _canon(text: str) -> str:
    """Case- and look-alike-insensitive form, so "РНОКПП" (folded to "PHOKПП") meets "рнокпп"."""
    return text.upper().translate(HOMOGLYPHS).lower()


class ChecksumRecognizer(PatternRecognizer):
    """A pattern recognizer whose candidates must pass ``check``; context words raise the score."""

    check: Callable[[str], bool] = staticmethod(lambda text: True)

    def __init__(self, entity: str, patterns: list[Pattern], context: list[str]) -> None:
        super().__init__(
            supported_entity=entity,
            patterns=patterns,
            context=sorted({_canon(c) for c in context}),
            supported_language=LANGUAGE,
            name=f"sovhub_{entity.lower()}",
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        return None if type(self).check(pattern_text) else False

    def enhance_using_context(
        self,
        text: str,
        raw_recognizer_results: list[RecognizerResult],
        other_raw_recognizer_results: list[RecognizerResult],
        nlp_artifacts: Any,
        context: list[str] | None = None,
    ) -> list[RecognizerResult]:
        if not self.context:
            return raw_recognizer_results
        for result in raw_recognizer_results:
            if result.score >= 1.0:
                continue
            window = _canon(text[max(0, result.start - _CONTEXT_WINDOW) : result.start])
            if any(word in window for word in self.context):
                result.score = min(1.0, result.score + _CONTEXT_BOOST)
        return raw_recognizer_results


class CheckedIbanRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_iban)

    def __init__(self) -> None:
        super().__init__(
            "IBAN_CODE",
            [Pattern("iban", L + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?" + R, 0.95)],
            ["iban", "konto", "compte", "cuenta", "rachunek", "рахун", "счет", "口座", "حساب"],
        )


class CheckedCardRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_card)

    def __init__(self) -> None:
        super().__init__(
            "CREDIT_CARD",
            [
                Pattern("card_grouped", L + r"\d{4}(?:[ -]\d{4}){2}[ -]\d{1,7}" + R, 0.85),
                Pattern("card_amex", L + r"3[47]\d{2}[ -]\d{6}[ -]\d{5}" + R, 0.85),
                Pattern("card_plain", L + r"\d{13,19}" + R, 0.6),
            ],
            ["card", "visa", "mastercard", "karte", "carte", "tarjeta", "karta", "картк", "карт",
             "カード", "بطاقة", "cvv"],
        )


class CheckedUaRnokppRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_ua_rnokpp)

    def __init__(self) -> None:
        # One random 10-digit number in ten passes this check digit: alone it is weak evidence.
        super().__init__(
            "UA_RNOKPP",
            [Pattern("rnokpp", L + r"\d{10}" + R, 0.4)],
            ["рнокпп", "іпн", "інн", "инн", "ідентифікаційн", "податков", "rnokpp", "taxpayer", "tax id"],
        )


class CheckedPlPeselRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_pl_pesel)

    def __init__(self) -> None:
        super().__init__("PL_PESEL", [Pattern("pesel", L + r"\d{11}" + R, 0.6)], ["pesel"])


class CheckedDeSteuerIdRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_de_steuer_id)

    def __init__(self) -> None:
        super().__init__(
            "DE_STEUER_ID",
            [Pattern("steuer_id", L + r"\d{2} ?\d{3} ?\d{3} ?\d{3}" + R, 0.75)],
            ["steuer", "identifikationsnummer", "idnr", "tin", "tax"],
        )


class CheckedFrNirRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_fr_nir)

    def __init__(self) -> None:
        super().__init__(
            "FR_NIR",
            [Pattern("nir", L + r"[1-478] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}" + R, 0.85)],
            ["sécurité sociale", "securite sociale", "nir", "insee", "sécu"],
        )


class CheckedEsDniRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_es_dni)

    def __init__(self) -> None:
        super().__init__("ES_DNI", [Pattern("dni", L + r"\d{8}-?[A-Z]" + R, 0.85)], ["dni", "nif", "documento"])


class CheckedEsNieRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_es_nie)

    def __init__(self) -> None:
        super().__init__("ES_NIE", [Pattern("nie", L + r"[XYZ]-?\d{7}-?[A-Z]" + R, 0.9)], ["nie", "extranjero"])


class CheckedAadhaarRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_aadhaar)

    def __init__(self) -> None:
        super().__init__(
            "IN_AADHAAR",
            [
                Pattern("aadhaar_grouped", L + r"[2-9]\d{3}[ -]\d{4}[ -]\d{4}" + R, 0.7),
                Pattern("aadhaar_plain", L + r"[2-9]\d{11}" + R, 0.45),
            ],
            ["aadhaar", "aadhar", "uidai", "आधार"],
        )


class CheckedUsSsnRecognizer(ChecksumRecognizer):
    check = staticmethod(checksums.valid_us_ssn)

    def __init__(self) -> None:
        # No check digit exists: the dashed shape is what makes a number look like an SSN.
        super().__init__(
            "US_SSN",
            [
                Pattern("ssn_dashed", L + r"\d{3}-\d{2}-\d{4}" + R, 0.6),
                Pattern("ssn_spaced", L + r"\d{3} \d{2} \d{4}" + R, 0.45),
                Pattern("ssn_plain", L + r"\d{9}" + R, 0.2),
            ],
            ["ssn", "social security", "ss#"],
        )


_EMAIL = r"(?<![\w.+-])[\w.+-]{1,64}@(?:[\w-]{1,63}\.)+[^\W\d_]{2,24}\b"


class CheckedEmailRecognizer(ChecksumRecognizer):
    """E-mail addresses; validated by shape only (Presidio's own uses tldextract, which downloads)."""

    @staticmethod
    def check(text: str) -> bool:
        local, _, domain = text.rpartition("@")
        return bool(local) and ".." not in text and not local.startswith(".") and not domain.startswith("-")

    def __init__(self) -> None:
        super().__init__("EMAIL_ADDRESS", [Pattern("email", _EMAIL, 0.95)], [])


class CheckedPhoneRecognizer(ChecksumRecognizer):
    """International numbers (+CC or 00CC), validated against libphonenumber's numbering plans."""

    @staticmethod
    def check(text: str) -> bool:
        digits = "".join(c for c in text if c.isdigit())
        if text.startswith("00"):
            digits = digits[2:]
        try:
            number = phonenumbers.parse("+" + digits, None)
        except phonenumbers.NumberParseException:
            return False
        return bool(phonenumbers.is_valid_number(number))

    def __init__(self) -> None:
        # \d{1,5}+ is possessive: a digit group never gives digits back, so a long digit run is split
        # one way only. Without it a failing start tried every split of up to 33 digits into 2-6 groups
        # (" +1" and 40 digits, repeated: 1 s per 20,000 characters; now under 1 ms).
        super().__init__(
            "PHONE_NUMBER",
            [Pattern("phone_intl", r"(?<![0-9A-Za-z+])(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(?\d{1,5}+\)?){2,6}" + R, 0.75)],
            ["phone", "tel", "mobile", "телефон", "тел", "telefon", "téléphone", "teléfono", "電話",
             "هاتف"],
        )


def default_recognizers() -> list[ChecksumRecognizer]:
    """One instance of every built-in recognizer (they are stateless after construction)."""
    return [
        CheckedIbanRecognizer(), CheckedCardRecognizer(), CheckedUaRnokppRecognizer(), CheckedPlPeselRecognizer(),
        CheckedDeSteuerIdRecognizer(), CheckedFrNirRecognizer(), CheckedEsDniRecognizer(), CheckedEsNieRecognizer(),
        CheckedAadhaarRecognizer(), CheckedUsSsnRecognizer(), CheckedEmailRecognizer(), CheckedPhoneRecognizer(),
    ]
