"""A generated, realistic-looking corpus for benchmarks: court opinions, contract clauses and news
items of mixed lengths (a few long enough to need several chunks), deterministic for a seed.

    python bench/corpus.py --docs 200 --out bench/out/corpus.jsonl
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from pathlib import Path

import orjson

FIRST = [
    "Maria",
    "James",
    "Aiko",
    "José",
    "Fatima",
    "Liam",
    "Chen",
    "Olga",
    "Kwame",
    "Sofia",
    "Élodie",
    "Raj",
]
LAST = ["Ortega", "Walsh", "Kim", "Müller", "Okafor", "Lindqvist", "Haddad", "Novak", "Tanaka", "Brennan"]
COMPANIES = [
    "Halvorsen Polymer Works, Inc.",
    "Brightwell Medical Devices LLC",
    "Cascade Ridge Logistics, Inc.",
    "Meridian Orchard Holdings, LLC",
    "Grainline Foods Corp.",
    "Northgate Capital Partners LP",
    "Société Générale de Réassurance",
    "Bluefin Maritime S.A.",
    "Keystone Data Systems Ltd.",
]
COURTS = [
    "United States Court of Appeals for the Ninth Circuit",
    "Superior Court of California, County of Alameda",
    "United States District Court for the Southern District of Ohio",
    "Delaware Court of Chancery",
]
CITIES = [
    "Akron, Ohio",
    "Eden Prairie, Minnesota",
    "San Francisco, California",
    "Wilmington, Delaware",
    "Columbus, Ohio",
    "Lyon, France",
    "Osaka, Japan",
]
STATUTES = [
    "42 U.S.C. § 1983",
    "28 U.S.C. § 1291",
    "Cal. Civ. Code § 1542",
    "15 U.S.C. § 78j(b)",
    "Del. Code Ann. tit. 8, § 220",
]
MONTHS = ["January", "March", "April", "June", "September", "November"]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _date(rng: random.Random) -> str:
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {rng.randint(2015, 2026)}"


def _money(rng: random.Random) -> str:
    return f"${rng.randint(10, 9000) * 1000:,}"


def _citation(rng: random.Random) -> str:
    return (
        f"{rng.choice(LAST)} v. {rng.choice(COMPANIES).split(',')[0]}, {rng.randint(100, 999)} F.3d "
        f"{rng.randint(1, 1500)}, {rng.randint(1, 1500)} (9th Cir. {rng.randint(1995, 2024)})"
    )


def _paragraph(rng: random.Random, kind: str) -> str:
    a, b = rng.sample(COMPANIES, 2)
    if kind == "opinion":
        return (
            f"On {_date(rng)}, {a} filed suit against {b} in the {rng.choice(COURTS)}, alleging breach of "
            f"contract and a violation of {rng.choice(STATUTES)}. Judge {_person(rng)} granted partial "
            f"summary judgment and awarded {_money(rng)} in damages. "
            f"We review de novo. See {_citation(rng)}. "
            f"The parties dispute whether the release under {rng.choice(STATUTES)} bars the claim; "
            f"as we explained in {_citation(rng)}, a general release does not extend to unknown claims."
        )
    if kind == "contract":
        return (
            f"This Supply Agreement is entered into as of {_date(rng)} by and between {a}, with offices in "
            f'{rng.choice(CITIES)} (the "Supplier"), and {b} (the "Buyer"). The Buyer shall pay '
            f"{_money(rng)} upon signature and {_money(rng)} per month thereafter. Signed by {_person(rng)}, "
            f"Chief Executive Officer, and {_person(rng)}, General Counsel."
        )
    return (
        f"{rng.choice(CITIES).split(',')[0]} — {a} agreed on {_date(rng)} to pay {_money(rng)} to settle "
        f"claims brought by {b}, according to filings in the {rng.choice(COURTS)}. "
        f"Spokesperson {_person(rng)} said "
        f"the company denies wrongdoing."
    )


def documents(count: int, *, seed: int = 1234, long_every: int = 10, long_paragraphs: int = 40) -> Iterator[dict]:
    """``count`` documents; every ``long_every``-th is ``long_paragraphs`` paragraphs long."""
    rng = random.Random(seed)
    for i in range(count):
        kind = rng.choice(["opinion", "contract", "news"])
        paragraphs = long_paragraphs if long_every and i % long_every == long_every - 1 else rng.randint(1, 5)
        text = "\n\n".join(_paragraph(rng, kind) for _ in range(paragraphs))
        yield {"id": f"doc-{i:05d}", "text": text, "kind": kind}


def write_corpus(path: Path, count: int, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for doc in documents(count, **kwargs):  # type: ignore[arg-type]
            out.write(orjson.dumps(doc) + b"\n")
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/out/corpus.jsonl"))
    args = parser.parse_args()
    print(write_corpus(args.out, args.docs))
