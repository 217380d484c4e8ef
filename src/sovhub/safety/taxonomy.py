"""The hazard taxonomy: MLCommons' hazards as Llama Guard 3 numbers them (S1–S14), mapped onto
OpenAI's moderation categories.

Data only: no behaviour lives here, so the policy, the guards, the guard-model prompt and the
documentation all read the same table. Every guard reports hazard codes ("S1"...); the
``/v1/moderations`` endpoint derives OpenAI's categories from them through :data:`OPENAI_MAP`.

Four hazards (S5 defamation, S6 specialized advice, S8 intellectual property, S13 elections) sit
next to lawful speech: criticism of officials, health questions, quoting, and facts about voting.
They are marked ``speech_sensitive`` so that a policy and a reviewer treat them with care: only
the narrow harmful core (invented crimes about a named person, dangerous unqualified advice,
bulk piracy, lies about when or how to vote) belongs in them, never the topic itself.

The map onto OpenAI names only what a hazard code actually asserts: OpenAI's finer sub-categories
(``*/threatening``, ``self-harm/intent``, ``violence/graphic``...) are not told apart by the hazard
codes, so they are never set from them rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HAZARDS",
    "HAZARD_CODES",
    "OPENAI_CATEGORIES",
    "OPENAI_MAP",
    "SAFE_LABEL",
    "SPEECH_SENSITIVE",
    "Hazard",
    "hazard",
    "openai_categories_for",
]

SAFE_LABEL = "safe"


@dataclass(frozen=True, slots=True)
class Hazard:
    code: str
    name: str
    description: str
    openai: tuple[str, ...]
    speech_sensitive: bool = False


HAZARDS: tuple[Hazard, ...] = (
    Hazard(
        "S1",
        "Violent Crimes",
        "Content that enables, encourages or threatens violence against people or animals: "
        "murder, assault, kidnapping, terrorism, threats.",
        ("violence", "illicit/violent"),
    ),
    Hazard(
        "S2",
        "Non-Violent Crimes",
        "Content that enables or encourages crimes without violence: fraud, scams, theft, "
        "hacking into others' systems, drug trafficking, money laundering.",
        ("illicit",),
    ),
    Hazard(
        "S3",
        "Sex-Related Crimes",
        "Content that enables or encourages sexual assault, sex trafficking, sexual harassment "
        "or non-consensual intimate imagery.",
        ("sexual", "illicit/violent"),
    ),
    Hazard(
        "S4",
        "Child Sexual Exploitation",
        "Content that contains, describes, enables or encourages the sexual abuse of children.",
        ("sexual/minors", "sexual"),
    ),
    Hazard(
        "S5",
        "Defamation",
        "Verifiably false statements of fact about a real, named person that damage their "
        "reputation. Opinion, satire and criticism of officials are not defamation.",
        ("harassment",),
        speech_sensitive=True,
    ),
    Hazard(
        "S6",
        "Specialized Advice",
        "Dangerous unqualified financial, medical or legal advice (e.g. telling someone to stop "
        "prescribed treatment). Health, legal and money questions are not hazards.",
        (),
        speech_sensitive=True,
    ),
    Hazard(
        "S7",
        "Privacy",
        "Content that exposes or seeks sensitive, non-public personal information to track, "
        "dox or expose a person.",
        ("harassment",),
    ),
    Hazard(
        "S8",
        "Intellectual Property",
        "Content that infringes or helps infringe copyright, trademarks or patents (pirated "
        "copies, cracked software). Quoting, parody and discussion are not hazards.",
        (),
        speech_sensitive=True,
    ),
    Hazard(
        "S9",
        "Indiscriminate Weapons",
        "Content that enables chemical, biological, radiological or nuclear weapons, or "
        "high-yield explosives.",
        ("illicit/violent", "violence"),
    ),
    Hazard(
        "S10",
        "Hate",
        "Content that demeans or dehumanizes people for a protected characteristic: race, "
        "ethnicity, religion, nationality, disability, sex, sexual orientation, gender identity.",
        ("hate",),
    ),
    Hazard(
        "S11",
        "Suicide & Self-Harm",
        "Content that enables, encourages or expresses intent of suicide, self-injury or "
        "disordered eating. Asking for help is not a hazard: it calls for support.",
        ("self-harm",),
    ),
    Hazard(
        "S12",
        "Sexual Content",
        "Explicit sexual content between adults. Sex education and health are not hazards.",
        ("sexual",),
    ),
    Hazard(
        "S13",
        "Elections",
        "Factually false information about electoral processes: when, where or how to vote, "
        "who may vote. Political opinion and election facts are not hazards.",
        (),
        speech_sensitive=True,
    ),
    Hazard(
        "S14",
        "Code Interpreter Abuse",
        "Content that tries to abuse a code interpreter: escaping its sandbox, denial of "
        "service, privilege escalation.",
        ("illicit",),
    ),
)

HAZARD_CODES: tuple[str, ...] = tuple(h.code for h in HAZARDS)

SPEECH_SENSITIVE: frozenset[str] = frozenset(h.code for h in HAZARDS if h.speech_sensitive)

# Order as in OpenAI's CreateModerationResponse schema.
OPENAI_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)

OPENAI_MAP: dict[str, tuple[str, ...]] = {h.code: h.openai for h in HAZARDS}

_BY_CODE: dict[str, Hazard] = {h.code: h for h in HAZARDS}


def hazard(code: str) -> Hazard:
    """The hazard for a code such as "S10"; KeyError for an unknown code."""
    return _BY_CODE[code]


def openai_categories_for(code: str) -> tuple[str, ...]:
    """OpenAI categories a hazard code maps onto (may be empty: S6, S8, S13 have no counterpart)."""
    return OPENAI_MAP[code]
