"""The project's own demo dataset: synthetic customer-support messages with 8 labels.

Deterministic for a seed; multi-label with co-occurrence (refunds come with billing, outages
with urgency), imbalanced (praise and feature requests are rare), varied wording, a share of
messages with no label and a little label noise, so it is learnable but not trivial.
"""
from __future__ import annotations

import random

from mlcore.datasets import LabeledTexts

LABELS = ["billing", "shipping", "technical_issue", "account", "refund", "urgent", "praise", "feature_request"]

# Base rate of each label as a message's main topic (imbalance), before co-occurrence.
TOPIC_WEIGHTS = {"billing": 0.22, "shipping": 0.22, "technical_issue": 0.24, "account": 0.16,
                 "refund": 0.06, "praise": 0.05, "feature_request": 0.05}

PHRASES = {
    "billing": ["I was charged twice this month", "my invoice shows the wrong amount", "why did my bill go up",
                "there is an unexpected fee on my statement", "the payment went through but my plan still says unpaid",
                "can you explain this charge on my credit card", "my subscription renewed at a higher price",
                "the tax on my invoice looks wrong"],
    "shipping": ["my package has not arrived yet", "the tracking number does not work", "the parcel was delivered to the wrong address",
                 "delivery is a week late", "the courier says the box was lost", "my order is stuck in transit",
                 "can I change the delivery address", "the box arrived damaged and crushed"],
    "technical_issue": ["the app crashes when I open it", "I get an error 500 on the checkout page", "the website will not load",
                        "sync stopped working after the update", "the login button does nothing", "the screen freezes on startup",
                        "uploads fail with a timeout", "notifications stopped arriving on my phone"],
    "account": ["I cannot reset my password", "please update the email on my account", "how do I delete my account",
                "my account was locked after too many attempts", "I want to change my username", "two factor codes never arrive",
                "someone else may have access to my profile", "please merge my two accounts"],
    "refund": ["I would like a refund", "please give me my money back", "when will the refund reach my card",
               "I returned the item but got no refund", "cancel the order and refund me", "I want to return this for a full refund"],
    "urgent": ["this is urgent", "please help as soon as possible", "I need this fixed today", "my whole team is blocked right now",
               "this is critical for our launch tomorrow", "respond immediately please"],
    "praise": ["thanks, your support team is amazing", "great service as always", "I love the new design",
               "you folks did a fantastic job", "really happy with the quick answer"],
    "feature_request": ["it would be great to have a dark mode", "please add an export to csv option", "could you support more languages",
                        "I wish there was a calendar integration", "please add a bulk edit feature", "an offline mode would be nice"],
}
OPENERS = ["Hi,", "Hello team,", "Hey,", "Good morning,", "Dear support,", "", "", "Hi there,"]
CLOSERS = ["Thanks.", "Regards, Sam", "Cheers", "", "", "Best, Alex", "Thank you in advance.", "Any update?"]
FILLERS = ["I have been a customer for years.", "I tried again this morning.", "My order number is {n}.",
           "This happened yesterday too.", "I am using the latest version.", "My colleague has the same question.",
           "I already contacted you last week.", ""]
NO_LABEL = ["Just checking in about my earlier message.", "What are your opening hours?", "Is this the right address to write to?",
            "I have a general question.", "Who should I talk to about a partnership?", "Ok, noted."]


def generate_demo(n_rows: int = 2400, seed: int = 13, noise: float = 0.03) -> LabeledTexts:
    """`n_rows` support messages with their labels; same seed, same data."""
    rng = random.Random(seed)
    topics, weights = list(TOPIC_WEIGHTS), list(TOPIC_WEIGHTS.values())
    texts, labels = [], []
    for _ in range(n_rows):
        if rng.random() < 0.05:
            chosen: set[str] = set()
        else:
            chosen = {rng.choices(topics, weights)[0]}
            if rng.random() < 0.25:
                chosen.add(rng.choices(topics, weights)[0])
            if "refund" in chosen and rng.random() < 0.7:
                chosen.add("billing" if rng.random() < 0.6 else "shipping")
            if "technical_issue" in chosen and rng.random() < 0.3:
                chosen.add("urgent")
            elif rng.random() < 0.06:
                chosen.add("urgent")
            if rng.random() < 0.05:
                chosen.add("praise")
        parts = [rng.choice(OPENERS)]
        body = [rng.choice(PHRASES[label]) for label in sorted(chosen)] or [rng.choice(NO_LABEL)]
        rng.shuffle(body)
        for sentence in body:
            parts.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "!", "?"]))
            if rng.random() < 0.4:
                parts.append(rng.choice(FILLERS).format(n=rng.randint(10000, 99999)))
        parts.append(rng.choice(CLOSERS))
        text = " ".join(p for p in parts if p)
        if rng.random() < 0.3:
            text = text.lower()
        observed = set(chosen)
        if rng.random() < noise:  # annotator noise: one label flipped
            observed ^= {rng.choice(LABELS)}
        texts.append(text)
        labels.append([l for l in LABELS if l in observed])
    return LabeledTexts(texts, labels, list(LABELS))
