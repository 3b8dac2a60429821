"""Preference rows with a known best response (`preference_pairs`, `preference_ranked`): helpful against evasive
or filler answers, right against slipped arithmetic, the asked format against a near miss."""

from __future__ import annotations

import json
import random

from urpo_kit.sources.generators.arithmetic import Step, make_problem, work

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
