"""Optional language check of generated examples: does the text come back in the requested language?

Uses py3langid (a maintained fork of langid.py; its model ships inside the wheel, so nothing is
downloaded at run time). Install with `pip install embedforge[langcheck]`. The check reads the
longer of query and positive (short queries are too short to identify reliably); for bitext it
checks the query against the source language and the positive against the target language.
Languages the detector does not know (sd, su, yi of XLM-R's list) are counted as `unsupported`.

    python -m embedforge.synth.langcheck runs/synth/first/examples.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from functools import lru_cache
from typing import Any, Iterable

DETECTOR = "py3langid"

# Labels the detector gives for varieties that a request for the key language rightly produces.
ALSO_ACCEPTED: dict[str, frozenset[str]] = {
    "no": frozenset({"nn"}),
    "zh": frozenset({"yue", "wuu"}),
    "ar": frozenset({"ary", "arz"}),
    "uz": frozenset({"uzs"}),
}


@lru_cache(maxsize=1)
def _identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError as exc:
        raise ImportError(
            "language_check.enabled=true needs py3langid: pip install 'embedforge[langcheck]' (or py3langid)"
        ) from exc
    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect(text: str) -> str:
    return _identifier().classify(text)[0]


def supported(code: str) -> bool:
    return code in set(_identifier().labels)


def _matches(text: str, code: str) -> bool:
    found = detect(text)
    return found == code or found in ALSO_ACCEPTED.get(code, frozenset())


def check_record(record: dict) -> bool | None:
    """True/False whether the record's text is in its requested language; None if unsupported."""
    language = record["language"]
    if record["task_type"] == "bitext" and "-" in language:
        src, tgt = language.split("-", 1)
        if not (supported(src) and supported(tgt)):
            return None
        return _matches(record["query"], src) and _matches(record["positive"], tgt)
    if not supported(language):
        return None
    text = max(record["query"], record["positive"], key=len)
    return _matches(text, language)


def language_agreement(records: Iterable[dict], max_examples: int = 0) -> dict[str, Any]:
    """Share of examples whose detected language matches the requested one, overall and per language."""
    per: dict[str, dict[str, int]] = defaultdict(lambda: {"checked": 0, "matched": 0, "unsupported": 0})
    for n, record in enumerate(records):
        if max_examples and n >= max_examples:
            break
        row = per[record["language"]]
        ok = check_record(record)
        if ok is None:
            row["unsupported"] += 1
            continue
        row["checked"] += 1
        row["matched"] += int(ok)
    checked = sum(r["checked"] for r in per.values())
    matched = sum(r["matched"] for r in per.values())
    return {
        "detector": DETECTOR,
        "checked": checked,
        "matched": matched,
        "share": round(matched / checked, 4) if checked else 0.0,
        "unsupported": sum(r["unsupported"] for r in per.values()),
        "by_language": {
            lang: {**r, "share": round(r["matched"] / r["checked"], 4) if r["checked"] else None}
            for lang, r in sorted(per.items())
        },
    }


def main(argv: list[str] | None = None) -> None:
    from embedforge.data.jsonl import load_examples

    ap = argparse.ArgumentParser(description="Share of examples in their requested language, per language.")
    ap.add_argument("examples", help="an examples.jsonl written by embedforge-generate")
    ap.add_argument("--max-examples", type=int, default=0)
    args = ap.parse_args(argv)
    loaded = load_examples(args.examples, on_error="skip")
    print(json.dumps(language_agreement((e.to_dict() for e in loaded.examples), args.max_examples), indent=2))
    if loaded.errors:
        print(f"{len(loaded.errors)} malformed records skipped (see the log)")


if __name__ == "__main__":
    main()
