"""A SIGTERM stops training at the next step with a checkpoint, and the process exits so the job can be rerun.

Who receives the signal. Slurm sends SIGTERM before a preemption, and before the time limit when asked to
(slurm/launch.sbatch: ``--signal=TERM@120``), to every process of the job step: the launcher and the workers alike
(proctrack/cgroup signals the whole step). The launcher, torchrun's elastic agent inside ``accelerate launch``,
catches SIGTERM itself, sends SIGTERM to each worker's process group, waits TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds
(30 by default; the sbatch script raises it) for them to exit, then SIGKILLs them. So each worker gets SIGTERM once
or twice and has that long to finish its step and write a checkpoint.

What a worker does. The signal only sets a flag. Under ZeRO-3 every rank must run the same steps and the same
collectives, so at each step end the ranks all-reduce the flag (MAX): one rank signalled stops them all, at the same
step. The Trainer then writes ``output_dir/checkpoint-N`` (weights, optimizer, scheduler, RNG, trainer_state.json),
every rank waits until it is complete, and every process exits with EXIT_PREEMPTED (143 = 128 + SIGTERM). The final
model is not saved and no card is written: the run is unfinished. Rerunning the same command resumes from the newest
complete checkpoint (training.setup.resume_point).
"""

from __future__ import annotations

import atexit
import logging
import signal

from transformers import TrainerCallback

from distill_core.errors import EXIT_PREEMPTED

logger = logging.getLogger(__name__)


class PreemptionCallback(TrainerCallback):
    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM,)):
        self.signals = signals
        self.received: signal.Signals | None = None
        self.stopped_at: int | None = None  # the step whose checkpoint was written
        self._previous: dict = {}

    def _on_signal(self, signum, frame) -> None:
        self.received = signal.Signals(signum)  # only a flag: the step in flight finishes on every rank

    def on_train_begin(self, args, state, control, **kwargs):
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def on_step_end(self, args, state, control, **kwargs):
        if not _any_rank(self.received is not None, args.device):
            return
        self.stopped_at = state.global_step
        control.should_evaluate = False
        control.should_save = True
        control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_at is not None:  # checkpoint-N is written already; an epoch-end eval or save would repeat work
            control.should_evaluate = False
            control.should_save = False

    def on_train_end(self, args, state, control, **kwargs):
        if self.stopped_at is None:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            return
        _wait_for_all_ranks()  # rank 0 writes trainer_state.json last: no rank exits (and so ends the job) before it
        if state.is_world_process_zero:
            logger.warning(
                "stopped by %s at step %d: saved %s/checkpoint-%d; exiting with code %d, rerun the same "
                "command to resume from it",
                "/".join(s.name for s in self.signals),
                self.stopped_at,
                args.output_dir,
                self.stopped_at,
                EXIT_PREEMPTED,
            )
        # The checkpoint is complete. Once one rank has exited, the launcher sends SIGTERM to the others, which may
        # still be shutting down (the interpreter's last garbage collection takes seconds). Ignored now, and again at
        # exit in case a handler is restored on the way out, it cannot cut that short: every rank exits with the code.
        _ignore(self.signals)
        atexit.register(_ignore, self.signals)
        raise SystemExit(EXIT_PREEMPTED)


def _ignore(signals) -> None:
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


def _any_rank(flag: bool, device) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _wait_for_all_ranks() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
