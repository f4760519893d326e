"""An instance for each accepted instruction: a classification check first, then input-first or label-first."""

from __future__ import annotations

from ..client import ChatRequest
from ..session import GenerationSession
from .arguments import SelfInstructArguments
from .parsing import parse_instance
from .templates import CLASSIFY_TEMPLATE, INPUT_FIRST_TEMPLATE, OUTPUT_FIRST_TEMPLATE


def add_instances(gen: GenerationSession, accepted: list[dict], args: SelfInstructArguments) -> None:
    """Adds ``is_classification`` to every entry, and ``input`` and ``output`` to those whose instance parsed."""
    params = {"temperature": args.instance_temperature, "max_tokens": 8}
    checks = gen.ask(
        "teacher",
        [
            ChatRequest([{"role": "user", "content": CLASSIFY_TEMPLATE.format(instruction=a["instruction"])}], params)
            for a in accepted
        ],
        "classification check",
    )
    for entry, check in zip(accepted, checks):
        entry["is_classification"] = check.usable and check.text.strip().lower().startswith("yes")
    params = {"temperature": args.instance_temperature, "max_tokens": args.instance_max_tokens}
    requests = [
        ChatRequest(
            [
                {
                    "role": "user",
                    "content": (OUTPUT_FIRST_TEMPLATE if a["is_classification"] else INPUT_FIRST_TEMPLATE).format(
                        instruction=a["instruction"]
                    ),
                }
            ],
            params,
        )
        for a in accepted
    ]
    for entry, result in zip(accepted, gen.ask("teacher", requests, "instances")):
        if not result.kept(args.keep_truncated):
            continue
        instance = parse_instance(result.text, entry["is_classification"])
        if instance:
            entry.update(instance)
