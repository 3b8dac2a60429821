"""Built-in offline generators: synthetic, templated rows for the three task kinds, no download needed.

Every generator has the signature `fn(n: int, seed: int, **params) -> list[dict]` and draws from one
`random.Random(seed)`, so a seed always yields the same rows. User generators are named `pkg.mod:fn` and are
imported only with `allow_code` (see `resolve_generator`).

| name                | kind        | columns                                          |
|---------------------|-------------|--------------------------------------------------|
| `arithmetic`        | verifiable  | question, answer (worked, ends `#### N`), difficulty, value |
| `preference_pairs`  | preference  | prompt, chosen, rejected, category               |
| `preference_ranked` | preference  | prompt, ranked (best first)                      |
| `instructions`      | open_ended  | instruction, category                            |

All text is invented from the word tables below; nothing is copied from a dataset.
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from urpo_kit.errors import SourceError
from urpo_kit.plugins import is_dotted_path, resolve_callable

Generator = Callable[..., list[dict]]

# ============================================================================================ arithmetic
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
class Problem:
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


def make_problem(rng: random.Random, max_value: int = 100, steps: int | str = "mixed") -> Problem:
    """One word problem with integer intermediate results; `steps` is 1, 2 or "mixed"."""
    if steps not in (1, 2, "mixed"):
        raise ValueError(f"steps must be 1, 2 or 'mixed', got {steps!r}")
    if max_value < 10:
        raise ValueError(f"max_value must be at least 10, got {max_value}")
    two = steps == 2 or (steps == "mixed" and rng.random() < 0.5)
    question, plan = (_two_step if two else _one_step)(rng, max_value)
    return Problem(question, plan, 2 if two else 1)


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


# ============================================================================================ preferences
CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Germany", "Berlin"),
    ("Canada", "Ottawa"), ("Australia", "Canberra"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"), ("India", "New Delhi"), ("China", "Beijing"),
    ("South Korea", "Seoul"), ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Portugal", "Lisbon"),
    ("Greece", "Athens"), ("Peru", "Lima"), ("Thailand", "Bangkok"), ("Ireland", "Dublin"), ("Poland", "Warsaw"),
    ("Turkey", "Ankara"), ("Chile", "Santiago"), ("Vietnam", "Hanoi"), ("Austria", "Vienna"), ("Hungary", "Budapest"),
]
UNITS = [  # (smaller unit, larger unit, how many smaller units in one larger)
    ("minutes", "hours", 60), ("seconds", "minutes", 60), ("hours", "days", 24), ("days", "weeks", 7),
    ("months", "years", 12), ("centimeters", "meters", 100), ("grams", "kilograms", 1000),
    ("millimeters", "centimeters", 10), ("meters", "kilometers", 1000), ("milliliters", "liters", 1000),
]
DEFINITIONS = {
    "photosynthesis": "Photosynthesis is the process plants use to make their own food: they take in sunlight, "
    "water and carbon dioxide, turn them into sugar, and release oxygen.",
    "gravity": "Gravity is the force that pulls objects toward each other. On Earth it pulls everything toward "
    "the ground, which is why a dropped ball falls.",
    "a prime number": "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, "
    "such as 2, 3, 5, 7 and 11.",
    "evaporation": "Evaporation is when a liquid turns into a gas. Puddles dry up after rain because the water "
    "slowly evaporates into the air.",
    "a noun": "A noun is a word that names a person, place, thing or idea, such as 'teacher', 'city', 'chair' "
    "or 'happiness'.",
    "a verb": "A verb is a word for an action or a state, such as 'run', 'think' or 'is'.",
    "an adjective": "An adjective is a word that describes a noun, such as 'red', 'tall' or 'quiet'.",
    "a fraction": "A fraction is a part of a whole. In 3/4 the bottom number says the whole is split into 4 equal "
    "parts and the top number says we have 3 of them.",
    "a habitat": "A habitat is the natural home of a plant or animal, where it finds food, water and shelter.",
    "the water cycle": "The water cycle is the constant movement of water: it evaporates from seas and lakes, "
    "forms clouds, falls as rain or snow, and flows back to the sea.",
    "a budget": "A budget is a plan for your money that lists what you expect to earn and spend over a period, "
    "so you can decide in advance how much to save.",
    "a metaphor": "A metaphor describes something by calling it something else, as in 'time is a thief', to "
    "suggest a likeness without using 'like' or 'as'.",
    "an atom": "An atom is the smallest unit of a chemical element; everything around us is made of atoms.",
    "inflation": "Inflation is the general rise in prices over time, so the same amount of money buys a little "
    "less each year.",
    "a volcano": "A volcano is an opening in the Earth's crust through which melted rock, ash and gases escape.",
    "friction": "Friction is the force that resists motion when two surfaces rub together; it is why a rolling "
    "ball eventually stops.",
}
HOW_TO = {
    "keep basil alive indoors": "Put it in a sunny window with at least six hours of light, water it when the top "
    "of the soil feels dry, and pinch off flower buds so it keeps growing leaves.",
    "remember new vocabulary": "Review words in short daily sessions, use each new word in a sentence of your own, "
    "and revisit the list after a few days so the words move into long-term memory.",
    "fall asleep more easily": "Keep a regular bedtime, avoid screens and caffeine in the hour before bed, and keep "
    "your bedroom cool, dark and quiet.",
    "make a good cup of tea": "Boil fresh water, pour it over the tea, let it steep for three to five minutes, then "
    "remove the tea and add milk or sugar if you like.",
    "clean a cast-iron pan": "Rinse it with hot water while it is still warm, scrub off stuck food with a brush or "
    "coarse salt, dry it completely and rub in a thin layer of oil.",
    "prepare for a job interview": "Research the company, practise answers to common questions out loud, prepare "
    "two or three questions of your own, and plan to arrive ten minutes early.",
    "save money on groceries": "Plan meals for the week, shop with a list, compare unit prices on the shelf labels, "
    "and choose store brands for staples.",
    "start running as a beginner": "Alternate short stretches of running and walking, go three times a week with "
    "rest days in between, and add only a little time each week.",
    "write a clear email": "State your purpose in the first sentence, keep paragraphs short, make any request "
    "explicit with a deadline, and reread it once before sending.",
    "organise a small closet": "Take everything out, donate what you have not worn in a year, group the rest by "
    "type, and use shelf dividers or hooks to keep it in order.",
}
ANTONYMS = [
    ("hot", "cold"), ("early", "late"), ("tall", "short"), ("happy", "sad"), ("open", "closed"), ("full", "empty"),
    ("light", "dark"), ("fast", "slow"), ("ancient", "modern"), ("generous", "selfish"), ("strong", "weak"),
    ("begin", "end"), ("accept", "refuse"), ("increase", "decrease"), ("above", "below"), ("visible", "invisible"),
    ("rough", "smooth"), ("noisy", "quiet"), ("arrive", "depart"), ("wet", "dry"),
]
EVASIVE = [
    "That's a great question! There are many perspectives on this, and it really depends on your situation.",
    "I'd rather not get into that right now.",
    "You can probably find that information online if you search for it.",
    "Hmm, that is an interesting topic. People have wondered about things like this for a long time.",
    "I'm not sure I can help with that. Is there something else you would like to talk about?",
    "It depends on many factors, so there isn't really a single answer.",
]
TIPS = {
    "staying focused while studying": [
        "Put your phone in another room.", "Work in 25-minute blocks with short breaks.",
        "Write down one clear goal for each session.", "Keep water and snacks nearby so you don't wander off.",
        "Study at the same desk every day."],
    "sleeping better": [
        "Go to bed and get up at the same time every day.", "Keep the bedroom cool and dark.",
        "Avoid caffeine after midday.", "Stop using screens an hour before bed.",
        "Get some daylight in the morning."],
    "saving money": [
        "Set up an automatic transfer to savings on payday.", "Track every expense for a month.",
        "Cancel subscriptions you no longer use.", "Wait a day before any unplanned purchase.",
        "Cook at home more often."],
    "keeping houseplants alive": [
        "Check the soil with a finger before watering.", "Match each plant to the light it needs.",
        "Use pots with drainage holes.", "Dust the leaves now and then.", "Feed them lightly during spring and summer."],
    "giving a short presentation": [
        "Open with the one point you want people to remember.", "Practise out loud at least twice.",
        "Keep slides to a few words each.", "Look at the audience, not the screen.", "Finish on time."],
    "learning a new language": [
        "Practise a little every day rather than a lot once a week.", "Learn the most common words first.",
        "Listen to podcasts or songs in the language.", "Speak from the first week, even with mistakes.",
        "Label objects around your home."],
    "staying safe while hiking": [
        "Tell someone your route and return time.", "Check the weather before you leave.",
        "Carry more water than you think you need.", "Bring a map even if you have a phone.",
        "Turn back if conditions get worse."],
    "reducing food waste": [
        "Plan meals before you shop.", "Store leftovers in clear containers at eye level.",
        "Freeze bread and fruit before they spoil.", "Use the oldest food in the fridge first.",
        "Turn vegetable scraps into soup stock."],
}
FILLER = ["I don't know.", "Let me think about this.", "The answer is", "...", "Hmm, hard to say."]


def _helpful(rng: random.Random) -> tuple[str, str]:
    """A factual or practical question and a direct, correct answer."""
    kind = rng.randrange(5)
    if kind == 0:
        country, capital = rng.choice(CAPITALS)
        return f"What is the capital of {country}?", f"The capital of {country} is {capital}."
    if kind == 1:
        small, big, factor = rng.choice(UNITS)
        k = rng.randint(2, 12)
        return (f"How many {small} are in {k} {big}?",
                f"There are {k * factor} {small} in {k} {big}: each {big[:-1]} has {factor} {small}, "
                f"and {k} x {factor} = {k * factor}.")
    if kind == 2:
        term = rng.choice(list(DEFINITIONS))
        form = rng.choice(["What is {t}?", "Can you explain what {t} is?", "In simple words, what is {t}?"])
        return form.format(t=term), DEFINITIONS[term]
    if kind == 3:
        goal = rng.choice(list(HOW_TO))
        form = rng.choice(["How can I {g}?", "What's a good way to {g}?", "Any advice on how to {g}?"])
        return form.format(g=goal), HOW_TO[goal]
    word, opposite = rng.choice(ANTONYMS)
    return f"What is the opposite of '{word}'?", f"The opposite of '{word}' is '{opposite}'."


def _math_pair(rng: random.Random, max_value: int) -> tuple[str, str, str]:
    """A word problem, its correct solution, and a subtly wrong one: one slip that propagates, or correct work
    with a wrong final number."""
    problem = make_problem(rng, max_value)
    lines, results = work(problem.steps)
    chosen = "\n".join(lines + [f"The answer is {results[-1]}."])
    delta = rng.choice([1, 2, 3, 10])
    if rng.random() < 0.4:
        rejected = "\n".join(lines + [f"The answer is {results[-1] + delta}."])
    else:
        rejected = _slipped(rng, problem.steps, delta)
    return problem.question, chosen, rejected


def _slipped(rng: random.Random, steps: tuple[Step, ...], delta: int) -> str:
    """The solution with one step's result off by ±delta; only steps with no later division are eligible (so
    every later step stays exact), and the sign is chosen so that no quantity turns negative."""
    eligible = [i for i in range(len(steps)) if all("/" not in s.ops for s in steps[i + 1:])]
    at = rng.choice(eligible)
    for d in rng.sample([delta, -delta], 2):
        lines, results = work(steps, slip=(at, d))
        if min(results) >= 0:
            return "\n".join(lines + [f"The answer is {results[-1]}."])
    lines, results = work(steps, slip=(len(steps) - 1, delta))  # the last step alone cannot go negative this way
    return "\n".join(lines + [f"The answer is {results[-1]}."])


def _format_pair(rng: random.Random, max_value: int) -> tuple[str, str, str]:
    """A request with an explicit format constraint; both answers have the right content, only one obeys it."""
    kind = rng.randrange(5)
    if kind == 0:
        topic = rng.choice(list(TIPS))
        tips = rng.sample(TIPS[topic], 5)
        prompt = f"Give me tips for {topic}. Answer in exactly three bullet points."
        chosen = "\n".join(f"- {t}" for t in tips[:3])
        if rng.random() < 0.5:
            rejected = "\n".join(f"- {t}" for t in tips)
        else:
            rejected = "Here are some tips: " + " ".join(tips[:3])
        return prompt, chosen, rejected
    if kind == 1:
        if rng.random() < 0.5:
            country, capital = rng.choice([(c, k) for c, k in CAPITALS if " " not in k])
            prompt = f"Reply in one word: what is the capital of {country}?"
            return prompt, f"{capital}.", f"The capital of {country} is {capital}, which is also its largest city."
        word, opposite = rng.choice(ANTONYMS)
        prompt = f"In one word, what is the opposite of '{word}'?"
        return prompt, f"{opposite.capitalize()}.", f"The opposite of '{word}' is '{opposite}'."
    if kind == 2:
        problem = make_problem(rng, max_value, steps=1)
        lines, results = work(problem.steps)
        prompt = f"{problem.question} Reply with the number only."
        return prompt, str(results[-1]), "\n".join(lines + [f"The answer is {results[-1]}."])
    country, capital = rng.choice(CAPITALS)
    sentence = f"The capital of {country} is {capital}."
    if kind == 3:
        return f"Answer in capital letters only: what is the capital of {country}?", sentence.upper(), sentence
    prompt = (f'What is the capital of {country}? Reply only with JSON of the form '
              f'{{"country": "...", "capital": "..."}}.')
    answer = json.dumps({"country": country, "capital": capital})
    return prompt, answer, f"Sure! Here is the JSON you asked for: {answer} Let me know if you need anything else."


def preference_pairs(
    n: int, seed: int, categories: list[str] | None = None, max_value: int = 100
) -> list[dict]:
    """Pairs with a known winner: prompt, chosen, rejected, category (`math`, `helpful` or `format`)."""
    wanted = categories or ["math", "helpful", "format"]
    unknown = set(wanted) - {"math", "helpful", "format"}
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; use math, helpful, format")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        category = rng.choice(wanted)
        if category == "math":
            prompt, chosen, rejected = _math_pair(rng, max_value)
        elif category == "format":
            prompt, chosen, rejected = _format_pair(rng, max_value)
        else:
            prompt, chosen = _helpful(rng)
            if rng.random() < 0.5:
                rejected = rng.choice(EVASIVE)
            else:  # off-topic: a good answer to some other question
                rejected = chosen
                while rejected == chosen:
                    rejected = _helpful(rng)[1]
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "category": category})
    return rows


def preference_ranked(n: int, seed: int, candidates: int = 4, max_value: int = 100) -> list[dict]:
    """Word problems with 3 or 4 answers best first: correct, one arithmetic slip, off-topic, (empty-ish)."""
    if candidates not in (3, 4):
        raise ValueError(f"candidates must be 3 or 4, got {candidates}")
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        problem = make_problem(rng, max_value)
        lines, results = work(problem.steps)
        correct = "\n".join(lines + [f"The answer is {results[-1]}."])
        slip = _slipped(rng, problem.steps, rng.choice([1, 2, 3, 10]))
        off_topic = correct
        while off_topic in (correct, slip):  # a good answer to some other problem, never a copy of this one's
            other_lines, other_results = work(make_problem(rng, max_value).steps)
            off_topic = "\n".join(other_lines + [f"The answer is {other_results[-1]}."])
        ranked = [correct, slip, off_topic, rng.choice(FILLER)][:candidates]
        rows.append({"prompt": problem.question, "ranked": ranked})
    return rows


# ============================================================================================ instructions
POEM_FORMS = ["haiku", "limerick", "four-line rhyming poem", "short free-verse poem"]
POEM_TOPICS = [
    "the first snow of winter", "a lighthouse at night", "a cat watching the rain", "morning coffee",
    "an old bicycle", "the ocean at dawn", "a city bus at rush hour", "autumn leaves", "a quiet library",
    "a thunderstorm", "a garden after rain", "the moon over a lake", "a busy kitchen", "a mountain trail",
    "a lost umbrella", "a train station at midnight", "fireflies in summer", "a snowy forest",
    "a Saturday market", "a kite on a windy day", "a sleepy dog", "the last day of school", "stars over the desert",
    "a broken clock", "a sunflower field", "a rainy window", "a candle flame", "an empty playground",
]
CONCEPTS = [
    "how rainbows form", "why the sky is blue", "how vaccines work", "what electricity is",
    "how a bicycle stays upright", "why we have seasons", "how plants drink water", "what money is for",
    "how the internet sends messages", "why leaves change colour in autumn", "how magnets work",
    "what a computer program is", "why the moon seems to change shape", "how bees make honey",
    "what recycling does", "how airplanes stay in the air", "why we need sleep", "how a compass works",
    "what clouds are made of", "how sound travels", "what DNA is", "why ice floats",
    "how a refrigerator keeps food cold", "how the heart pumps blood", "how batteries store energy",
    "why the ocean is salty", "how maps show distance", "what a fraction is",
]
GOALS = list(TIPS) + [
    "writing a clear email", "preparing for a job interview", "staying hydrated", "starting a vegetable garden",
    "reducing screen time", "making friends in a new city", "running a first 5 km race", "cooking on a budget",
    "organising a small kitchen", "keeping a journal", "travelling with carry-on luggage only",
    "teaching a child to ride a bike", "reading more books", "taking better photos with a phone",
    "remembering people's names", "working from home",
]
TOWNS = ["Millbrook", "Harrow Bay", "Pinecrest", "Oakfield", "Riverton", "Ashby Falls", "Stonegate", "Willowmere"]
WHEN = ["Last spring", "In March", "Two years ago", "This summer", "Last autumn"]
EVENTS = [  # (what was launched, a detail sentence, the plan that follows)
    ("a tool-lending library", "Residents can borrow drills, ladders and garden tools for a week with a library card.",
     "add a repair café on Saturday mornings"),
    ("a community garden", "Each family gets a small plot, and the town supplies water and compost for free.",
     "build a greenhouse so people can grow vegetables in winter"),
    ("a night market", "Local cooks and craftspeople sell food and handmade goods every Friday evening.",
     "close the main street to cars on market nights"),
    ("a children's reading club", "Volunteers read with children after school and help them pick books to take home.",
     "start a second group for teenagers"),
    ("a river clean-up day", "Volunteers collected bottles, tyres and plastic bags along two kilometres of the bank.",
     "hold the clean-up twice a year"),
    ("a free bicycle repair workshop", "Mechanics teach people to fix flat tyres, brakes and chains themselves.",
     "give away refurbished bicycles to students"),
    ("an electric bus line", "The small buses run every twenty minutes between the station and the hospital.",
     "extend the line to the new school"),
    ("a weekend music festival", "Bands from nearby villages played on three stages in the park.",
     "make the festival an annual event"),
]
INFORMAL = [
    "hey, can u send me the report asap?", "gonna be late, traffic's insane", "thx for the help yesterday, u rock",
    "the meeting got moved, no idea why lol", "can't make it tmrw, something came up",
    "ur package is stuck at the warehouse, sorry", "the printer's busted again", "we gotta talk about the budget thing",
    "send me the pics from the trip when u get a sec", "i think the numbers are kinda off in this sheet",
    "pls don't forget to lock up", "the new guy is pretty good at this stuff", "lemme know if the time works for ya",
    "the app keeps crashing, it's driving me nuts", "our flight got cancelled so we're stuck here",
    "can we push the deadline a bit?", "dunno who's bringing the snacks", "the office wifi is super slow today",
    "grab me a coffee if ur going out?", "the client loved the pitch, nice job",
]
RECIPIENTS = ["your landlord", "a teacher", "your manager", "a neighbour", "a customer", "a hotel", "a colleague"]
PURPOSES = [
    "asking to reschedule a meeting", "reporting a broken heater", "thanking them for their help",
    "requesting a day off", "asking about a missing delivery", "inviting them to a small party",
    "apologising for a late reply", "asking for a recommendation",
]
CHARACTERS = [
    "a shy robot", "an old fisherman", "a curious fox", "a young baker", "a retired astronaut", "a lost penguin",
    "a grumpy cat", "a girl who collects maps", "a tired mail carrier", "a talking tree",
]
SITUATIONS = [
    "finds a mysterious key", "has to cross a frozen river", "wins a prize by accident",
    "loses their voice on an important day", "discovers a hidden garden", "makes a friend during a storm",
    "must fix something they broke", "gets a letter from the future",
]
COMPARISONS = [
    ("tea", "coffee"), ("trains", "planes for short trips"), ("e-books", "paper books"), ("cats", "dogs as pets"),
    ("renting", "buying a home"), ("walking", "cycling to work"), ("studying alone", "studying in a group"),
    ("city life", "country life"), ("handwritten notes", "typed notes"), ("summer holidays", "winter holidays"),
]
NAMING = [
    "bakery that only sells bread", "board game about pirates", "friendly robot vacuum", "podcast about gardening",
    "coffee shop inside a library", "hiking club", "pet goldfish", "fantasy kingdom", "school science fair team",
    "food truck selling tacos",
]


def _paragraph(rng: random.Random) -> str:
    town, (event, detail, plan) = rng.choice(TOWNS), rng.choice(EVENTS)
    people = rng.randrange(120, 2000, 10)
    return (f"{rng.choice(WHEN)}, the town of {town} launched {event}. {detail} In the first three months more than "
            f"{people} people took part, and organisers say interest is still growing. The town now plans to {plan}.")


def _instruction(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(8)
    if kind == 0:
        return f"Write a {rng.choice(POEM_FORMS)} about {rng.choice(POEM_TOPICS)}.", "poem"
    if kind == 1:
        concept = rng.choice(CONCEPTS)
        form = rng.choice(["Explain {c} to a {a}-year-old.", "Explain {c} in simple terms.", "Explain {c} in two sentences."])
        return form.format(c=concept, a=rng.choice([5, 7, 8, 10])), "explain"
    if kind == 2:
        count = rng.choice(["three", "four", "five"])
        form = rng.choice(["Give {k} practical tips for {g}.", "What are {k} things that help with {g}?"])
        return form.format(k=count, g=rng.choice(GOALS)), "tips"
    if kind == 3:
        form = rng.choice(["Summarise the following paragraph in one sentence.",
                           "Summarise the following paragraph in three bullet points.",
                           "Write a headline for the following news paragraph."])
        return f"{form}\n\n{_paragraph(rng)}", "summarise"
    if kind == 4:
        form = rng.choice(["Rewrite this sentence in a formal tone:", "Rewrite this message so it is polite and professional:",
                           "Turn this note into one formal sentence for a work email:"])
        return f'{form} "{rng.choice(INFORMAL)}"', "rewrite"
    if kind == 5:
        return f"Write a short email to {rng.choice(RECIPIENTS)} {rng.choice(PURPOSES)}.", "email"
    if kind == 6:
        return (f"Write a short story, under 150 words, about {rng.choice(CHARACTERS)} who "
                f"{rng.choice(SITUATIONS)}.", "story")
    if rng.random() < 0.5:
        a, b = rng.choice(COMPARISONS)
        return f"Compare {a} and {b} in a short paragraph.", "compare"
    return f"Suggest five names for a {rng.choice(NAMING)}.", "naming"


def instructions(n: int, seed: int) -> list[dict]:
    """Open-ended instructions with no reference answer: instruction, category (poem, explain, tips, ...)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        instruction, category = _instruction(rng)
        rows.append({"instruction": instruction, "category": category})
    return rows


# ============================================================================================ registry
GENERATORS: dict[str, Generator] = {
    "arithmetic": arithmetic,
    "preference_pairs": preference_pairs,
    "preference_ranked": preference_ranked,
    "instructions": instructions,
}


def resolve_generator(name: str, *, allow_code: bool = False) -> Generator:
    """A built-in by name, or a user's `pkg.mod:fn` (refused with CodeNotAllowed unless `allow_code`)."""
    if is_dotted_path(name):
        try:
            return resolve_callable(name, allow_code=allow_code, what="generator")
        except ValueError as e:
            raise SourceError(str(e)) from None
    if name not in GENERATORS:
        raise SourceError(
            f"unknown generator `{name}`; built-ins: {', '.join(GENERATORS)} (or `pkg.mod:fn` with --allow-code)"
        )
    return GENERATORS[name]


def generate(name: str, n: int, seed: int, params: dict[str, Any], *, allow_code: bool = False) -> list[dict]:
    """Run a generator, turning bad parameters and bad output into SourceErrors that name the generator."""
    fn = resolve_generator(name, allow_code=allow_code)
    try:
        inspect.signature(fn).bind(n, seed, **params)
    except TypeError as e:
        accepted = [p for p in inspect.signature(fn).parameters if p not in ("n", "seed")]
        raise SourceError(f"generator `{name}`: {e}; parameters: {', '.join(accepted) or 'none'}") from None
    try:
        rows = fn(n, seed, **params)
    except ValueError as e:
        raise SourceError(f"generator `{name}`: {e}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SourceError(f"generator `{name}` must return a list of dicts, got {type(rows).__name__}")
    return rows
