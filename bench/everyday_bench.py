"""False positives on everyday traffic, and recall on the hazard set, with the default guards.

    .venv/bin/python bench/everyday_bench.py --name everyday          # writes bench/results/everyday.json

Moderates every item of ``tests/safety/data/everyday.jsonl`` (432 safe everyday requests and model
answers, 8 languages) as ``/v1/moderations`` does and as the chat checks do under the default
policy (``sovhub.safety.everyday``), then the hazard evaluation set
(``tests/safety/data/eval.jsonl``) for recall, precision and F1 per language. The semantic guard
is the one the default settings build (encoder ``e5-int8``), trained on the bank in this checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from procs import machine_info, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "safety" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="everyday", help="result file name under bench/results/")
    parser.add_argument("--show", action="store_true", help="print every flagged everyday item")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from sovhub.embedder import Embedder
    from sovhub.safety.encoders import build_semantic_guard
    from sovhub.safety.eval import load_eval
    from sovhub.safety.everyday import false_positives, hazard_scores, load_everyday
    from sovhub.safety.lexicon import LexiconGuard
    from sovhub.safety.moderation import Moderator
    from sovhub.safety.policy import PolicyLexiconGuard, load_policy
    from sovhub.settings import load_settings

    info = machine_info()
    settings = load_settings()
    started = time.perf_counter()
    guard = build_semantic_guard(settings, Embedder(settings.embeddings_model_id))
    guard.ensure_ready()
    moderator = Moderator(guard, LexiconGuard())
    policy = load_policy(settings.safety.policy_file).policy
    policy_lexicon = PolicyLexiconGuard(policy.lexicon)
    ready_s = time.perf_counter() - started
    fp = false_positives(moderator, policy, load_everyday(DATA / "everyday.jsonl"), policy_lexicon.scan)
    hazards = hazard_scores(moderator, load_eval(DATA / "eval.jsonl"))
    result = {
        "benchmark": "false positives on everyday requests and answers; recall on the hazard set",
        "machine": info,
        "config": {"encoder": settings.safety.semantic_encoder, "model_digest": guard.model.digest[:20],
                   "cv_report": guard.model.cv_report, "ready_s": round(ready_s, 1)},
        "everyday": fp.as_dict(),
        "hazard": hazards,
    }
    path = write_result(args.name, result)
    o = fp.overall.as_dict()
    print(f"everyday: {o['n']} items, /v1/moderations flagged {o['moderations_flagged']} "  # noqa: T201
          f"({o['moderations_fpr']:.1%}), chat blocked {o['chat_blocked']} ({o['chat_fpr']:.1%})")
    for lang, c in fp.as_dict()["by_lang"].items():
        print(f"  {lang}: moderations {c['moderations_fpr']:.1%}  chat {c['chat_fpr']:.1%}")  # noqa: T201
    h = hazards["overall"]
    print(f"hazard set: R {h['recall']:.3f} P {h['precision']:.3f} F1 {h['f1']:.3f} FPR {h['fpr']:.3f}")  # noqa: T201
    for lang, s in hazards["by_lang"].items():
        print(f"  {lang}: R {s['recall']:.3f} F1 {s['f1']:.3f}")  # noqa: T201
    if args.show:
        for f in fp.flagged:
            print(f"  {f['id']}: {f['moderations']} chat={f['chat_blocked']} {f['scores']} {f['text'][:90]}")  # noqa: T201
    print(f"wrote {path}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
