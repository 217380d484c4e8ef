"""Grounded-answer evaluation in the 8 languages, on the default box (bundled model, real embeddings).

    PYTHONPATH=src .venv/bin/python bench/grounded_bench.py                # bench/results/grounded.json
    PYTHONPATH=src .venv/bin/python bench/grounded_bench.py --set heldout  # bench/results/grounded-heldout.json
    PYTHONPATH=src .venv/bin/python bench/grounded_bench.py --calibrate    # similarity of the best passage only

Two sets. The calibration set (bench/data/grounded_eval.json, which calibrated the relevance floor
and the question kinds' margin) gives each locale's collection one national document; a person
whose interface is in that language asks three questions the document answers and three it does
not (two of them ordinary requests: a hello-world program, a bread recipe). The held-out set
(bench/data/grounded_heldout.json) adds a second document per collection and asks four answerable
questions, three that ask for facts the knowledge base does not hold (public services, the
person's own records) and two ordinary requests (a greeting, a SQL query). Everything goes through
the real web app (sign-in, CSRF, the streaming endpoint). Counted per language:

- answerable: the answer holds the fact (its number), cites a passage of the locale's
  collection, and is written in the person's language (lingua, the deployment's languages);
- unanswerable (asks for facts): the answer cites nothing; and, separately, is the translated
  "I do not know";
- ordinary requests: cite nothing; "answered" when the answer is not "I do not know" (the
  bundled model writes English only, so elsewhere the default box declines them);
- wrong language: any answer whose detected language is another one;
- kinds: what ``QuestionKinds`` makes of every question, fact-seeking or ordinary, against its label
  (independent of the model: it decides for every language once a model writes it).

`--calibrate` prints, for every question, the cosine similarity of the best passage among the
searched collections: the relevance floor (assistant.kb_min_similarity) sits between the
answerable and the unanswerable questions' values.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fastapi.testclient import TestClient  # noqa: E402
from procs import machine_info  # noqa: E402

from sovhub.app import create_app  # noqa: E402
from sovhub.assistant.fidelity import detector_for  # noqa: E402
from sovhub.assistant.grounding import dont_know, quoted_label, searched_collections  # noqa: E402
from sovhub.assistant.knowledge import KnowledgeBase  # noqa: E402
from sovhub.assistant.locales import LocaleRegistry  # noqa: E402
from sovhub.assistant.people import create_user  # noqa: E402
from sovhub.assistant.question_kinds import CHAT, QuestionKinds  # noqa: E402
from sovhub.hub import Hub, build_hub  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402

SETS = {"calibration": ROOT / "bench" / "data" / "grounded_eval.json",
        "calib2": ROOT / "bench" / "data" / "grounded_calib2.json",
        "heldout": ROOT / "bench" / "data" / "grounded_heldout.json"}
RESULTS = {"calibration": "grounded.json", "calib2": "grounded-calib2.json", "heldout": "grounded-heldout.json"}
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_MARKS = re.compile(r"\[\d+\]|^>\s*", re.M)


def load_eval(name: str = "calibration") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SETS[name].read_text(encoding="utf-8"))["locales"]
    return data


def questions(item: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """(label, question, fact) of one locale: answerable, unanswerable (asks for facts) or chat."""
    out: list[tuple[str, str, str | None]] = [("answerable", q, fact) for q, fact in item["answerable"]]
    if "unanswerable_kinds" in item:  # the calibration set: ordinary requests among its "unanswerable"
        out += [("chat" if kind == "chat" else "unanswerable", q, None)
                for q, kind in zip(item["unanswerable"], item["unanswerable_kinds"], strict=True)]
    else:
        out += [("unanswerable", q, None) for q, _kind in item["unanswerable"]]
        out += [("chat", q, None) for q in item.get("chat", [])]
    return out


def build(data_dir: Path, set_name: str = "calibration") -> Hub:
    # The safety pipeline is left out: it is measured in safety_bench.py, and its warm-up takes minutes here.
    settings = load_settings(data_dir=str(data_dir), safety={"enabled": False})
    hub = build_hub(settings)
    kb = hub.services.get(KnowledgeBase)
    registry = hub.services.get(LocaleRegistry)
    # The calibration set's document, and a second set's own second document (never both second ones).
    documents = [load_eval("calibration")] + ([load_eval(set_name)] if set_name != "calibration" else [])
    for n, data in enumerate(documents):
        for code, item in data.items():
            kb.ingest_bytes(f"{code}-{n}.md", item["document"].encode(), registry.get(code).default_collection)
    return hub


def calibrate(hub: Hub, set_name: str) -> list[dict[str, Any]]:
    kb = hub.services.get(KnowledgeBase)
    registry = hub.services.get(LocaleRegistry)
    rows = []
    for code, item in load_eval(set_name).items():
        searched = searched_collections(hub, registry.get(code))
        for kind, question, _fact in questions(item):
            hits = kb.search(question, k=4, collections=searched)
            best = max((h.similarity or 0.0 for h in hits), default=0.0)
            rows.append({"locale": code, "kind": kind, "question": question, "best_similarity": round(best, 4)})
    return rows


def _events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in body.split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if name and data:
            out.append((name.group(1), json.loads(data.group(1))))
    return out


def ask(client: TestClient, question: str) -> dict[str, Any]:
    token = _CSRF.search(client.get("/").text)
    assert token, "no CSRF token"
    response = client.post("/c", data={"content": question, "csrf_token": token.group(1)},
                           headers={"accept": "text/event-stream"})
    events = _events(response.text)
    done = next((d for n, d in events if n == "done"), None)
    error = next((d for n, d in events if n == "error"), None)
    text = "".join(d["text"] for n, d in events if n == "delta")
    return {"text": text, "citations": (done or {}).get("citations") or [], "error": error}


_COUNTS = ("answerable", "answered", "unanswerable", "cited_nothing", "dont_know", "chat", "chat_cited_nothing",
           "chat_answered", "wrong_language", "errors", "kinds_right", "kinds_asked")


def evaluate(hub: Hub, set_name: str) -> dict[str, Any]:
    languages = hub.settings.assistant.languages
    detector = detector_for(languages)
    registry = hub.services.get(LocaleRegistry)
    kinds = hub.services.get(QuestionKinds)
    create_user(hub, "eval@example.org", PASSWORD, display_name="Eval")
    per_language: dict[str, Any] = {}
    answers: list[dict[str, Any]] = []
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        token = _CSRF.search(client.get("/login").text)
        assert token
        client.post("/login", data={"email": "eval@example.org", "password": PASSWORD,
                                    "csrf_token": token.group(1), "next": "/"}, follow_redirects=False)
        for code, item in load_eval(set_name).items():
            pack = registry.get(code)
            lang, own = pack.language, pack.default_collection
            token = _CSRF.search(client.get("/").text)
            assert token
            client.post("/lang", data={"lang": lang, "csrf_token": token.group(1), "next": "/"},
                        follow_redirects=False)
            counts: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
            counts["seconds"] = 0.0
            for label, question, fact in questions(item):
                started = time.perf_counter()
                got = ask(client, question)
                counts["seconds"] += time.perf_counter() - started
                plain = _MARKS.sub("", got["text"].replace(quoted_label(lang), "")).strip()
                detected = detector.detect(plain)
                wrong = detected is not None and detected != lang
                # "I do not know", alone or followed by what the knowledge base does hold.
                declined = got["text"].strip().startswith(dont_know(lang))
                counts["wrong_language"] += wrong
                counts["errors"] += got["error"] is not None
                counts[label] += 1
                if label == "answerable":
                    ok = (fact is not None and fact in got["text"] and not wrong and detected == lang
                          and any(c["collection"] == own for c in got["citations"]))
                    counts["answered"] += ok
                elif label == "unanswerable":
                    ok = not got["citations"]
                    counts["cited_nothing"] += ok
                    counts["dont_know"] += declined
                else:
                    ok = not got["citations"]
                    counts["chat_cited_nothing"] += ok
                    counts["chat_answered"] += ok and not declined and got["error"] is None
                kind = kinds.kind(question)
                counts["kinds_asked"] += 1
                counts["kinds_right"] += (kind == CHAT) == (label == "chat")
                answers.append({"locale": code, "kind": label, "question": question, "ok": ok,
                                "question_kind": kind, "detected": detected, "answer": got["text"][:400],
                                "cited": [c["collection"] for c in got["citations"]]})
            counts["seconds"] = round(counts["seconds"], 1)
            per_language[code] = counts
    total = {k: sum(v[k] for v in per_language.values()) for k in _COUNTS}
    return {"set": set_name, "per_language": per_language, "total": total, "answers": answers,
            "model": hub.settings.embedded_model_id, "min_similarity": hub.settings.assistant.kb_min_similarity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="set_name", choices=sorted(SETS), default="calibration")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--out", default=None, help="result file [default: bench/results/grounded(-heldout).json]")
    args = parser.parse_args()
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / RESULTS[args.set_name]
    command = "bench/grounded_bench.py" + (f" --set {args.set_name}" if args.set_name != "calibration" else "")
    with tempfile.TemporaryDirectory() as tmp:
        hub = build(Path(tmp), args.set_name)
        try:
            if args.calibrate:
                for row in calibrate(hub, args.set_name):
                    print(json.dumps(row, ensure_ascii=False))  # noqa: T201
                return
            result = {"benchmark": "grounded answers in 8 languages", "config": {"command": command},
                      "machine": machine_info(), **evaluate(hub, args.set_name)}
        finally:
            hub.close()
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["total"]), json.dumps({k: v for k, v in result["per_language"].items()}))  # noqa: T201


if __name__ == "__main__":
    main()
