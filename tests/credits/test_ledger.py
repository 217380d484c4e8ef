"""The ledger: double entry, unique ids, two-phase with expiry, no overdraft, exact splits, verify."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from sovhub.credits.amounts import MICRO, SHARE_WHOLE, format_credits, parse_credits, parse_share, split_by_shares
from sovhub.credits.ledger import Entry, Ledger, LedgerRefused
from sovhub.credits.programmes import grant_credits
from sovhub.credits.tables import CreditAccount, CreditPartnerUsage, CreditTransfer
from sovhub.errors import InvalidRequest
from sovhub.store.base import utcnow
from tests.conftest import run_cli


def _shares(draw_counts: list[int]) -> list[tuple[int, int]]:
    total = sum(draw_counts)
    raw = [c * SHARE_WHOLE // total for c in draw_counts]
    raw[0] += SHARE_WHOLE - sum(raw)
    return [(i, s) for i, s in enumerate(raw) if s > 0]


@settings(max_examples=300, deadline=None)
@given(amount=st.integers(0, 10**15), counts=st.lists(st.integers(1, 1000), min_size=1, max_size=12))
def test_split_parts_always_sum_to_the_whole_and_stay_within_one_of_their_quota(amount, counts) -> None:
    shares = _shares(counts)
    parts = split_by_shares(amount, shares)
    assert sum(parts.values()) == amount
    for key, share in shares:
        quota_floor = amount * share // SHARE_WHOLE
        assert quota_floor <= parts[key] <= quota_floor + 1
    assert split_by_shares(amount, shares) == parts  # deterministic


def test_split_gives_the_leftover_to_the_largest_remainders_first() -> None:
    # 100 by 1/3 each (3333, 3333, 3334): quotas 33.33, 33.33, 33.34 -> the last gets the extra one.
    assert split_by_shares(100, [(1, 3333), (2, 3333), (3, 3334)]) == {1: 33, 2: 33, 3: 34}
    # Equal remainders: the earlier partner first.
    assert split_by_shares(1, [(1, 5000), (2, 5000)]) == {1: 1, 2: 0}
    with pytest.raises(ValueError):
        split_by_shares(10, [(1, 5000), (2, 4000)])


def test_amounts_parse_exactly_and_refuse_what_is_not_a_micro_credit() -> None:
    assert parse_credits("12.5") == 12_500_000
    assert parse_credits("0.000001") == 1
    assert format_credits(12_500_000) == "12.5" and format_credits(-1) == "-0.000001"
    for bad in ("0.0000001", "-1", "nan", "inf", "abc", "1e30"):
        with pytest.raises(InvalidRequest):
            parse_credits(bad)
    assert parse_share("33.33") == 3333
    for bad in ("0", "100.01", "33.333", "x"):
        with pytest.raises(InvalidRequest):
            parse_share(bad)


def _grant_account(hub, programme, credits="100") -> tuple[int, int]:
    grant = grant_credits(hub, programme.name, "acme", parse_credits(credits), reason="pilot", actor="tests")
    ledger = hub.services.get(Ledger)
    return ledger.account_id("grant", grant.id), ledger.account_id("usage", programme.id)


def test_programme_budget_is_funded_by_partners_and_grants_cannot_exceed_it(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    pool = ledger.account_id("programme", programme.id)
    assert ledger.available(ledger.balances([pool])[pool]) == 1000 * MICRO
    with hub.db.session() as s:
        partners = {a.name: a.credits_posted - a.debits_posted
                    for a in s.scalars(select(CreditAccount).where(CreditAccount.kind == "partner"))}
    assert partners == {"partner National Fund": -600 * MICRO, "partner Bank": -300 * MICRO,
                        "partner Foundation": -100 * MICRO}
    grant_credits(hub, programme.name, "acme", 900 * MICRO, reason="big", actor="tests")
    with pytest.raises(InvalidRequest) as exc:
        grant_credits(hub, programme.name, "acme", 101 * MICRO, reason="too big", actor="tests")
    assert exc.value.code == "programme_budget_exceeded" and "100 credits left" in exc.value.message
    assert ledger.verify() == []


def test_two_phase_post_part_void_and_ids_applied_once(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _grant_account(hub, programme)
    ledger.apply([Entry("r1", "pending", debit=grant, credit=usage, amount=30 * MICRO, request_id="req-1"),
                  Entry("r2", "pending", debit=grant, credit=usage, amount=20 * MICRO, request_id="req-2")])
    g = ledger.balances([grant])[grant]
    assert (g.debits_pending, g.debits_posted, ledger.available(g)) == (50 * MICRO, 0, 50 * MICRO)
    result = ledger.apply([Entry("r1:post", "post", pending_id="r1", amount=12_345_678),
                           Entry("r2:void", "void", pending_id="r2")])
    assert result.applied == 2 and not result.refused
    # A retry of the same ids changes nothing (duplicates), resolving a pending twice is refused.
    again = ledger.apply([Entry("r1:post", "post", pending_id="r1", amount=12_345_678)])
    assert again.duplicates == 1 and again.applied == 0
    twice = ledger.apply([Entry("r1:post-again", "post", pending_id="r1", amount=1)])
    assert twice.refused and "already resolved" in twice.refused[0][1]
    over = ledger.apply([Entry("r3", "pending", debit=grant, credit=usage, amount=MICRO),
                         Entry("r3:post", "post", pending_id="r3", amount=MICRO + 1)])
    assert [e.id for e, _ in over.refused] == ["r3:post"]
    g = ledger.balances([grant])[grant]
    assert g.debits_posted == 12_345_678 and g.debits_pending == MICRO
    # The posted usage is split across the partners exactly.
    with hub.db.session() as s:
        split = s.scalar(select(CreditTransfer.split).where(CreditTransfer.id == "r1:post"))
        totals = sorted(s.scalars(select(CreditPartnerUsage.amount)))
    assert sorted(split.values()) == sorted([7_407_407, 3_703_703, 1_234_568]) == totals
    # A partner's running total that disagrees with the parts is a mismatch verify reports.
    with hub.db.session() as s:
        s.execute(update(CreditPartnerUsage).where(CreditPartnerUsage.amount == 1_234_568).values(amount=1))
    assert any("usage total is 1, its parts sum to 1234568" in str(p) for p in ledger.verify())
    with hub.db.session() as s:
        s.execute(update(CreditPartnerUsage).where(CreditPartnerUsage.amount == 1).values(amount=1_234_568))
    assert ledger.verify() == []


def test_a_grant_can_never_be_overdrawn(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _grant_account(hub, programme, "10")
    with pytest.raises(LedgerRefused):
        ledger.apply([Entry("big", "pending", debit=grant, credit=usage, amount=10 * MICRO + 1)], strict=True)
    # Pending holds count: 6 + 5 > 10.
    ledger.apply([Entry("a", "pending", debit=grant, credit=usage, amount=6 * MICRO)], strict=True)
    refused = ledger.apply([Entry("b", "pending", debit=grant, credit=usage, amount=5 * MICRO)])
    assert [e.id for e, _ in refused.refused] == ["b"]
    # The database refuses it too, whatever code writes (CHECK constraint).
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), hub.db.session() as s:
        s.execute(update(CreditAccount).where(CreditAccount.id == grant).values(debits_posted=11 * MICRO))
    assert ledger.verify() == []


def test_pending_transfers_expire_after_their_timeout(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _grant_account(hub, programme)
    now = utcnow()
    ledger.apply([Entry("old", "pending", debit=grant, credit=usage, amount=MICRO, timeout_at=now - timedelta(seconds=1)),
                  Entry("new", "pending", debit=grant, credit=usage, amount=MICRO, timeout_at=now + timedelta(hours=1))])
    assert ledger.expire_pending(now) == 1
    assert ledger.expire_pending(now) == 0
    g = ledger.balances([grant])[grant]
    assert g.debits_pending == MICRO and g.debits_posted == 0
    with hub.db.session() as s:
        kinds = dict(s.execute(select(CreditTransfer.pending_id, CreditTransfer.kind)
                               .where(CreditTransfer.pending_id.is_not(None))).all())
    assert kinds == {"old": "expire"}
    assert ledger.verify() == []


def test_concurrent_reservations_never_exceed_the_balance(hub, programme) -> None:
    ledger = hub.services.get(Ledger)
    grant, usage = _grant_account(hub, programme, "10")

    def reserve(i: int) -> bool:
        try:
            ledger.apply([Entry(f"c{i}", "pending", debit=grant, credit=usage, amount=MICRO)], strict=True)
            return True
        except LedgerRefused:
            return False

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(reserve, range(40)))
    assert sum(results) == 10
    assert ledger.balances([grant])[grant].debits_pending == 10 * MICRO
    assert ledger.verify() == []


def test_verify_reports_a_tampered_balance_and_the_cli_exits_non_zero(
    hub, programme, data_dir, database_url, monkeypatch
) -> None:
    if database_url:
        monkeypatch.setenv("SOVHUB_DATABASE_URL", database_url)
    ledger = hub.services.get(Ledger)
    grant, usage = _grant_account(hub, programme)
    assert run_cli(data_dir, "ledger", "verify") == 0
    with hub.db.session() as s:
        s.execute(update(CreditAccount).where(CreditAccount.id == usage).values(credits_posted=5))
    problems = [str(p) for p in ledger.verify()]
    assert any("credits_posted is 5, its transfers sum to 0" in p for p in problems)
    assert any("do not sum to zero" in p for p in problems)
    assert run_cli(data_dir, "ledger", "verify") == 1
