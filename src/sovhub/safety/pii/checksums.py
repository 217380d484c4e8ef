"""Check-digit rules of the identifiers the PII recognizers report.

A regex alone flags every 10- or 11-digit number (order ids, timestamps, phone numbers) as a
national identifier; the check digit is what turns a shape into evidence. Each function takes
the matched text, ignores the separators people type (spaces, dashes, dots) and answers whether
the number is well-formed *and* its check digit(s) agree. They are pure and allocation-light:
they run only on regex candidates, never on the whole message.
"""

from __future__ import annotations

import datetime as _dt

from sovhub import linear_re

__all__ = [
    "compact",
    "valid_aadhaar",
    "valid_card",
    "valid_de_steuer_id",
    "valid_es_dni",
    "valid_es_nie",
    "valid_fr_nir",
    "valid_iban",
    "valid_pl_pesel",
    "valid_ua_rnokpp",
    "valid_us_ssn",
    "luhn_ok",
    "verhoeff_ok",
]

_SEPARATORS = linear_re.compile(f"[{linear_re.SPACE}\\-./]")


def compact(text: str) -> str:
    """The identifier without the separators people put between its groups, upper-cased."""
    return _SEPARATORS.sub("", text).upper()


def _digits(text: str, length: int) -> list[int] | None:
    value = compact(text)
    if len(value) != length or not value.isascii() or not value.isdigit():
        return None
    return [ord(c) - 48 for c in value]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_ok(number: str) -> bool:
    check = 0
    for i, ch in enumerate(reversed(number)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[i % 8][ord(ch) - 48]]
    return check == 0


def valid_card(text: str) -> bool:
    """Payment card: 13-19 digits, a known issuer prefix range, Luhn."""
    value = compact(text)
    if not (13 <= len(value) <= 19) or not value.isascii() or not value.isdigit():
        return False
    if value[0] not in "23456":  # Mir/Mastercard 2-series, Amex/Diners, Visa, Mastercard, Discover/UnionPay
        return False
    return len(set(value)) > 1 and luhn_ok(value)


def valid_iban(text: str) -> bool:
    """IBAN: country code, two check digits, BBAN; ISO 7064 MOD 97-10 over the rearranged string."""
    value = compact(text)
    if not (15 <= len(value) <= 34) or not value.isascii() or not value.isalnum():
        return False
    if not (value[:2].isalpha() and value[2:4].isdigit()):
        return False
    rearranged = value[4:] + value[:4]
    remainder = 0
    for ch in rearranged:
        # Letters count as two digits (A=10 ... Z=35); fold as we go to keep integers small.
        remainder = (remainder * (100 if ch.isalpha() else 10) + int(ch, 36)) % 97
    return remainder == 1


def valid_ua_rnokpp(text: str) -> bool:
    """Ukrainian taxpayer number (РНОКПП): 10 digits, weighted sum mod 11 mod 10."""
    d = _digits(text, 10)
    if d is None or len(set(d)) == 1:
        return False
    weights = (-1, 5, 7, 9, 4, 6, 10, 5, 7)
    return sum(w * x for w, x in zip(weights, d, strict=False)) % 11 % 10 == d[9]


def valid_pl_pesel(text: str) -> bool:
    """Polish PESEL: 11 digits, a real birth date (century in the month), weighted check digit."""
    d = _digits(text, 11)
    if d is None:
        return False
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    if (10 - sum(w * x for w, x in zip(weights, d, strict=False)) % 10) % 10 != d[10]:
        return False
    year, month, day = d[0] * 10 + d[1], d[2] * 10 + d[3], d[4] * 10 + d[5]
    century = {0: 1900, 1: 2000, 2: 2100, 3: 2200, 4: 1800}.get(month // 20)
    if century is None:
        return False
    try:
        _dt.date(century + year, month % 20, day)
    except ValueError:
        return False
    return True


def valid_de_steuer_id(text: str) -> bool:
    """German Steuerliche Identifikationsnummer: 11 digits, digit-repetition rule, ISO 7064 MOD 11,10."""
    d = _digits(text, 11)
    if d is None or d[0] == 0:
        return False
    counts = [d[:10].count(x) for x in set(d[:10])]
    # In the first ten digits exactly one digit repeats (twice, or three times since 2016).
    if sorted(c for c in counts if c > 1) not in ([2], [3]):
        return False
    product = 10
    for x in d[:10]:
        total = (x + product) % 10 or 10
        product = (total * 2) % 11
    check = 11 - product
    return (0 if check == 10 else check) == d[10]


_D = f"[{linear_re.DIGIT}]"
_NIR_SHAPE = linear_re.compile(f"^[1-478]{_D}{{4}}(?:{_D}{{2}}|2[AB]){_D}{{8}}$")


def valid_fr_nir(text: str) -> bool:
    """French NIR (social security number): 13 characters (Corsica 2A/2B) and a 97-complement key."""
    value = compact(text)
    if not _NIR_SHAPE.match(value):
        return False
    body = value[:13].replace("2A", "19").replace("2B", "18")
    return 97 - int(body) % 97 == int(value[13:])


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def valid_es_dni(text: str) -> bool:
    """Spanish DNI: 8 digits and the letter of their remainder mod 23."""
    value = compact(text)
    if len(value) != 9 or not value[:8].isascii() or not value[:8].isdigit():
        return False
    return _DNI_LETTERS[int(value[:8]) % 23] == value[8]


def valid_es_nie(text: str) -> bool:
    """Spanish NIE (foreigners): X/Y/Z, 7 digits, letter as for a DNI with X=0, Y=1, Z=2."""
    value = compact(text)
    if len(value) != 9 or value[0] not in "XYZ":
        return False
    return valid_es_dni(str("XYZ".index(value[0])) + value[1:])


def valid_aadhaar(text: str) -> bool:
    """Indian Aadhaar: 12 digits, not starting 0/1, not a palindrome, Verhoeff check digit."""
    value = compact(text)
    if len(value) != 12 or not value.isascii() or not value.isdigit() or value[0] in "01":
        return False
    return value != value[::-1] and verhoeff_ok(value)


def valid_us_ssn(text: str) -> bool:
    """US SSN: no check digit, so the SSA's structure rules (area, group, serial) are the evidence."""
    value = compact(text)
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    area, group, serial = value[:3], value[3:5], value[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    # Numbers the SSA has published in advertising and never issues.
    return value not in ("078051120", "219099999", "123456789") and len(set(value)) > 1
