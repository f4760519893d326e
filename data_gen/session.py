"""One generation stage's connection to its endpoints: journal, budget, clients per role, progress and spend."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from distill_core import locks

from .client import Budget, BudgetExceeded, ChatClient, ChatRequest, ChatResult
from .endpoints import TeacherConfig
from .journal import Journal
from .local_server import serve_local_model

logger = logging.getLogger(__name__)


class GenerationSession:
    """Use as ``with GenerationSession(...) as gen:``; then ``gen.ask(role, requests, desc)``."""

    def __init__(
        self,
        out_dir: str,
        roles: dict[str, TeacherConfig],
        *,
        max_cost_usd: float | None,
        seed: int,
        show_progress: bool = True,
    ):
        self.out_dir = out_dir
        self.roles = roles
        self.seed = seed
        self.show_progress = show_progress
        # Before the journal opens: a second run on this directory stops here, having sent nothing. The stage
        # usually holds it already for its whole run; the lock is re-entrant within a process.
        self._dir_lock = locks.acquire(out_dir)
        try:
            self.journal = Journal(os.path.join(out_dir, "journal.jsonl"))
        except BaseException:
            self._dir_lock.release()
            raise
        self.budget = Budget(self.journal.spent_usd(), max_cost_usd)
        self.clients: dict[str, ChatClient] = {}
        self.started = time.monotonic()
        self.started_at = time.time()  # wall clock, comparable with the journal's record times
        self.budget_stopped = False
        self._stack = contextlib.ExitStack()
        self._loop = asyncio.new_event_loop()

    @classmethod
    def for_stage(cls, args, roles: dict[str, TeacherConfig]) -> "GenerationSession":
        """The session of a stage whose arguments are GenerationArguments: its output_dir, budget, seed and bar."""
        return cls(
            args.output_dir, roles, max_cost_usd=args.max_cost_usd, seed=args.seed, show_progress=args.show_progress
        )

    def __enter__(self) -> "GenerationSession":
        try:
            servers: dict[str, Any] = {}
            for role, teacher in self.roles.items():
                local = teacher.local()
                endpoints = None
                if local is not None:
                    key = os.path.abspath(local.model_dir)
                    if key not in servers:  # roles sharing a local model share one server
                        servers[key] = self._stack.enter_context(serve_local_model(local))
                    endpoints = [servers[key]]
                self.clients[role] = ChatClient(
                    teacher, self.journal, budget=self.budget, endpoints=endpoints, seed=self.seed
                )

            async def check_all() -> None:
                await asyncio.gather(*(c.check_reachable() for c in self.clients.values()))

            self._loop.run_until_complete(check_all())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        # A Ctrl-C stops the loop with tasks still pending: cancel and await them, so none is destroyed pending or
        # reports an exception nobody retrieved.
        pending = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(client.close())
        self._loop.close()
        self.journal.close()
        try:
            self._stack.close()
        finally:
            self._dir_lock.release()

    def ask(self, role: str, requests: list[ChatRequest], desc: str) -> list[ChatResult]:
        """Send a batch to one role; results in request order. Raises BudgetExceeded once max_cost_usd is reached."""
        return self.ask_many({role: requests}, desc)[role]

    def ask_many(self, batches: dict[str, list[ChatRequest]], desc: str) -> dict[str, list[ChatResult]]:
        """Send batches to several roles concurrently (e.g. a pool of models); results per role, in request order."""
        total = sum(len(r) for r in batches.values())
        if total == 0:
            return {role: [] for role in batches}
        bar = self._bar(total, desc)

        def on_result(result: ChatResult) -> None:
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"spent ${self.budget.spent_usd:.4f}", refresh=False)

        async def run_all() -> list[list[ChatResult]]:
            outcomes = await asyncio.gather(
                *(self.clients[role].run(reqs, on_result) for role, reqs in batches.items()), return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            return outcomes

        try:
            results = self._loop.run_until_complete(run_all())
        except BudgetExceeded:
            self.budget_stopped = True
            raise
        finally:
            if bar is not None:
                bar.close()
        return dict(zip(batches, results))

    def _bar(self, total: int, desc: str):
        if not self.show_progress:
            return None
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit="req",
            dynamic_ncols=True,
            bar_format=(
                "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
            ),
        )

    def stats(self) -> dict[str, Any]:
        roles = {}
        for role, client in self.clients.items():
            roles[role] = {"model": client.model_id, **client.counts}
        return {
            "requests": roles,
            "cost_usd": round(self.budget.spent_usd, 6),
            "max_cost_usd": self.budget.max_usd,
            "stopped_by_budget": self.budget_stopped,
            "wall_time_s": round(time.monotonic() - self.started, 2),
        }
