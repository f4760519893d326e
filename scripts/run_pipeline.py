#!/usr/bin/env python
"""The whole distillation loop from one recipe: self-instruct -> dialogues -> dSFT -> completions -> judge -> dDPO.

    python scripts/run_pipeline.py recipes/smoke/pipeline.yaml
    python scripts/run_pipeline.py recipes/smoke/pipeline.yaml --from sft --until dpo
    python scripts/run_pipeline.py recipes/smoke/pipeline.yaml --only judge
    python scripts/run_pipeline.py recipes/smoke/pipeline.yaml --print-commands     # what would run, nothing run

A stage whose manifest matches its inputs is skipped; a stage stopped midway resumes; changing a stage's
recipe reruns it and every stage downstream. Writes <run_dir>/report.html.
"""

import argparse
import shlex

import _bootstrap  # noqa: F401

from distill_core.errors import run_cli


def main(argv):
    parser = argparse.ArgumentParser(prog="run_pipeline.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe")
    parser.add_argument("--from", dest="start", help="first stage to consider")
    parser.add_argument("--until", help="last stage to consider")
    parser.add_argument("--only", nargs="+", help="only these stages")
    parser.add_argument("--run-dir", help="override the recipe's run_dir")
    parser.add_argument("--print-commands", action="store_true", help="print each stage's command; run nothing")
    parser.add_argument(
        "--slurm",
        type=int,
        metavar="NODES",
        help="with --print-commands: training stages as sbatch jobs on NODES nodes (slurm/launch.sbatch)",
    )
    parser.add_argument(
        "--ignore-memory-plan",
        action="store_true",
        help="launch training stages even when their memory plan (scripts/preflight.py) does not fit",
    )
    args = parser.parse_args(argv)

    from distill_core.errors import UserError
    from distill_core.logs import setup_logging
    from distill_core.pipeline import (
        check_memory_plan,
        claim_run_dir,
        command,
        load_pipeline,
        run_stage,
        select,
        slurm_command,
        stage_state,
    )
    from distill_core.report import write_report

    setup_logging()
    pipeline = load_pipeline(args.recipe, args.run_dir)
    chosen = select(pipeline, args.only, args.start, args.until)
    if args.print_commands:
        for stage in chosen:
            cmd = (
                slurm_command(pipeline, stage, args.slurm) if args.slurm and stage.launch else command(pipeline, stage)
            )
            print(f"# {stage.name} ({stage_state(pipeline, stage)})\n{shlex.join(cmd)}")
        return 0
    claim_run_dir(pipeline)
    states = {}
    for stage in chosen:
        if stage_state(pipeline, stage) == "done":
            print(f"[{stage.name}] up to date: skipped")
            states[stage.name] = "skipped"
            continue
        check_memory_plan(pipeline, stage, print, ignore=args.ignore_memory_plan)
        try:
            run_stage(pipeline, stage, print)
        except UserError:  # the report shows the stage that stopped the run (a decontamination gate: what it found)
            states[stage.name] = "failed"
            write_report(pipeline.run_dir, list(pipeline.stages), f"Run report: {pipeline.name}", states)
            raise
        states[stage.name] = "done"
        write_report(pipeline.run_dir, list(pipeline.stages), f"Run report: {pipeline.name}", states)
    report = write_report(pipeline.run_dir, list(pipeline.stages), f"Run report: {pipeline.name}", states)
    outputs = {name: f"{pipeline.run_dir}/{name}" for name in pipeline.stages}
    print("\nrun complete")
    for name, path in outputs.items():
        print(f"  {name:<14} {path}")
    print(f"  report         {report}")
    return 0


if __name__ == "__main__":
    run_cli(main)
