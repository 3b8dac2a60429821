"""Multi-step arithmetic word problems with worked answers (`arithmetic`), and the problem model the preference
generators reuse for their wrong answers."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAMES = [
    ("Ava", "she"), ("Liam", "he"), ("Maya", "she"), ("Noah", "he"), ("Priya", "she"), ("Omar", "he"),
    ("Sofia", "she"), ("Kenji", "he"), ("Amara", "she"), ("Lucas", "he"), ("Zoe", "she"), ("Mateo", "he"),
    ("Hana", "she"), ("Ethan", "he"), ("Leila", "she"), ("Tomas", "he"), ("Grace", "she"), ("Ravi", "he"),
    ("Chloe", "she"), ("Diego", "he"), ("Ingrid", "she"), ("Kwame", "he"), ("Nora", "she"), ("Felix", "he"),
]
OBJECTS = [
    "marble", "sticker", "apple", "pencil", "cookie", "seashell", "trading card", "balloon", "stamp", "bead",
    "crayon", "toy car", "postcard", "button", "orange", "cupcake",
]
CONTAINERS = ["box", "bag", "pack", "jar", "tin", "basket"]
ITEMS = [
    "notebook", "sandwich", "movie ticket", "potted plant", "scarf", "puzzle", "mug", "paintbrush", "kite",
    "water bottle", "board game", "phone case",
]
READS = ["book", "novel", "comic collection", "cookbook", "field guide"]


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("x", "s", "ch", "sh")) else "s")


Operand = int | str  # an integer literal, or the `name` of an earlier step's result


@dataclass(frozen=True)
class Step:
    """One line of a worked solution, evaluated left to right; `text` has `{expr}` and `{res}` slots, and
    `money` writes every operand in `{expr}` as dollars."""

    name: str
    args: tuple[Operand, ...]
    ops: tuple[str, ...]
    text: str
    money: bool = False


@dataclass(frozen=True)
class WordProblem:
    """A word problem and the plan of its worked solution; the answer is the last step's result."""

    question: str
    steps: tuple[Step, ...]
    difficulty: int


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "x":
        return a * b
    if b == 0 or a % b:
        raise ValueError(f"{a} / {b} is not exact")
    return a // b


def work(steps: tuple[Step, ...], slip: tuple[int, int] | None = None) -> tuple[list[str], list[int]]:
    """Render the solution lines and step results; `slip=(i, d)` adds d to step i's result (a plausible error
    that then propagates), which is how the preference generators make subtly wrong solutions."""
    values: dict[str, int] = {}
    lines, results = [], []
    for i, step in enumerate(steps):
        nums = [values[a] if isinstance(a, str) else a for a in step.args]
        res = nums[0]
        for op, num in zip(step.ops, nums[1:]):
            res = _apply(res, op, num)
        if slip is not None and slip[0] == i:
            res += slip[1]
        values[step.name] = res
        results.append(res)
        shown = [f"${num}" if step.money else str(num) for num in nums]
        expr = " ".join([shown[0]] + [f"{op} {num}" for op, num in zip(step.ops, shown[1:])])
        lines.append(step.text.format(expr=expr, res=res))
    return lines, results


def _r(rng: random.Random, lo: int, hi: int) -> int:
    """randint that tolerates a small `max_value` (hi below lo collapses to lo)."""
    return rng.randint(lo, max(lo, hi))


def _cast(rng: random.Random) -> dict[str, str]:
    (name, pron), (friend, _) = rng.sample(NAMES, 2)
    obj, container, item = rng.choice(OBJECTS), rng.choice(CONTAINERS), rng.choice(ITEMS)
    return {
        "N": name, "P": pron.capitalize(), "p": pron, "F": friend, "objs": _plural(obj),
        "box": container, "boxes": _plural(container), "item": item, "items": _plural(item),
    }


def _one_step(rng: random.Random, m: int) -> tuple[str, tuple[Step, ...]]:
    c = _cast(rng)
    N, P, F, objs = c["N"], c["P"], c["F"], c["objs"]
    kind = rng.randrange(8)
    if kind == 0:
        a, b = _r(rng, 5, m), _r(rng, 2, m)
        q = f"{N} has {a} {objs}. {P} gets {b} more from {F}. How many {objs} does {N} have now?"
        return q, (Step("x", (a, b), ("+",), f"{N} now has {{expr}} = {{res}} {objs}."),)
    if kind == 1:
        a = _r(rng, 10, m)
        b = _r(rng, 1, a - 1)
        q = f"{N} had {a} {objs} and gave {b} of them to {F}. How many {objs} does {N} have left?"
        return q, (Step("x", (a, b), ("-",), f"{N} has {{expr}} = {{res}} {objs} left."),)
    if kind == 2:
        k, per = _r(rng, 2, 12), _r(rng, 2, min(12, m))
        q = f"{N} buys {k} {c['boxes']} of {objs}. Each {c['box']} holds {per} {objs}. How many {objs} does {N} buy in all?"
        return q, (Step("x", (k, per), ("x",), f"{N} buys {{expr}} = {{res}} {objs}."),)
    if kind == 3:
        each, friends = _r(rng, 2, min(12, m)), _r(rng, 2, 10)
        q = (f"{N} shares {each * friends} {objs} equally among {friends} friends. "
             f"How many {objs} does each friend get?")
        return q, (Step("x", (each * friends, friends), ("/",), f"Each friend gets {{expr}} = {{res}} {objs}."),)
    if kind == 4:
        price, qty = _r(rng, 2, min(25, m)), _r(rng, 2, 10)
        q = f"A {c['item']} costs ${price}. {N} buys {qty} {c['items']}. How many dollars does {N} spend?"
        return q, (Step("x", (price, qty), ("x",), f"{N} spends ${{expr}} = ${{res}}."),)
    if kind == 5:
        pct = rng.choice([10, 20, 25, 50])
        base = 20 * _r(rng, 1, max(1, m // 20))
        q = (f"A {c['item']} normally costs ${base}. This week it is {pct}% off. "
             f"How many dollars does the discount save?")
        return q, (Step("x", (base, pct, 100), ("x", "/"), f"The discount is ${{expr}} = ${{res}}."),)
    if kind == 6:
        rate, days = _r(rng, 2, min(40, m)), _r(rng, 2, 14)
        q = f"{N} reads {rate} pages every day. How many pages does {c['p']} read in {days} days?"
        return q, (Step("x", (rate, days), ("x",), f"{N} reads {{expr}} = {{res}} pages."),)
    a = _r(rng, 10, m)
    b = _r(rng, 1, a - 1)
    q = f"In a game, {N} scored {a} points and {F} scored {b} points. How many more points did {N} score than {F}?"
    return q, (Step("x", (a, b), ("-",), f"{N} scored {{expr}} = {{res}} more points."),)


def _two_step(rng: random.Random, m: int) -> tuple[str, tuple[Step, ...]]:
    c = _cast(rng)
    N, P, F, objs = c["N"], c["P"], c["F"], c["objs"]
    kind = rng.randrange(8)
    if kind == 0:
        a, k, per = _r(rng, 2, m), _r(rng, 2, 6), _r(rng, 2, min(12, m))
        g = _r(rng, 1, a + k * per - 1)
        q = (f"{N} has {a} {objs}. {P} buys {k} {c['boxes']} with {per} {objs} in each, then gives {g} {objs} "
             f"to {F}. How many {objs} does {N} have now?")
        return q, (Step("b", (k, per), ("x",), f"{N} buys {{expr}} = {{res}} {objs}."),
                   Step("x", (a, "b", g), ("+", "-"), f"{N} has {{expr}} = {{res}} {objs} now."))
    if kind == 1:
        qty, price = _r(rng, 2, 8), _r(rng, 2, min(20, m))
        money = qty * price + _r(rng, 1, m)
        q = (f"{N} has ${money}. {P} buys {qty} {c['items']} at ${price} each. "
             f"How many dollars does {N} have left?")
        return q, (Step("c", (price, qty), ("x",), f"The {c['items']} cost ${{expr}} = ${{res}}."),
                   Step("x", (money, "c"), ("-",), f"{N} has {{expr}} = ${{res}} left.", money=True))
    if kind == 2:
        pct = rng.choice([10, 20, 25, 50])
        base = 20 * _r(rng, 1, max(1, m // 20))
        q = f"A {c['item']} costs ${base}. It is on sale for {pct}% off. What is the sale price in dollars?"
        return q, (Step("d", (base, pct, 100), ("x", "/"), "The discount is ${expr} = ${res}."),
                   Step("x", (base, "d"), ("-",), "The sale price is {expr} = ${res}.", money=True))
    if kind == 3:
        jars, hours = _r(rng, 2, 5), _r(rng, 2, 10)
        wage = jars * _r(rng, 1, max(1, 25 // jars))
        q = (f"{N} earns ${wage} an hour and works {hours} hours. {P} splits the money equally into {jars} jars. "
             f"How many dollars go into each jar?")
        return q, (Step("t", (wage, hours), ("x",), f"{N} earns ${{expr}} = ${{res}}."),
                   Step("x", ("t", jars), ("/",), "Each jar gets ${expr} = ${res}."))
    if kind == 4:
        a, k = _r(rng, 2, max(2, m // 4)), _r(rng, 2, 5)
        q = f"{N} has {a} {objs}. {F} has {k} times as many. How many {objs} do they have together?"
        return q, (Step("f", (a, k), ("x",), f"{F} has {{expr}} = {{res}} {objs}."),
                   Step("x", (a, "f"), ("+",), f"Together they have {{expr}} = {{res}} {objs}."))
    if kind == 5:
        item2 = rng.choice([i for i in ITEMS if i != c["item"]])
        q1, p1, q2, p2 = _r(rng, 2, 6), _r(rng, 2, min(20, m)), _r(rng, 2, 6), _r(rng, 2, min(20, m))
        q = (f"{N} buys {q1} {c['items']} at ${p1} each and {q2} {_plural(item2)} at ${p2} each. "
             f"How many dollars does {N} spend in total?")
        return q, (Step("a", (q1, p1), ("x",), f"The {c['items']} cost {{expr}} = ${{res}}."),
                   Step("b", (q2, p2), ("x",), f"The {_plural(item2)} cost {{expr}} = ${{res}}."),
                   Step("x", ("a", "b"), ("+",), "In total that is {expr} = ${res}.", money=True))
    if kind == 6:
        a, b, years = _r(rng, 5, min(60, m)), _r(rng, 2, 20), _r(rng, 2, 15)
        q = f"{N} is {a} years old. {F} is {b} years older than {N}. How old will {F} be in {years} years?"
        return q, (Step("f", (a, b), ("+",), f"{F} is {{expr}} = {{res}} years old now."),
                   Step("x", ("f", years), ("+",), f"In {years} years {F} will be {{expr}} = {{res}}."))
    rate, days = _r(rng, 3, min(30, m)), _r(rng, 2, 7)
    pages = rate * days + _r(rng, 5, 10 * m)
    book = rng.choice(READS)
    q = (f"A {book} has {pages} pages. {N} reads {rate} pages a day for {days} days. "
         f"How many pages are left to read?")
    return q, (Step("r", (rate, days), ("x",), f"{N} reads {{expr}} = {{res}} pages."),
               Step("x", (pages, "r"), ("-",), "There are {expr} = {res} pages left."))


def make_problem(rng: random.Random, max_value: int = 100, steps: int | str = "mixed") -> WordProblem:
    """One word problem with integer intermediate results; `steps` is 1, 2 or "mixed"."""
    if steps not in (1, 2, "mixed"):
        raise ValueError(f"steps must be 1, 2 or 'mixed', got {steps!r}")
    if max_value < 10:
        raise ValueError(f"max_value must be at least 10, got {max_value}")
    two = steps == 2 or (steps == "mixed" and rng.random() < 0.5)
    question, plan = (_two_step if two else _one_step)(rng, max_value)
    return WordProblem(question, plan, 2 if two else 1)


def arithmetic(n: int, seed: int, max_value: int = 100, steps: int | str = "mixed") -> list[dict]:
    """One- and two-step word problems: question, GSM8K-style worked answer ending `#### N`, difficulty, value."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        problem = make_problem(rng, max_value, steps)
        lines, results = work(problem.steps)
        rows.append({
            "question": problem.question,
            "answer": "\n".join(lines + [f"#### {results[-1]}"]),
            "difficulty": problem.difficulty,
            "value": results[-1],
        })
    return rows
