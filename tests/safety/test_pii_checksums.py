"""Check digits of every identifier: published valid examples, one-digit corruptions, and an
independent implementation (python-stdnum) as the oracle over many random numbers."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from stdnum import iban as std_iban
from stdnum import luhn as std_luhn
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.pl import pesel
from stdnum.ua import rntrc

from sovhub.safety.pii import checksums as c

CASES: list[tuple[Callable[[str], bool], list[str], list[str]]] = [
    (c.valid_ua_rnokpp, ["1759013776", "2530414071"], ["1759013770", "1759013775", "0000000000", "175901377"]),
    (c.valid_pl_pesel, ["44051401359", "02211307589"], ["44051401358", "02381307589", "4405140135"]),
    (c.valid_de_steuer_id, ["36574261809", "36 574 261 809"], ["36574261890", "36554266806", "06574261809"]),
    (c.valid_fr_nir, ["295109912611193", "2 95 10 99 126 111 93", "253072B07300470", "253072A07300443"],
     ["295109912611199", "253072C07300443", "595109912611193"]),
    (c.valid_es_dni, ["12345678Z", "12345678-Z"], ["12345678A", "1234567Z", "ABCDEFGHZ"]),
    (c.valid_es_nie, ["X1234567L", "Y1234567X", "Z1234567R"], ["X1234567A", "A1234567L", "X123456L"]),
    (c.valid_aadhaar, ["234123412346", "2341 2341 2346"], ["234123412347", "123412341234", "222222222222"]),
    (c.valid_us_ssn, ["536-22-1234", "078-05-1121"], ["000-12-3456", "666-12-3456", "900-12-3456",
                                                      "123-00-4567", "123-45-0000", "078-05-1120"]),
    (c.valid_iban, ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606",
                    "UA213223130000026007233566001", "PL61109010140000071219812874"],
     ["GB82WEST12345698765431", "DE89370400440532013001", "XX", "DE8937040044"]),
    (c.valid_card, ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"],
     ["4111 1111 1111 1112", "1234567812345670", "0000000000000000", "411111111111"]),
]


@pytest.mark.parametrize(("check", "valid", "invalid"), CASES, ids=[f.__name__ for f, _, _ in CASES])
def test_valid_and_invalid(check: Callable[[str], bool], valid: list[str], invalid: list[str]) -> None:
    for number in valid:
        assert check(number), number
    for number in invalid:
        assert not check(number), number


# An SSN has no check digit (only its structure is checked), so it is not in this one.
WITH_CHECK_DIGIT = [case for case in CASES if case[0] is not c.valid_us_ssn]


@pytest.mark.parametrize(("check", "valid", "invalid"), WITH_CHECK_DIGIT, ids=[f.__name__ for f, _, _ in WITH_CHECK_DIGIT])
def test_every_single_digit_change_of_a_valid_number_is_caught(
    check: Callable[[str], bool], valid: list[str], invalid: list[str]
) -> None:
    number = c.compact(valid[0])
    for i, ch in enumerate(number):
        if not ch.isdigit():
            continue
        for d in "0123456789":
            if d != ch:
                changed = number[:i] + d + number[i + 1:]
                assert not check(changed), changed


ORACLES = [
    (c.valid_ua_rnokpp, rntrc.is_valid, 10),
    (c.valid_pl_pesel, pesel.is_valid, 11),
    (c.valid_de_steuer_id, idnr.is_valid, 11),
    (c.valid_aadhaar, aadhaar.is_valid, 12),
    (c.valid_card, lambda s: std_luhn.is_valid(s) and s[0] in "23456" and len(set(s)) > 1, 16),
]


@pytest.mark.parametrize(("ours", "theirs", "length"), ORACLES, ids=[o[0].__name__ for o in ORACLES])
def test_agrees_with_independent_implementation(
    ours: Callable[[str], bool], theirs: Callable[[str], bool], length: int
) -> None:
    rng = random.Random(length)
    positives = 0
    for _ in range(20_000):
        number = "".join(rng.choice("0123456789") for _ in range(length))
        expected = bool(theirs(number))
        positives += expected
        assert ours(number) == expected, number
    assert positives > 0


def test_nir_dni_nie_iban_agree_with_oracle() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        body = f"{rng.choice('12')}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}{rng.randint(1, 95):02d}"
        body += f"{rng.randint(1, 990):03d}{rng.randint(1, 999):03d}"
        number = body + f"{97 - int(body) % 97:02d}"
        assert c.valid_fr_nir(number) == nir.is_valid(number), number
        n = f"{rng.randint(0, 99_999_999):08d}"
        for letter in "TRWAGZ":
            assert c.valid_es_dni(n + letter) == dni.is_valid(n + letter)
            assert c.valid_es_nie("X" + n[1:] + letter) == nie.is_valid("X" + n[1:] + letter)
    for sample in ["GB82WEST12345698765432", "DE89370400440532013000", "NL91ABNA0417164300"]:
        for i in range(4, len(sample)):
            if sample[i].isdigit():
                changed = sample[:i] + str((int(sample[i]) + 3) % 10) + sample[i + 1:]
                assert c.valid_iban(changed) == std_iban.is_valid(changed), changed


def test_luhn_and_verhoeff_primitives() -> None:
    assert c.luhn_ok("79927398713") and not c.luhn_ok("79927398710")
    assert c.verhoeff_ok("2363") and not c.verhoeff_ok("2364")
