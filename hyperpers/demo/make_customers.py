"""Generate the demo customer file, hyperpers/demo/customers.jsonl.

Deterministic: the same seed and count always give the same file. Standard library only.
Subcategories are read from products.csv next to this script, so every customer's
preferred_subcategory names a subcategory that really has products.

The customers are invented. Each has a fake e-mail address at example.com; it is personal
data that must never reach the LLM, and is there to exercise that rule.

Usage:
    python hyperpers/demo/make_customers.py [--seed 2024] [--count 2000] [--out PATH]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
PRODUCTS_CSV = HERE / "products.csv"
DEFAULT_OUT = HERE / "customers.jsonl"
DEFAULT_SEED = 2024
DEFAULT_COUNT = 2000

LANGUAGES = {"en": 52, "de": 15, "fr": 12, "es": 9, "nl": 7, "it": 5}
# Where each language's readers live: a CDP exports BCP 47 tags with the region, so the
# demo counts "de 15% (de-DE 8%, de-CH 4%, de-AT 3%)" the way a real export would.
REGIONAL_TAGS = {
    "en": {"en-US": 60, "en-GB": 40},
    "de": {"de-DE": 55, "de-CH": 25, "de-AT": 20},
    "fr": {"fr-FR": 75, "fr-CA": 25},
    "es": {"es-ES": 70, "es-MX": 30},
    "nl": {"nl-NL": 80, "nl-BE": 20},
    "it": {"it-IT": 100},
}
VALUE_TIERS = {"low": 50, "medium": 35, "high": 15}
AGE_BANDS = {"18-24": 16, "25-34": 29, "35-44": 25, "45-54": 18, "55+": 12}

# Discount sensitivity given the value tier: big spenders care less about discounts.
DISCOUNT_BY_TIER = {
    "low": {"low": 15, "medium": 35, "high": 50},
    "medium": {"low": 30, "medium": 45, "high": 25},
    "high": {"low": 60, "medium": 30, "high": 10},
}
# Older customers lean a little towards higher value tiers.
TIER_SHIFT_BY_AGE = {"18-24": 0.6, "25-34": 0.9, "35-44": 1.1, "45-54": 1.3, "55+": 1.3}

# Fictional regions and towns; the city always belongs to the customer's region.
REGIONS = {
    "north": (20, ["Frostmere", "Highfold", "Pinecrest"]),
    "south": (22, ["Sunhaven", "Coralton", "Marlow Bay"]),
    "east": (18, ["Dawnport", "Eastmarch", "Ashvale"]),
    "west": (17, ["Westbrook", "Copperfield", "Tidewell"]),
    "central": (23, ["Midvale", "Centerhurst", "Kingsford"]),
}

# Relative popularity of subcategories; a subcategory not listed here gets weight 3.
SUBCATEGORY_POPULARITY = {
    "Running Shoes": 14,
    "Running Apparel": 10,
    "Running Accessories": 5,
    "Training Shoes": 8,
    "Training Apparel": 11,
    "Training Equipment": 6,
    "Hiking Footwear": 7,
    "Outdoor Apparel": 8,
    "Cycling Gear": 5,
    "Swimwear": 6,
    "Swim Goggles": 3,
    "Swim Training Gear": 2,
}
DEFAULT_POPULARITY = 3

# Subcategories that a given age band picks a little more often (multiplier).
AGE_TILT = {
    "18-24": {"Training Apparel": 1.5, "Training Shoes": 1.3, "Hiking Footwear": 0.7},
    "55+": {"Hiking Footwear": 1.6, "Outdoor Apparel": 1.5, "Swimwear": 1.3, "Training Shoes": 0.6},
}

FIRST_NAMES = [
    "alex", "sam", "jordan", "robin", "kim", "lena", "marco", "sofia", "jan", "eva",
    "lucas", "mila", "noah", "emma", "hugo", "ines", "tom", "nora", "pablo", "anouk",
]  # fmt: skip
LAST_NAMES = [
    "smith", "meyer", "dubois", "garcia", "jansen", "rossi", "brown", "weber", "martin",
    "lopez", "devries", "bianchi", "taylor", "schulz", "moreau", "fernandez", "bakker",
]  # fmt: skip


def read_subcategories(path: Path = PRODUCTS_CSV) -> list[str]:
    """Return the subcategories in products.csv, in order of first appearance."""
    with path.open(newline="", encoding="utf-8") as fh:
        names = [row["subcategory"].strip() for row in csv.DictReader(fh)]
    subcategories = list(dict.fromkeys(n for n in names if n))
    if not subcategories:
        raise SystemExit(f"No subcategories found in {path}")
    return subcategories


def pick(rng: random.Random, weights: Mapping[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()), k=1)[0]


def make_customer(
    rng: random.Random, number: int, subcategories: list[str], regions: random.Random
) -> dict:
    """One customer; ``regions`` draws the language's region on its own stream, so adding
    regional tags left every other field of the file as it was."""
    age_band = pick(rng, AGE_BANDS)
    shift = TIER_SHIFT_BY_AGE[age_band]
    tiers = {"low": VALUE_TIERS["low"] / shift, "medium": 35, "high": VALUE_TIERS["high"] * shift}
    value_tier = pick(rng, tiers)
    tilt = AGE_TILT.get(age_band, {})
    popularity = {
        s: SUBCATEGORY_POPULARITY.get(s, DEFAULT_POPULARITY) * tilt.get(s, 1.0)
        for s in subcategories
    }
    region = pick(rng, {name: weight for name, (weight, _) in REGIONS.items()})
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        "external_id": f"C{number:06d}",
        "language": pick(regions, REGIONAL_TAGS[pick(rng, LANGUAGES)]),
        "value_tier": value_tier,
        "preferred_subcategory": pick(rng, popularity),
        "discount_sensitivity": pick(rng, DISCOUNT_BY_TIER[value_tier]),
        "region": region,
        "city": rng.choice(REGIONS[region][1]),
        "age_band": age_band,
        "email": f"{first}.{last}.{number}@example.com",
    }


def write_customers(out: Path, *, seed: int, count: int) -> int:
    rng, regions = random.Random(seed), random.Random(f"{seed}-regions")
    subcategories = read_subcategories()
    with out.open("w", encoding="utf-8", newline="\n") as fh:
        for number in range(1, count + 1):
            customer = make_customer(rng, number, subcategories, regions)
            fh.write(json.dumps(customer, ensure_ascii=False) + "\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    written = write_customers(args.out, seed=args.seed, count=args.count)
    print(f"Wrote {written} customers to {args.out}")


if __name__ == "__main__":
    main()
