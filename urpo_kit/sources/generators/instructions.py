"""Open-ended instructions (`instructions`): poems, explanations, rewrites, letters, comparisons, names."""

from __future__ import annotations

import random

from urpo_kit.sources.generators.preference import TIPS

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
