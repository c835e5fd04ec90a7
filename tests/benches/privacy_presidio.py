"""Corpus and Presidio side of the Privacy Filter benchmark (tests/benches/privacy.rs).

  python privacy_presidio.py gen N OUT.jsonl   -- a deterministic mixed corpus with planted PII
  python privacy_presidio.py run IN.jsonl      -- Presidio's pattern recognizers over it (no NLP
                                                  model), one JSON line: timing and findings

Half the documents are structured events (JSON text), half free text. Every planted value is
recorded with its entity type and character span, so both engines' recall is computed the same
way by the bench.
"""

import json
import random
import sys
import time

ENTITIES = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "URL"]


def luhn_complete(prefix):
    digits = [int(c) for c in prefix]
    for check in range(10):
        total = 0
        for i, d in enumerate(reversed(digits + [check])):
            if i % 2 == 1:
                d *= 2
                if d > 9:
                    d -= 9
            total += d
        if total % 10 == 0:
            return prefix + str(check)
    raise AssertionError


def iban(rng):
    bank = "".join(rng.choice("0123456789") for _ in range(18))
    rearranged = bank + "1314" + "00"  # DE + 00
    check = 98 - int(rearranged) % 97
    return f"DE{check:02d}{bank}"


def value(rng, entity):
    if entity == "EMAIL_ADDRESS":
        return f"{rng.choice(['jane', 'li.wei', 'o.brien', 'm_rossi'])}{rng.randint(1, 999)}@{rng.choice(['example.org', 'mail.example.com'])}"
    if entity == "PHONE_NUMBER":
        return rng.choice(["+1 415-555-{:04d}", "(212) 555-{:04d}", "+44 20 7946 {:04d}"]).format(rng.randint(100, 9999))
    if entity == "CREDIT_CARD":
        card = luhn_complete("4" + "".join(rng.choice("0123456789") for _ in range(14)))
        return " ".join(card[i:i + 4] for i in range(0, 16, 4))
    if entity == "IBAN_CODE":
        return iban(rng)
    if entity == "US_SSN":
        return f"{rng.randint(101, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    if entity == "IP_ADDRESS":
        return f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if entity == "URL":
        return f"https://{rng.choice(['shop', 'portal', 'api'])}.example.com/{rng.choice(['orders', 'u', 'track'])}/{rng.randint(1, 99999)}"
    raise AssertionError(entity)


CONTEXT = {
    "EMAIL_ADDRESS": "email", "PHONE_NUMBER": "phone", "CREDIT_CARD": "card", "IBAN_CODE": "iban",
    "US_SSN": "ssn", "IP_ADDRESS": "ip", "URL": "url",
}
FILLER = ["the device reported a reading", "battery at 81 percent", "firmware 4.2.1 installed",
          "temperature 21.5 C", "door sensor closed", "signal strength -67 dBm", "route 12 delayed"]


def free_text(rng):
    parts, labels, text = [], [], ""
    for _ in range(rng.randint(2, 4)):
        text += rng.choice(FILLER) + ", "
        entity = rng.choice(ENTITIES)
        v = value(rng, entity)
        text += f"{CONTEXT[entity]} {rng.choice(['is', ':'])} "
        labels.append({"entity_type": entity, "start": len(text), "end": len(text) + len(v)})
        text += v + ". "
    text += rng.choice(FILLER) + "."
    return text, labels


def structured(rng):
    fields = {"device_id": f"dev-{rng.randint(1, 99999)}", "ts": 1790000000 + rng.randint(0, 10 ** 6),
              "reading": {"temp": round(rng.uniform(-10, 40), 2), "humidity": rng.randint(10, 90)}}
    chosen = rng.sample(ENTITIES, rng.randint(2, 4))
    for entity in chosen:
        fields[CONTEXT[entity]] = value(rng, entity)
    text = json.dumps(fields)
    labels = []
    for entity in chosen:
        v = fields[CONTEXT[entity]]
        start = text.index(json.dumps(v)) + 1
        labels.append({"entity_type": entity, "start": start, "end": start + len(v)})
    return text, labels


def gen(n, out):
    rng = random.Random(20261129)
    with open(out, "w") as f:
        for i in range(n):
            text, labels = structured(rng) if i % 2 == 0 else free_text(rng)
            f.write(json.dumps({"text": text, "labels": labels}) + "\n")


def run(path):
    import logging
    logging.disable(logging.CRITICAL)  # tldextract warns it cannot fetch the suffix list offline
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer, EmailRecognizer, IbanRecognizer, IpRecognizer, PhoneRecognizer,
        UrlRecognizer, UsSsnRecognizer)
    recognizers = [EmailRecognizer(), PhoneRecognizer(), CreditCardRecognizer(), IbanRecognizer(),
                   UsSsnRecognizer(), IpRecognizer(), UrlRecognizer()]
    docs = [json.loads(line) for line in open(path)]
    texts = [d["text"] for d in docs]
    # Warm up (regex compilation, phonenumbers metadata).
    for r in recognizers:
        r.analyze(texts[0], r.supported_entities, None)
    started = time.perf_counter()
    findings = []
    for text in texts:
        found = []
        for r in recognizers:
            for res in r.analyze(text, r.supported_entities, None) or []:
                found.append({"entity_type": res.entity_type, "start": res.start, "end": res.end, "score": res.score})
        findings.append(found)
    elapsed = time.perf_counter() - started
    size = sum(len(t.encode()) for t in texts)
    print(json.dumps({"docs": len(texts), "bytes": size, "seconds": elapsed, "findings": findings}))


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    else:
        run(sys.argv[2])
