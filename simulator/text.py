"""TPC-H-like comment text: short phrases from the vocabulary of TPC-H's text grammar (4.2.2.10)."""

import random

NOUNS = (
    "foxes", "ideas", "theodolites", "pinto beans", "instructions", "dependencies", "excuses",
    "platelets", "asymptotes", "courts", "dolphins", "multipliers", "sauternes", "warthogs",
    "frets", "dinos", "attainments", "somas", "Tiresias", "patterns", "forges", "braids",
    "hockey players", "frays", "warhorses", "dugouts", "notornis", "epitaphs", "pearls", "tithes",
    "waters", "orbits", "gifts", "sheaves", "depths", "sentiments", "decoys", "realms", "pains",
    "grouches", "escapades", "packages", "requests", "accounts", "deposits",
)  # fmt: skip
VERBS = (
    "sleep", "wake", "are", "cajole", "haggle", "nag", "use", "boost", "affix", "detect",
    "integrate", "maintain", "nod", "was", "lose", "sublate", "solve", "thrash", "promise",
    "engage", "hinder", "print", "x-ray", "breach", "eat", "grow", "impress", "mold", "poach",
    "serve", "run", "dazzle", "snooze", "doze", "unwind", "kindle", "play", "hang", "believe",
)  # fmt: skip
ADJECTIVES = (
    "furious", "sly", "careful", "blithe", "quick", "fluffy", "slow", "quiet", "ruthless", "thin",
    "close", "dogged", "daring", "brave", "stealthy", "permanent", "enticing", "idle", "busy",
    "regular", "final", "ironic", "even", "bold", "silent", "express", "special", "pending",
)  # fmt: skip
ADVERBS = (
    "sometimes", "always", "never", "furiously", "slyly", "carefully", "blithely", "quickly",
    "fluffily", "slowly", "quietly", "ruthlessly", "thinly", "closely", "doggedly", "daringly",
    "bravely", "stealthily", "permanently", "enticingly", "idly", "busily", "regularly",
    "finally", "ironically", "evenly", "boldly", "silently",
)  # fmt: skip
PREPOSITIONS = (
    "about", "above", "according to", "across", "after", "against", "along", "among", "around",
    "at", "atop", "before", "behind", "beneath", "beside", "between", "beyond", "by", "despite",
    "during", "except", "for", "from", "inside", "instead of", "into", "near", "of", "on",
    "outside", "over", "past", "since", "through", "to", "toward", "under", "until", "upon",
    "without", "with", "within",
)  # fmt: skip
TERMINATORS = (".", ";", ":", "?", "!", "--")


def sentence(rng: random.Random) -> str:
    """Return one random sentence of the grammar's simplest shapes."""
    shape = rng.randrange(3)
    noun_phrase = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    verb_phrase = f"{rng.choice(ADVERBS)} {rng.choice(VERBS)}"
    if shape == 0:
        text = f"{noun_phrase} {verb_phrase}"
    elif shape == 1:
        text = f"{noun_phrase} {verb_phrase} {rng.choice(PREPOSITIONS)} the {rng.choice(NOUNS)}"
    else:
        text = f"{rng.choice(NOUNS)} {rng.choice(VERBS)} {rng.choice(ADVERBS)}"
    return text + rng.choice(TERMINATORS)


def comment(rng: random.Random, min_length: int, max_length: int) -> str:
    """Return comment text of a random length in [min_length, max_length], cut like TPC-H's."""
    length = rng.randint(min_length, max_length)
    text = ""
    while len(text) < length:
        text += sentence(rng) + " "
    return text[:length].strip() or rng.choice(NOUNS)
