"""Self-Instruct (Wang et al. 2022): a teacher grows a pool of new instructions from human seed tasks.

Faithful to the original procedure: each generation prompt shows 8 tasks (6 human seeds, 2 from the
machine pool); new instructions are kept only if they pass the length, keyword and punctuation filters and
their ROUGE-L F1 with every instruction already in the pool is at most 0.7; then the teacher writes
instances for each (label first for classification tasks). Outputs a prompt dataset and an SFT dataset.

Modules, one idea each:

- ``arguments``: the recipe (SelfInstructArguments, check_self_instruct);
- ``templates``: the prompts, and the generation prompt built from sampled example tasks;
- ``parsing``: reading numbered task lists and instances, and the filters a new instruction must pass;
- ``pool``: the instruction pool, grown round by round;
- ``instances``: the classification check and an instance for each accepted instruction;
- ``stage``: run_self_instruct, from the seed tasks to the written datasets and run record.
"""

from .arguments import SelfInstructArguments, check_self_instruct
from .stage import run_self_instruct

__all__ = ["SelfInstructArguments", "check_self_instruct", "run_self_instruct"]
