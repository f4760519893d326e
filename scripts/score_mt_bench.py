#!/usr/bin/env python
"""MT-Bench scores from a FastChat single-judgment file, with unread ratings counted as failures, not dropped.

python scripts/score_mt_bench.py model_judgment/gpt-4_single.jsonl [--questions question.jsonl]

Prints one JSON object per model: model, score, per_turn, per_category (needs --questions), judged, failed.
FastChat writes score -1 when it could not read the judge's rating and leaves that row out of the mean without a
count; here it is a failed judgment, shown in `failed` beside the score.
"""

import argparse
import json

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli
from evaluation.reference_files import score_fastchat_judgments


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="score_mt_bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("judgments", help="FastChat model_judgment/*_single.jsonl")
    parser.add_argument("--questions", help="MT-Bench questions (JSON lines with question_id and category)")
    args = parser.parse_args(argv)
    for model, summary in score_fastchat_judgments(args.judgments, args.questions).items():
        print(json.dumps({"model": model, **summary}))
    return 0


if __name__ == "__main__":
    run_cli(main)
