"""Evaluation: judge verdicts, win rates, Bradley-Terry rankings, and the reference tools' files.

- ``verdicts``: what an MT-Bench, pairwise or Arena-Hard judge reply must state, read with the judge's parsers;
- ``win_rate``: AlpacaEval's win rate and standard error, MT-Bench's swapped-pair rule, Arena-Hard's weighting;
- ``bradley_terry``: maximum-likelihood ratings on the Elo scale, seeded bootstrap intervals, ranks;
- ``reference_files``: AlpacaEval annotations and Chatbot Arena battles, read and checked.
"""
