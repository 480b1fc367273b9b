"""Drop rules: a small, safe expression language over score columns, compiled to polars expressions.

    lda.similarity < 0.05
    curriculum.subset == 2 and confidence.p_label < 0.3
    not (density.density >= 4) or `my-score.flag` is null
    curriculum.subset in (1, 2)

Grammar (keywords are case-insensitive; `and`/`&`, `or`/`|`, `not`/`!`):

    rule       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | test
    test       := operand (CMP operand | "is" ["not"] "null" | ["not"] "in" "(" literal ("," literal)* ")")?
                | "(" or ")"
    operand    := column | literal
    column     := NAME | NAME "." NAME | `any text`(.NAME)?  (score.column, or a column unique across scores)
    literal    := number | "string" | 'string' | true | false
    CMP        := < <= > >= == = !=

Nothing is evaluated as Python: the text is tokenised, parsed into a tree, and the tree is turned
into polars expressions over columns named "score.column". A rule whose value is missing (null) does
not fire, unless it says `is null`.
"""

import re
from dataclasses import dataclass

import polars as pl

from wv.errors import WvError

META = "meta"  # the namespace of the per-sample columns every shard has (meta/{shard}.parquet)
META_COLUMNS = {"label": pl.Int32, "source": pl.String, "query": pl.String}

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`(?:\.(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*))?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op><=|>=|==|!=|&&|\|\||[<>=()&|!,-])
""", re.VERBOSE)
KEYWORDS = {"and", "or", "not", "is", "null", "in", "true", "false"}
COMPARISONS = {"<", "<=", ">", ">=", "==", "=", "!="}
FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!=", "!=": "=="}


# -- the tree ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    ref: str  # as written: "lda.similarity" or "similarity"


@dataclass(frozen=True)
class Literal:
    value: object  # int, float, str or bool


@dataclass(frozen=True)
class Compare:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class IsNull:
    operand: Column
    negate: bool


@dataclass(frozen=True)
class In:
    operand: Column
    values: tuple
    negate: bool


@dataclass(frozen=True)
class Truth:  # a bare boolean column used as a test
    operand: Column


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    operands: tuple


# -- tokenising and parsing ----------------------------------------------------------------------------
def tokenize(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise WvError(f"rule {text!r}: cannot read {text[pos:pos + 12]!r} (at character {pos + 1})")
        kind, value = match.lastgroup, match.group()
        pos = match.end()
        if kind == "space":
            continue
        if kind == "number":
            tokens.append(("literal", float(value) if any(c in value for c in ".eE") else int(value)))
        elif kind == "string":
            tokens.append(("literal", re.sub(r"\\(.)", r"\1", value[1:-1])))
        elif kind == "quoted":
            tokens.append(("column", value.replace("`", "").strip()))
        elif kind == "name" and value.lower() in KEYWORDS:
            word = value.lower()
            tokens.append(("literal", word == "true") if word in ("true", "false") else ("kw", word))
        elif kind == "name":
            tokens.append(("column", value))
        else:
            tokens.append(("kw", {"&&": "and", "&": "and", "||": "or", "|": "or", "!": "not", "=": "=="}.get(value, value)))
    return tokens


class Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.pos = text, tokenize(text), 0

    def fail(self, what: str):
        shown = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "the end"
        raise WvError(f"rule {self.text!r}: {what}, found {shown!r}")

    def peek(self, value=None):
        if self.pos >= len(self.tokens):
            return None
        token = self.tokens[self.pos]
        return token if value is None or token == ("kw", value) else None

    def take(self, value):
        if self.peek(value):
            self.pos += 1
            return True
        return False

    def parse(self):
        if not self.tokens:
            raise WvError("a rule is empty; write e.g. 'lda.similarity < 0.05'")
        tree = self.parse_or()
        if self.pos != len(self.tokens):
            self.fail("expected 'and', 'or' or the end of the rule")
        return tree

    def parse_or(self):
        operands = [self.parse_and()]
        while self.take("or"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Logic("or", tuple(operands))

    def parse_and(self):
        operands = [self.parse_not()]
        while self.take("and"):
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else Logic("and", tuple(operands))

    def parse_not(self):
        if self.take("not"):
            return Not(self.parse_not())
        return self.parse_test()

    def parse_test(self):
        if self.take("("):
            inner = self.parse_or()
            if not self.take(")"):
                self.fail("expected ')'")
            return inner
        left = self.parse_operand()
        token = self.peek()
        if token and token[0] == "kw" and token[1] in COMPARISONS:
            self.pos += 1
            return Compare(token[1], left, self.parse_operand())
        if self.take("is"):
            negate = self.take("not")
            if not self.take("null"):
                self.fail("expected 'null' after 'is'")
            return IsNull(self.column(left, "is null"), negate)
        if self.peek("in") or (self.peek("not") and self.pos + 1 < len(self.tokens) and self.tokens[self.pos + 1] == ("kw", "in")):
            negate = self.take("not")
            self.take("in")
            return In(self.column(left, "in"), self.parse_list(), negate)
        if isinstance(left, Column):
            return Truth(left)
        self.fail("expected a comparison (<, <=, >, >=, ==, !=), 'is null' or 'in'")

    def parse_operand(self):
        negative = self.take("-")
        token = self.peek()
        if token is None or token[0] not in ("column", "literal"):
            self.fail("expected a column name or a value")
        self.pos += 1
        if token[0] == "column":
            if negative:
                self.fail("'-' goes only before a number")
            return Column(token[1])
        value = token[1]
        if negative:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail("'-' goes only before a number")
            value = -value
        return Literal(value)

    def parse_list(self):
        if not self.take("("):
            self.fail("expected '(' after 'in'")
        values = [self.parse_literal()]
        while self.take(","):
            values.append(self.parse_literal())
        if not self.take(")"):
            self.fail("expected ')' to close the list")
        return tuple(values)

    def parse_literal(self):
        operand = self.parse_operand()
        if not isinstance(operand, Literal):
            self.fail("an 'in' list holds values only")
        return operand.value

    def column(self, operand, what):
        if not isinstance(operand, Column):
            self.fail(f"'{what}' needs a column on its left")
        return operand


def parse(text: str):
    return Parser(text).parse()


def columns_of(tree) -> list[str]:
    """Column references in the order they appear."""
    if isinstance(tree, Column):
        return [tree.ref]
    if isinstance(tree, Compare):
        return columns_of(tree.left) + columns_of(tree.right)
    if isinstance(tree, (IsNull, In, Truth)):
        return [tree.operand.ref]
    if isinstance(tree, Not):
        return columns_of(tree.operand)
    if isinstance(tree, Logic):
        return [ref for operand in tree.operands for ref in columns_of(operand)]
    return []


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


def dtype_kind(dtype) -> str:
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
    types: tuple  # the dtype kind of each of those columns

    def kinds(self) -> dict:
        return dict(zip(self.columns, self.types))

    def expression(self, schemas: dict[str, dict]) -> pl.Expr:
        """A boolean expression over columns named "score.column"; true where the rule fires."""
        return to_expr(self.tree, schemas, self).fill_null(False)

    def ranking(self, schemas: dict[str, dict]):
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


def lookup(qualified: str, schemas: dict[str, dict]):
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
        "<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right,
        "==": left == right, "!=": left != right,
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
        rule = Rule(text, tree, columns, tuple(dtype_kind(lookup(c, schemas)) for c in columns))
        rule.expression(schemas)  # type-checks the whole rule now, not halfway through the data
        rules.append(rule)
    return rules
