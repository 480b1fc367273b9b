"""The syntax of drop rules: text -> tokens -> a tree (no columns, no types, no polars).

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

wv.curate.rules resolves the tree's columns against the scores present and compiles it.
"""

import re
from dataclasses import dataclass
from typing import NoReturn

from wv.errors import WvError

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`[^`]+`(?:\.(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*))?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)
  | (?P<op><=|>=|==|!=|&&|\|\||[<>=()&|!,-])
""",
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "is", "null", "in", "true", "false"}
COMPARISONS = {"<", "<=", ">", ">=", "==", "=", "!="}


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


Node = Column | Literal | Compare | IsNull | In | Truth | Not | Logic  # a parsed rule


# -- tokenising and parsing ----------------------------------------------------------------------------
def tokenize(text: str) -> list[tuple[str, object]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise WvError(f"rule {text!r}: cannot read {text[pos : pos + 12]!r} (at character {pos + 1})")
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

    def fail(self, what: str) -> NoReturn:
        shown = self.tokens[self.pos][1] if self.pos < len(self.tokens) else "the end"
        raise WvError(f"rule {self.text!r}: {what}, found {shown!r}")

    def peek(self, value=None):
        if self.pos >= len(self.tokens):
            return None
        token = self.tokens[self.pos]
        return token if value is None or token == ("kw", value) else None

    def take(self, value: str) -> bool:
        if self.peek(value):
            self.pos += 1
            return True
        return False

    def parse(self) -> Node:
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

    def column(self, operand: Node, what: str) -> Column:
        if not isinstance(operand, Column):
            self.fail(f"'{what}' needs a column on its left")
        return operand


def parse(text: str) -> Node:
    return Parser(text).parse()


def columns_of(tree: Node) -> list[str]:
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
