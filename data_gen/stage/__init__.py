"""What the generation stages share: recipe keys, seeds and ids, inputs, cost estimates, how a stage runs, and the
stage record with the checks that guard it.

Modules, one idea each:

- ``arguments``: GenerationArguments, the keys every stage accepts, and check_generation;
- ``ids``: stable seeds, prompt ids and the hash of a stage's templates;
- ``inputs``: prompt datasets read, and repeated inputs refused or dropped before anything is paid for;
- ``estimates``: a dry run's table of requests, tokens and cost;
- ``running``: the directory lock, dry run or run, and a stage's requests inside one session;
- ``outcome``: this run's failures, and the refusal to write a failed or shrunken result;
- ``record``: the datasets, manifest and card a stage writes.
"""

from .arguments import GenerationArguments, check_generation, require_keys
from .estimates import estimate_cost, print_estimate
from .ids import derived_seed, prompt_id, templates_hash
from .inputs import dedupe_prompts, first_of_each, load_prompts, refuse_duplicate_rows, refuse_duplicates
from .outcome import StageFailed, check_outcome, output_fingerprint, request_failures
from .record import StageOutputs, dataset_card_body, dataset_card_data, local_model_name, write_stage_outputs
from .running import estimate_or_run, generate, stage_lock

__all__ = [
    "GenerationArguments",
    "StageFailed",
    "StageOutputs",
    "check_generation",
    "check_outcome",
    "dataset_card_body",
    "dataset_card_data",
    "dedupe_prompts",
    "derived_seed",
    "estimate_cost",
    "estimate_or_run",
    "first_of_each",
    "generate",
    "load_prompts",
    "local_model_name",
    "output_fingerprint",
    "print_estimate",
    "prompt_id",
    "refuse_duplicate_rows",
    "refuse_duplicates",
    "request_failures",
    "require_keys",
    "stage_lock",
    "templates_hash",
    "write_stage_outputs",
]
