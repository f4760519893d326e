"""UltraFeedback-style judging of a completion pool, binarized into preference pairs for DPO.

Text mode (default): for each prompt and aspect ONE request shows all completions in a shuffled order (seeded per
prompt and aspect) and asks for a 1-5 rating with a rationale per text (N/A allowed for honesty; a type 1-3 for
truthfulness and helpfulness). Replies are parsed as JSON, else as "Text N / Rating / Rationale" text; an unusable
reply (one cut by max_tokens too, unless keep_truncated) is re-asked (bounded), every raw reply is kept, and a
completion still unparsed after the re-asks is recorded as a failure, never as a score. Logprob modes: the rating
is the expected value of the rating digit under the judge's probabilities, from an endpoint's top logprobs or from
a local model evaluated in-process; it cannot fail to parse.

Modules, one idea each:

- ``arguments``: the recipe (JudgeArguments, check_judge);
- ``templates``: the prompts, read from data_gen/prompt_templates/ultrafeedback/ and hashed into the manifest;
- ``parsing``: pure reply parsers (ratings per text, one score on a scale);
- ``reask``: JudgeTask, one unit of judging work, and the engine that asks, parses and re-asks;
- ``aspect_ratings`` and ``critique``: the text-mode passes built on that engine;
- ``logprobs`` and ``local_logprobs``: the endpoint and in-process logprob judges;
- ``stage``: run_judge, from the pool to the written datasets and run record.
"""

from .arguments import JudgeArguments, check_judge
from .stage import run_judge

__all__ = ["JudgeArguments", "check_judge", "run_judge"]
