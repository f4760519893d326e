"""run_eval: answers from every model under test for each benchmark of the recipe (MT-Bench, AlpacaEval,
Arena-Hard) and each task, then the judge's verdicts, scored, ranked, drawn and recorded like every other stage
(datasets, scores.json, figures, manifest, card; journaled, resumable, budgeted).

The models under test are served and asked first, in one session; their local servers stop before the judge's
session starts, so a GPU node never holds the models under test and a local judge at once.
"""

from __future__ import annotations

import json
import logging
import os

from data_gen.client import BudgetExceeded
from data_gen.session import GenerationSession
from data_gen.stage import estimate_cost, print_estimate, request_failures, stage_lock, templates_hash
from data_gen.stage.record import StageOutputs, write_stage_outputs
from distill_core.recipe import Recipe
from distill_core.records import write_atomic

from . import alpaca_eval, arena_hard, benchmark_judging, mt_bench
from .answers import generate_answers, generate_single_turn, read_answers
from .arguments import EvalArguments, ModelUnderTest
from .bradley_terry import count_battles, rank_models
from .figures import write_eval_figures
from .inputs import Inputs, load_inputs
from .intervals import mt_bench_intervals
from .mt_bench_judging import Judged, judge_answers
from .reporting import card_lines, log_scores, merge_failures, merge_stats
from .scores import mt_bench_scores, pairwise_battles, pairwise_summary
from .task_metrics import score_rows, task_scores
from .tasks import generate_task_answers

logger = logging.getLogger(__name__)


def run_eval(recipe: Recipe) -> str:
    args: EvalArguments = recipe.build("data")
    models: list[ModelUnderTest] = recipe.parsed["models"]
    inputs = load_inputs(args, [m.name for m in models], recipe.parsed["tasks"])
    from_files = [row for m in models if m.answers for row in read_answers(m.answers, m.name, inputs.questions)]
    if args.dry_run:
        print_estimate(_estimate(args, models, inputs, recipe.parsed["judge"]))
        return "dry run: nothing sent"
    with stage_lock(args.output_dir):
        return _run(recipe, args, models, inputs, from_files)


def _run(recipe, args: EvalArguments, models, inputs: Inputs, from_files: list[dict]) -> str:
    answer_roles = {f"model{i}": m.teacher for i, m in enumerate(models) if m.teacher is not None}
    judge = recipe.parsed["judge"]
    judge_role = {"judge": judge}
    stats, failures = {}, {}
    answers, judged = list(from_files), Judged()
    try:
        if answer_roles:
            with GenerationSession.for_stage(args, answer_roles) as gen:
                try:
                    answers += _generate(gen, models, inputs, args)
                    if inputs.tasks:
                        judged.tasks = generate_task_answers(
                            gen, models, inputs.tasks, seed=args.seed, keep_truncated=args.keep_truncated,
                            rows=inputs.task_rows,
                        )  # fmt: skip
                finally:
                    stats["answers"], failures["answers"] = gen.stats(), request_failures(gen)
        local_dir = _local_logprob_judge(args, judge)
        if inputs.questions or inputs.arena or (inputs.alpaca and not local_dir):
            with GenerationSession.for_stage(args, judge_role) as gen:
                try:
                    _judge(gen, answers, inputs, args, judged, local_dir)
                finally:
                    stats["judge"], failures["judge"] = gen.stats(), request_failures(gen)
        if inputs.alpaca and local_dir:
            pairs = benchmark_judging.alpaca_pairs(answers, inputs.alpaca, args)
            judged.alpaca_eval = benchmark_judging.judge_alpaca_local_logprobs(local_dir, pairs, args.show_progress)
    except BudgetExceeded:
        logger.warning("max_cost_usd reached: writing the answers and judgments done so far")
    scores = summarise(judged, args, inputs)
    write_atomic(os.path.join(args.output_dir, "scores.json"), _json(scores))
    write_eval_figures(args.output_dir, rounds=args.bootstrap_rounds, seed=args.seed)
    _write_record(recipe, args, answer_roles | judge_role, answers, judged, scores, stats, failures)
    log_scores(scores)
    return args.output_dir


def _generate(gen: GenerationSession, models, inputs: Inputs, args: EvalArguments) -> list[dict]:
    """Every benchmark's answers, each asked once per model (the journal answers a rerun)."""
    answers = generate_answers(gen, models, inputs.questions, args) if inputs.questions else []
    if inputs.alpaca:
        items = inputs.alpaca.instructions
        answers += generate_single_turn(gen, models, items, "alpaca_eval", args.alpaca_eval_max_tokens, args)
    if inputs.arena:
        answers += generate_single_turn(gen, models, inputs.arena, "arena_hard", args.arena_hard_max_tokens, args)
    return answers


def _local_logprob_judge(args: EvalArguments, judge) -> str | None:
    """The judge's model directory when AlpacaEval's logprob annotator must run in-process: a local server
    (``transformers serve``) ignores ``logprobs``, as the judge stage's logprobs_local mode knows; ``vllm serve``
    returns them, so a vLLM judge is asked over HTTP."""
    transformers = judge.local_server and judge.local_server.get("backend", "transformers") == "transformers"
    if args.alpaca_eval_annotator == "logprob" and "alpaca_eval" in args.benchmarks and transformers:
        return judge.local_server["model_dir"]
    return None


def _judge(gen: GenerationSession, answers, inputs: Inputs, args: EvalArguments, judged: Judged, local_dir) -> None:
    if inputs.questions:
        mt = judge_answers(gen, [a for a in answers if a["benchmark"] == "mt_bench"], inputs.questions, args)
        judged.single, judged.pairwise = mt.single, mt.pairwise
    if inputs.arena:
        judged.arena_hard = benchmark_judging.judge_arena(gen, answers, inputs.arena, args)
    if inputs.alpaca and not local_dir:
        pairs = benchmark_judging.alpaca_pairs(answers, inputs.alpaca, args)
        if args.alpaca_eval_annotator == "text":
            judged.alpaca_eval = benchmark_judging.judge_alpaca_text(gen, pairs, args)
        else:
            judged.alpaca_eval = benchmark_judging.judge_alpaca_endpoint_logprobs(gen, pairs)


def summarise(judged: Judged, args: EvalArguments, inputs: Inputs) -> dict:
    scores: dict = {}
    if judged.single:
        scores["mt_bench"] = mt_bench_scores(judged.single)
        intervals = mt_bench_intervals(
            judged.single, rounds=args.bootstrap_rounds, level=args.interval_level, seed=args.seed
        )
        for model, entry in scores["mt_bench"].items():  # over questions, both turns of one question together
            entry.update(lower=intervals[model]["lower"], upper=intervals[model]["upper"], level=args.interval_level)
    if args.published:
        scores["published"] = args.published
    if judged.pairwise:
        scores["pairwise"] = pairwise_summary(judged.pairwise)
        battles = pairwise_battles(judged.pairwise)
        if battles:
            ranking = rank_models(
                count_battles(battles),
                rounds=args.bootstrap_rounds,
                level=args.interval_level,
                seed=args.seed,
                l2=0.01,
            )
            scores["bradley_terry"] = {
                "ratings": ranking.as_rows(),
                "level": ranking.level,
                "bootstrap_rounds": ranking.rounds,
                "degenerate_rounds": ranking.degenerate_rounds,
                "prior_l2": 0.01,
            }
    if inputs.alpaca:
        scores["alpaca_eval"] = benchmark_judging.alpaca_summary(
            judged.alpaca_eval, inputs.alpaca, args, inputs.model_names
        )
    if inputs.arena:
        scores["arena_hard"] = benchmark_judging.arena_summary(
            judged.arena_hard, inputs.arena, args, inputs.model_names
        )
    if inputs.tasks:
        scores["tasks"] = task_scores(judged.tasks, inputs.tasks)
    return scores


def _json(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _write_record(recipe, args, roles, answers, judged: Judged, scores, stats, failures) -> None:
    datasets = {"answers": answers}
    for name, rows in (
        ("judgments_single", judged.single),
        ("judgments_pairwise", judged.pairwise),
        ("judgments_alpaca_eval", judged.alpaca_eval),
        ("judgments_arena_hard", judged.arena_hard),
        ("task_answers", score_rows(judged.tasks, recipe.parsed["tasks"])),
    ):
        if rows:
            datasets[name] = rows
    counts = {
        "answers": len(answers),
        "single_judgments": len(judged.single),
        "single_failed": sum(1 for r in judged.single if r["rating"] is None),
        "pairwise_judgments": len(judged.pairwise),
        "pairwise_unjudged": sum(
            1 for r in judged.pairwise if r["verdict_first"] is None or r["verdict_second"] is None
        ),
    }
    if "alpaca_eval" in args.benchmarks:
        counts["alpaca_eval_judgments"] = len(judged.alpaca_eval)
        counts["alpaca_eval_unannotated"] = sum(1 for r in judged.alpaca_eval if r["preference"] is None)
    if "arena_hard" in args.benchmarks:
        counts["arena_hard_judgments"] = len(judged.arena_hard)
        counts["arena_hard_unjudged"] = sum(1 for r in judged.arena_hard if r["verdict"] is None)
    if judged.tasks:
        counts["task_answers"] = len(judged.tasks)
        counts["task_empty"] = sum(1 for r in judged.tasks if not (r["response"] or "").strip())
    write_stage_outputs(
        StageOutputs(
            out_dir=args.output_dir,
            stage="eval",
            recipe=recipe,
            datasets=datasets,
            roles=roles,
            sampling=_sampling(args),
            templates=_templates_sha256(args),
            stats=merge_stats(stats),
            counts=counts,
            card_lines=card_lines(scores),
            failures=merge_failures(failures),
        )
    )


def _sampling(args: EvalArguments) -> dict:
    sampling = {"answers": {"temperature": mt_bench.TEMPERATURE, "max_tokens": args.answer_max_tokens}}
    if "alpaca_eval" in args.benchmarks:
        sampling["alpaca_eval_answers"] = {"temperature": 0.0, "max_tokens": args.alpaca_eval_max_tokens}
    if "arena_hard" in args.benchmarks:
        sampling["arena_hard_answers"] = {"temperature": 0.0, "max_tokens": args.arena_hard_max_tokens}
    sampling["judge"] = {"temperature": args.judge_temperature, "max_tokens": args.judge_max_tokens}
    if args.alpaca_eval_annotator == "logprob" and "alpaca_eval" in args.benchmarks:
        sampling["alpaca_eval_judge"] = benchmark_judging.LOGPROB_PARAMS
    return sampling


def _templates_sha256(args: EvalArguments) -> str:
    """MT-Bench's templates hash alone for an MT-Bench run (as before); with other benchmarks, one hash over each
    benchmark's, so any edited prompt changes it."""
    shas = {"mt_bench": mt_bench.templates().sha256, "alpaca_eval": alpaca_eval.templates().sha256,
            "arena_hard": arena_hard.templates().sha256}  # fmt: skip
    if args.benchmarks == ["mt_bench"]:
        return shas["mt_bench"]
    return templates_hash(*(f"{name}\x00{shas[name]}" for name in sorted(args.benchmarks)))


def _estimate(args: EvalArguments, models, inputs: Inputs, judge) -> list[dict]:
    """Upper estimates per model and for the judge, each benchmark's requests counted once (re-asks not)."""
    n_q, n_a, n_h = (
        len(inputs.questions),
        len(inputs.alpaca.instructions) if inputs.alpaca else 0,
        len(inputs.arena or []),
    )
    rows = []
    for model in models:
        if model.teacher is not None:
            n_t = sum(len(rows) for rows in inputs.task_rows.values())
            n = 2 * n_q + n_a + n_h + n_t
            out = (
                2 * n_q * args.answer_max_tokens + n_a * args.alpaca_eval_max_tokens + n_h * args.arena_hard_max_tokens
            ) + sum(len(inputs.task_rows[t.name]) * t.max_tokens for t in inputs.tasks)
            rows.append({"role": model.name, **estimate_cost(model.teacher, n, n * 300, out)})
    n_models = len(models)
    single = 2 * n_q * n_models if n_q and args.grading != "pairwise" else 0
    pairs = (n_models - 1) if args.baseline else n_models * (n_models - 1) // 2
    pairwise = 4 * n_q * pairs if n_q and args.grading != "single" else 0
    n = single + pairwise
    if n_q:
        rows.append({"role": "judge", **estimate_cost(judge, n, n * (600 + 2 * args.answer_max_tokens), n * 300)})
    if inputs.alpaca:
        judged = n_models - (inputs.alpaca.baseline in [m.name for m in models])
        n, logprob = judged * n_a, args.alpaca_eval_annotator == "logprob"
        prompt = n * (400 + 2 * args.alpaca_eval_max_tokens)
        rows.append({"role": "judge alpaca", **estimate_cost(judge, n, prompt, n * (1 if logprob else 300))})
    if inputs.arena:
        n = 2 * n_h * (n_models - 1)
        prompt = n * (600 + 2 * args.arena_hard_max_tokens)
        rows.append({"role": "judge arena", **estimate_cost(judge, n, prompt, n * args.judge_max_tokens)})
    return rows
