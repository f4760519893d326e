"""Evaluation: the eval stage (MT-Bench, AlpacaEval- and Arena-Hard-style judging, task metrics), win rates,
Bradley-Terry rankings, figures, run-to-run comparison, and the reference tools' files.

- ``stage``: run_eval, the stage itself; ``arguments`` its recipe; ``inputs`` every benchmark file, read first;
- ``answers``: the models' answers; ``mt_bench``, ``mt_bench_judging``, ``alpaca_eval``, ``arena_hard`` and
  ``benchmark_judging``: each benchmark's questions, prompts and judging; ``length_controlled``: the LC win rate;
- ``tasks`` and ``task_metrics``: prompt-template tasks scored by exact match, accuracy, ROUGE-L or the final number;
- ``verdicts``: what an MT-Bench, pairwise or Arena-Hard judge reply must state, read with the judge's parsers;
- ``win_rate``: AlpacaEval's win rate and standard error, MT-Bench's swapped-pair rule, Arena-Hard's weighting;
- ``bradley_terry``: maximum-likelihood ratings on the Elo scale, seeded bootstrap intervals, ranks;
- ``scores``, ``intervals``, ``reporting``: summaries, bootstrap intervals and differences, log and card lines;
- ``figures`` and ``compare``: the eval figures, and several runs side by side;
- ``reference_files``: AlpacaEval annotations, Chatbot Arena battles and FastChat judgments, read and checked.
"""
