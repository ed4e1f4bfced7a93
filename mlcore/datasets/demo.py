"""The project's own demo dataset: synthetic customer-support messages with 8 labels.

Deterministic for a seed (byte-identical files); multi-label with co-occurrence (refunds come
with billing or shipping, outages with urgency), imbalanced (refunds about 3x, praise and feature
requests 4-5x rarer than billing), texts built from templates with slots, distractor sentences that use another
label's words without carrying it ("no rush", "the invoice itself is fine"), typos, label
noise and some messages with no label: learnable, but not by one keyword.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from mlcore.datasets.model import LabeledTexts

LABELS = ["billing", "shipping", "technical_issue", "account", "refund", "urgent", "praise", "feature_request"]

# The examples people try first (`mlops demo`, the web app's example buttons) and the labels they carry: a
# demo model that misses them makes a bad first impression, so the generator writes messages like them.
SHOWCASE = [
    ("I was charged twice this month and I want a refund!", ["billing", "refund"]),
    ("The app crashes every time I open it, this is urgent, my whole team is blocked.", ["technical_issue", "urgent"]),
    ("Thanks, your support team is amazing. Could you add a dark mode?", ["praise", "feature_request"]),
]

# Probability of each label as a message's main topic (imbalance), before co-occurrence.
TOPIC_WEIGHTS = {"billing": 0.22, "shipping": 0.22, "technical_issue": 0.24, "account": 0.17,
                 "refund": 0.08, "praise": 0.05, "feature_request": 0.05}

SLOTS = {
    "product": ["order", "headphones", "laptop bag", "coffee machine", "phone case", "desk lamp", "gift box",
                "running shoes", "blender", "keyboard", "winter jacket", "printer ink"],
    "plan": ["subscription", "annual plan", "premium plan", "family plan", "membership"],
    "amount": ["$12.99", "$40", "49 euros", "twice the usual amount", "an extra $5", "$120", "£18"],
    "fee": ["service fee", "late fee", "processing fee", "currency conversion fee", "delivery surcharge"],
    "month": ["March", "April", "May", "June", "last month", "this month"],
    "days": ["three", "five", "ten", "twelve", "2", "8"],
    "weekday": ["Monday", "Tuesday", "Friday", "the weekend", "yesterday"],
    "action": ["pay", "log in", "upload a photo", "check out", "save my settings", "track my order",
               "open my invoices", "change my address"],
    "screen": ["the cart", "my profile", "the order history", "the settings page", "the home screen"],
    "code": ["500", "403", "E-17", "0x80004005", "502 bad gateway", "'something went wrong'"],
    "device": ["iPhone", "Android phone", "tablet", "work laptop", "Chromebook"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge", "the mobile site"],
    "format": ["CSV", "Excel", "PDF", "JSON"],
    "language": ["Spanish", "German", "Polish", "Japanese", "Portuguese"],
    "integration": ["Google Calendar", "Slack", "Outlook", "Shopify", "Zapier"],
}

PHRASES = {
    "billing": [
        "I was charged {amount} for my {product}", "my card was billed twice for the same {product}",
        "the invoice for {month} shows {amount} instead of the usual price", "why is there a {fee} on my statement",
        "the payment for my {plan} went through but it still says unpaid",
        "my {plan} renewed at a higher price without any notice", "the discount code was ignored and I paid full price",
        "I was billed again after I cancelled my {plan}", "the amount taken from my card does not match the receipt",
        "please send a corrected invoice with our VAT number", "I do not recognise this charge of {amount}",
        "I was charged twice {month}", "you charged me twice for the {product}",
    ],
    "shipping": [
        "my {product} has not arrived after {days} days", "the tracking page has not changed since {weekday}",
        "the courier left the parcel at the wrong address", "delivery was promised for {weekday} and nothing came",
        "the box with my {product} arrived crushed", "can I change the delivery address for order {n}",
        "the package has been stuck at customs for {days} days", "only half of my order was in the parcel",
        "the driver marked it as delivered but I never got it", "the {product} was sent to my old address",
    ],
    "technical_issue": [
        "the app crashes every time I open {screen}", "the app crashes every time I open it",
        "I get error {code} when I try to {action}",
        "the website keeps loading forever on {browser}", "since the update {screen} is completely blank",
        "the button to {action} does nothing", "the page freezes when I {action}", "uploads fail with a timeout",
        "notifications no longer arrive on my {device}", "the app logs me out every few minutes",
        "the {browser} version shows a broken layout",
    ],
    "account": [
        "I cannot reset my password because the link has expired", "please change the email address on my profile",
        "how do I delete my account and all my data", "my account got locked after too many login attempts",
        "I would like to change my username", "the two-factor code never arrives by text",
        "I think someone else signed in to my profile", "please merge my two accounts into one",
        "I need to add a second user to our company account", "my name is spelled wrong on my profile",
    ],
    "refund": [
        "I would like my money back for the {product}", "when will the refund for order {n} reach my card",
        "I sent the {product} back {days} days ago and have not been reimbursed",
        "please cancel the order and reimburse me", "I want to return the {product} for a full refund",
        "you promised to credit my card, where is the money", "please refund the {amount} you took",
        "I want a refund", "I want a refund for the {product}", "I would like a refund of {amount}",
        "can I get a refund for my {plan}",
    ],
    "urgent": [
        "this is urgent", "please help as soon as possible", "I need this sorted today",
        "my whole team is blocked right now", "we launch tomorrow morning and this has to work",
        "please respond immediately", "this is the third time I write and I need an answer now",
        "time-sensitive: our customers are waiting", "it is an emergency for our shop",
    ],
    "praise": [
        "your support team is amazing", "great service as always, keep it up", "I love the new design",
        "you folks did a fantastic job", "really happy with how fast you answered last time",
        "the product itself is excellent", "kudos to the agent who helped me yesterday",
    ],
    "feature_request": [
        "it would be great to have a dark mode", "please add an export to {format} option",
        "could you support {language} in the app", "I wish there was a {integration} integration",
        "please add a way to edit many items at once", "an offline mode would be really useful",
        "it would help if invoices could be downloaded as {format}", "any plans to let us pick a delivery time slot",
        "could you add a dark mode", "could you add an export to {format}",
    ],
}
SUBJECTIVE = ("praise", "urgent")  # labels annotators miss more often
# Sentences that use another label's words without carrying that label.
DISTRACTORS = [
    "I paid by credit card as usual.", "The delivery last month was on time.", "I updated the app yesterday.",
    "I logged in to check before writing.", "My last refund was processed quickly.", "No rush on this.",
    "Not urgent at all, whenever you have time.", "The invoice itself is fine.", "My password works fine.",
    "Great, another email from me.", "I know shipping is busy this time of year.",
    "My account number is {n}.", "I am on the {plan}.", "I ordered the {product} in {month}.",
    "I got the refund for my last {product} without trouble.", "The {product} itself arrived fine.",
    "The billing side is all sorted.", "I am not asking for my money back.", "Payment is not the issue here.",
    "It is not about my password.", "I don't need a new feature, just an answer.", "The app works fine otherwise.",
    "Delivery is not the problem.", "Thanks for the quick reply last time, but this is different.",
]
OPENERS = ["Hi,", "Hello team,", "Hey,", "Good morning,", "Dear support,", "", "", "", "Hi there,", "To whom it may concern,"]
CLOSERS = ["Thanks.", "Regards, Sam", "Cheers", "", "", "", "Best, Alex", "Thank you in advance.", "Any update?",
           "Kind regards, Priya", "Sent from my phone"]
FILLERS = ["I have been a customer for years.", "I tried again this morning.", "My order number is {n}.",
           "This happened yesterday too.", "I am using the latest version.", "My colleague has the same question.",
           "I already contacted you last week."]
NO_LABEL = ["Just checking in about my earlier message.", "What are your opening hours?",
            "Is this the right address to write to?", "I have a general question about your company.",
            "Who should I talk to about a partnership?", "Ok, noted.", "Do you have a store in Lyon?",
            "Please ignore my previous email."]


def _fill(template: str, rng: random.Random) -> str:
    """A template with its {slots} filled from SLOTS ({n} = an order number)."""
    values = {name: rng.choice(options) for name, options in SLOTS.items() if "{" + name + "}" in template}
    if "{n}" in template:
        values["n"] = str(rng.randint(10000, 99999))
    return template.format(**values)


def _typos(text: str, rng: random.Random, rate: float) -> str:
    """Swap two neighbouring letters in a share of the words (people type fast)."""
    words = text.split(" ")
    for i, word in enumerate(words):
        if len(word) > 3 and word.isalpha() and rng.random() < rate:
            j = rng.randrange(1, len(word) - 2)
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2:]
    return " ".join(words)


def _choose_labels(rng: random.Random) -> list[str]:
    """Labels of one message: a main topic, maybe a second, with realistic co-occurrence."""
    if rng.random() < 0.05:
        return []
    topics, weights = list(TOPIC_WEIGHTS), list(TOPIC_WEIGHTS.values())
    chosen = {rng.choices(topics, weights)[0]}
    if rng.random() < 0.2:
        chosen.add(rng.choices(topics, weights)[0])
    if "refund" in chosen and rng.random() < 0.7:
        chosen.add("billing" if rng.random() < 0.6 else "shipping")
    if "technical_issue" in chosen and rng.random() < 0.3:
        chosen.add("urgent")
    elif rng.random() < 0.06:
        chosen.add("urgent")
    if "praise" not in chosen and rng.random() < 0.04:
        chosen.add("praise")
    return [label for label in LABELS if label in chosen]


def _message(labels: list[str], rng: random.Random) -> str:
    body = [_fill(rng.choice(PHRASES[label]), rng) for label in labels] or [rng.choice(NO_LABEL)]
    rng.shuffle(body)
    sentences = []
    for sentence in body:
        ending = sentence[-1] if sentence[-1] in ".?!" else rng.choice([".", ".", ".", "!", "?"])
        sentences.append(sentence[0].upper() + sentence[1:].rstrip(".?!") + ending)
        if rng.random() < 0.35:
            sentences.append(_fill(rng.choice(FILLERS), rng))
    for _ in range(2):
        if rng.random() < 0.35:
            sentences.insert(rng.randrange(len(sentences) + 1), _fill(rng.choice(DISTRACTORS), rng))
    text = " ".join(part for part in [rng.choice(OPENERS), *sentences, rng.choice(CLOSERS)] if part)
    if rng.random() < 0.3:
        text = text.lower()
    if rng.random() < 0.3:
        text = _typos(text, rng, 0.08)
    return text


def generate_demo(n_rows: int = 2400, seed: int = 13, noise: float = 0.05) -> LabeledTexts:
    """`n_rows` support messages with their labels; same arguments, same data."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    if not 0.0 <= noise < 0.5:
        raise ValueError(f"noise must be in [0, 0.5), got {noise}")
    rng = random.Random(seed)
    texts, labels, seen = [], [], set()
    for _ in range(n_rows):
        true_labels = _choose_labels(rng)
        text = _message(true_labels, rng)
        for _ in range(20):  # no exact duplicates: loaders drop them
            if text not in seen:
                break
            text = _message(true_labels, rng)
        seen.add(text)
        texts.append(text)
        observed = set(true_labels)
        if rng.random() < noise:  # annotator noise: one label flipped
            observed ^= {rng.choice(LABELS)}
        for subjective in [l for l in SUBJECTIVE if l in observed]:  # annotators disagree on tone
            if rng.random() < noise * 2:
                observed.discard(subjective)
        labels.append([label for label in LABELS if label in observed])
    return LabeledTexts(texts, labels, list(LABELS))


def write_demo(path: str | Path, n_rows: int = 2400, seed: int = 13) -> Path:
    """Write the demo as JSON Lines ({"text", "labels"}) at `path`, plus labels.txt beside it."""
    path = Path(path)
    data = generate_demo(n_rows, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for text, names in zip(data.texts, data.labels):
            fh.write(json.dumps({"text": text, "labels": names}, ensure_ascii=False) + "\n")
    (path.parent / "labels.txt").write_text("\n".join(data.label_names) + "\n", encoding="utf-8")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the demo dataset (JSON Lines + labels.txt).")
    parser.add_argument("path", type=Path, help="output .jsonl file")
    parser.add_argument("--rows", type=int, default=2400)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be >= 1")
    print(f"wrote {write_demo(args.path, args.rows, args.seed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
