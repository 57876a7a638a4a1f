"""A source stream shaped by its table's ``transform`` and ``validate``: the batches the target
loads, their schema, and the rows they hold that break a rule or failed a conversion.

With ``on_bad_rows: fail`` the first such row stops the read with a ``DataError`` naming the
stream, the column, the rule and the row's key (nothing is written: the target's staging is
dropped). With ``quarantine`` the stream hands each batch's problems to the target
(``SourceStream.rule_problems``), which moves those rows to its dead letters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from sync_assets.config.project import TableSpec
from sync_assets.connectors.requests import SourceStream
from sync_assets.errors import ConfigError, DataError
from sync_assets.shaping.transforms import ColumnOrigin, Transformer
from sync_assets.shaping.validation import RuleChecker
from sync_assets.types.value_edges import Problem, row_key


class Shaping:
    """The transform and rules of one table, compiled for its source schema."""

    def __init__(self, table: TableSpec, source_schema: pa.Schema):
        self.table = table
        self.transformer = Transformer(table.transform, source_schema, table.label) if table.transform else None
        self.schema = self.transformer.schema if self.transformer else source_schema
        self.rules = RuleChecker(table.validate, self.schema, table.label) if table.validate else None
        for column in (*table.primary_key, *([table.update_key] if table.update_key else []),
                       *(key.column for key in table.parent_keys)):
            if column not in self.schema.names:
                raise ConfigError(f"{table.label}: key column {column!r} is not a column of the stream "
                                  f"(columns{' after the transforms' if self.transformer else ''}: "
                                  f"{', '.join(self.schema.names)})")

    @property
    def active(self) -> bool:
        return self.transformer is not None or self.rules is not None

    @property
    def unique_columns(self) -> tuple[str, ...]:
        return self.rules.unique_columns if self.rules else ()

    def lineage(self) -> list[tuple[str, ColumnOrigin]]:
        return list(self.transformer.lineage()) if self.transformer else []

    def wrap(self, stream: SourceStream, quarantine: bool) -> SourceStream:
        """``stream`` shaped: transformed batches; bad rows (the source's own, a transform's, a
        rule's) raise (fail) or are handed on to the target (quarantine)."""
        if not self.active and stream.rule_problems is None:
            return stream
        shaped = SourceStream(self.schema, lambda: pa.RecordBatchReader.from_batches(self.schema, batches()),
                              label=stream.label, key_columns=stream.key_columns)
        pending: deque[list[Problem]] = deque()  # per batch yielded, in order, until the target asks

        def batches() -> Iterator[pa.RecordBatch]:
            for raw in stream.open_batches():
                batch = raw
                # values the source itself could not convert, named as the source sent them
                problems = list(stream.rule_problems(raw)) if stream.rule_problems is not None else []
                if problems and not quarantine:
                    self._refuse_bad_rows(shaped, raw, raw, problems)
                    problems = []
                if self.transformer is not None:
                    batch, found = self.transformer.apply(batch)
                    problems += found
                if self.rules is not None:
                    problems += self.rules.problems(batch)
                if quarantine:
                    pending.append(problems)
                else:
                    self._refuse_bad_rows(shaped, batch, raw, problems)
                yield batch

        def rule_problems(batch: pa.RecordBatch) -> list[Problem]:
            """The problems of the next batch in stream order (the target asks once per batch)."""
            return pending.popleft() if pending else []

        if quarantine:
            shaped.rule_problems = rule_problems
        return shaped

    def keys_of(self, stream: SourceStream, key: tuple[str, ...]) -> SourceStream:
        """The ``key`` columns of ``stream``'s rows after the transforms (delete detection of a
        stream whose key a transform renames or derives)."""
        assert self.transformer is not None
        transformer = self.transformer
        schema = pa.schema([self.schema.field(k) for k in key])

        def batches() -> Iterator[pa.RecordBatch]:
            for raw in stream.open_batches():
                yield transformer.apply(raw, check=False)[0].select(list(key))

        return SourceStream(schema, lambda: pa.RecordBatchReader.from_batches(schema, batches()),
                            label=stream.label, key_columns=key)

    def _refuse_bad_rows(self, stream: SourceStream, batch: pa.RecordBatch, raw: pa.RecordBatch,
                         problems: list[Problem]) -> None:
        for problem in problems:
            count = pc.sum(problem.mask.cast(pa.int64())).as_py() or 0
            if count:
                index = pc.indices_nonzero(problem.mask)[0].as_py()
                value = batch.column(problem.column)[index].as_py()
                source = self.transformer.source_name(problem.column) if self.transformer else None
                if problem.source_values is not None:  # the source's value that the batch could not hold
                    value = problem.source_values[index].as_py()
                elif value is None and source is not None:  # a failed conversion: show what the source sent
                    value = raw.column(source)[index].as_py()
                raise DataError(
                    f"stream {stream.label}: column {problem.column!r} {problem.reason} ({count} row(s) in this "
                    f"batch, first at {row_key(batch, problem.mask, stream.key_columns)}, value {value!r}); "
                    "nothing was written. Fix the source, or set on_bad_rows: quarantine to load the other rows "
                    "and keep these in the dead letters" + (f" ({problem.hint})" if problem.hint else ""))
