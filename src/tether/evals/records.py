"""An eval's rows in the store: its spec, and per cell (task x config x repeat) the run that does it
and the score of the delivered work. Everything else about a cell is read from its run's events."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from tether.ledger import Ledger
from tether.ledger.schema import eval_cells, evals


@dataclass(frozen=True)
class Cell:
    task: str
    config: str
    repeat: int
    run_id: str
    score: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.task, self.config, self.repeat)


class EvalRecords:
    def __init__(self, ledger: Ledger, eval_id: str):
        self.ledger, self.eval_id = ledger, eval_id

    def create(self, suite: str, spec: dict[str, Any]) -> None:
        """Record the eval once; a continued eval keeps its first record."""
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(insert(evals).values(id=self.eval_id, created_at=time.time(), suite=suite,
                                                  spec=json.dumps(spec)))
        except IntegrityError:
            pass

    def spec(self) -> dict[str, Any] | None:
        with self.ledger.engine.connect() as conn:
            row = conn.execute(select(evals.c.spec).where(evals.c.id == self.eval_id)).first()
        return json.loads(row.spec) if row else None

    def add(self, cell: Cell) -> None:
        try:
            with self.ledger.engine.begin() as conn:
                conn.execute(insert(eval_cells).values(eval_id=self.eval_id, task=cell.task, config=cell.config,
                                                       repeat=cell.repeat, run_id=cell.run_id))
        except IntegrityError:
            pass  # already there: the eval is being continued

    def cells(self) -> list[Cell]:
        with self.ledger.engine.connect() as conn:
            rows = conn.execute(select(eval_cells).where(eval_cells.c.eval_id == self.eval_id)
                                .order_by(eval_cells.c.task, eval_cells.c.config, eval_cells.c.repeat)).all()
        return [Cell(r.task, r.config, r.repeat, r.run_id, json.loads(r.score) if r.score else None) for r in rows]

    def set_score(self, cell: Cell, score: dict[str, Any]) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(update(eval_cells).where(
                eval_cells.c.eval_id == self.eval_id, eval_cells.c.task == cell.task,
                eval_cells.c.config == cell.config, eval_cells.c.repeat == cell.repeat,
            ).values(score=json.dumps(score), scored_at=time.time()))
