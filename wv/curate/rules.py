"""Drop rules: a small, safe expression language over score columns, compiled to polars expressions.

    lda.similarity < 0.05
    curriculum.subset == 2 and confidence.p_label < 0.3
    not (density.density >= 4) or `my-score.flag` is null
    curriculum.subset in (1, 2)

Nothing is evaluated as Python: the text is tokenised and parsed into a tree (wv.curate.rule_syntax,
where the grammar is), and the tree is turned into polars expressions over columns named
"score.column". A rule whose value is missing (null) does not fire, unless it says `is null`.
"""

from dataclasses import dataclass

import polars as pl

from wv.curate.rule_syntax import Column, Compare, In, IsNull, Literal, Logic, Not, Truth, columns_of, parse
from wv.errors import WvError

META = "meta"  # the namespace of the per-sample columns every shard has (meta/{shard}.parquet)
META_COLUMNS = {"label": pl.Int32, "source": pl.String, "query": pl.String}
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


# -- columns and types ---------------------------------------------------------------------------------
def resolve(ref: str, schemas: dict[str, dict]) -> str:
    """`score.column` or an unambiguous `column` -> the qualified name "score.column"."""
    name, dot, column = ref.partition(".")
    if dot and name in schemas:
        if column not in schemas[name]:
            known = ", ".join(sorted(schemas[name])) or "none"
            raise WvError(f"score {name!r} has no column {column!r}; its columns: {known}")
        return f"{name}.{column}"
    if dot and ref not in {c for cols in schemas.values() for c in cols}:
        known = ", ".join(sorted(schemas)) or "none"
        raise WvError(f"no score named {name!r} (in {ref!r}); scores present: {known}")
    owners = sorted(name for name, cols in schemas.items() if ref in cols)
    if not owners:
        known = ", ".join(f"{n}.{c}" for n, cols in sorted(schemas.items()) for c in cols)
        raise WvError(f"no score has a column {ref!r}; columns present: {known[:600] or 'none'}")
    if len(owners) > 1:
        raise WvError(f"column {ref!r} is in several scores ({', '.join(owners)}); write it as {owners[0]}.{ref}")
    return f"{owners[0]}.{ref}"


def dtype_kind(dtype: pl.DataType) -> str:
    if dtype == pl.Boolean:
        return "bool"
    if dtype.is_numeric():
        return "number"
    if dtype in (pl.String, pl.Categorical, pl.Enum) or isinstance(dtype, (pl.Categorical, pl.Enum)):
        return "string"
    return "other"


def value_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "string"


@dataclass(frozen=True)
class Rule:
    """One parsed --drop rule, with its columns resolved against the scores present."""

    text: str
    tree: object
    columns: tuple  # qualified "score.column" names the rule reads

    def expression(self, schemas: dict[str, dict]) -> pl.Expr:
        """A boolean expression over columns named "score.column"; true where the rule fires."""
        return to_expr(self.tree, schemas, self).fill_null(False)

    def ranking(self, schemas: dict[str, dict]) -> tuple[str, float, object] | None:
        """(column, sign, threshold) for the first ordering comparison of a number column with a value.

        `sign * value` grows as a sample gets worse (further past the threshold); None when the rule
        has no such comparison (e.g. `curriculum.subset == 2`).
        """
        for column, op, value, _polarity in comparisons(self.tree, schemas):
            if op in ("<", "<="):
                return column, -1.0, value
            if op in (">", ">="):
                return column, 1.0, value
        return None

    def thresholds(self, schemas: dict[str, dict]) -> dict[str, list]:
        """Number columns the rule compares with values -> [(op, value), ...] (for histograms)."""
        marks: dict[str, list] = {}
        for column, op, value, _ in comparisons(self.tree, schemas, every=True):
            marks.setdefault(column, []).append((op, value))
        return marks


def comparisons(tree, schemas, polarity=True, every=False):
    """(column, op as it acts on the column, value, polarity) for column-vs-number tests."""
    if isinstance(tree, Compare):
        column, op, value = None, tree.op, None
        if isinstance(tree.left, Column) and isinstance(tree.right, Literal):
            column, value = tree.left, tree.right.value
        elif isinstance(tree.right, Column) and isinstance(tree.left, Literal):
            column, value, op = tree.right, tree.left.value, FLIPPED[op]
        if column is not None and value_kind(value) == "number":
            qualified = resolve(column.ref, schemas)
            if dtype_kind(lookup(qualified, schemas)) == "number":
                yield qualified, op if polarity else NEGATED[op], value, polarity
    elif isinstance(tree, In) and every:
        qualified = resolve(tree.operand.ref, schemas)
        if dtype_kind(lookup(qualified, schemas)) == "number":
            for value in tree.values:
                if value_kind(value) == "number":
                    yield qualified, "!=" if tree.negate else "==", value, polarity
    elif isinstance(tree, Not):
        yield from comparisons(tree.operand, schemas, not polarity, every)
    elif isinstance(tree, Logic):
        for operand in tree.operands:
            yield from comparisons(operand, schemas, polarity, every)


def lookup(qualified: str, schemas: dict[str, dict]) -> pl.DataType:
    name, _, column = qualified.partition(".")
    return schemas[name][column]


def to_expr(tree, schemas, rule) -> pl.Expr:
    if isinstance(tree, Logic):
        parts = [to_expr(t, schemas, rule) for t in tree.operands]
        combined = parts[0]
        for part in parts[1:]:
            combined = (combined & part) if tree.op == "and" else (combined | part)
        return combined
    if isinstance(tree, Not):
        return ~to_expr(tree.operand, schemas, rule)
    if isinstance(tree, IsNull):
        column = pl.col(resolve(tree.operand.ref, schemas))
        return column.is_not_null() if tree.negate else column.is_null()
    if isinstance(tree, In):
        qualified = resolve(tree.operand.ref, schemas)
        for value in tree.values:
            check_types(rule, qualified, lookup(qualified, schemas), value)
        test = pl.col(qualified).is_in(list(tree.values))
        # is_in gives false (not null) for a null value; keep "missing never fires" for `not in` too.
        test = pl.when(pl.col(qualified).is_null()).then(None).otherwise(test)
        return ~test if tree.negate else test
    if isinstance(tree, Truth):
        qualified = resolve(tree.operand.ref, schemas)
        if dtype_kind(lookup(qualified, schemas)) != "bool":
            raise WvError(f"rule {rule.text!r}: {qualified} is not true/false; compare it with a value (e.g. {qualified} < 0.5)")
        return pl.col(qualified)
    if isinstance(tree, Compare):
        return compare(tree, schemas, rule)
    raise AssertionError(tree)


def compare(tree: Compare, schemas, rule) -> pl.Expr:
    sides = []
    for side in (tree.left, tree.right):
        if isinstance(side, Column):
            qualified = resolve(side.ref, schemas)
            sides.append((pl.col(qualified), dtype_kind(lookup(qualified, schemas)), qualified))
        else:
            sides.append((pl.lit(side.value), value_kind(side.value), repr(side.value)))
    (left, left_kind, left_name), (right, right_kind, right_name) = sides
    if isinstance(tree.left, Literal) and isinstance(tree.right, Literal):
        raise WvError(f"rule {rule.text!r}: compares two values; one side must be a score column")
    if "other" in (left_kind, right_kind) or left_kind != right_kind:
        raise WvError(f"rule {rule.text!r}: cannot compare {left_name} ({left_kind}) with {right_name} ({right_kind})")
    if left_kind == "bool" and tree.op not in ("==", "!="):
        raise WvError(f"rule {rule.text!r}: true/false values compare only with == or !=")
    return {
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
        "==": left == right,
        "!=": left != right,
    }[tree.op]


def check_types(rule, qualified, dtype, value):
    kind = dtype_kind(dtype)
    if kind != value_kind(value):
        raise WvError(f"rule {rule.text!r}: {qualified} holds {kind} values, not {value!r}")


def compile_rules(texts: list[str], schemas: dict[str, dict]) -> list[Rule]:
    """Parse and check every rule against the scores present (schemas: score -> {column: dtype})."""
    if not texts:
        raise WvError("give at least one --drop rule, e.g. --drop 'lda.similarity < 0.05'")
    if len(set(texts)) != len(texts):
        raise WvError("the same --drop rule is given twice")
    rules = []
    for text in texts:
        tree = parse(text)
        columns = tuple(dict.fromkeys(resolve(ref, schemas) for ref in columns_of(tree)))
        if not columns:
            raise WvError(f"rule {text!r} reads no column; it would drop everything or nothing")
        rule = Rule(text, tree, columns)
        rule.expression(schemas)  # type-checks the whole rule now, not halfway through the data
        rules.append(rule)
    return rules
