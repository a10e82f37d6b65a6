"""Compose the e-commerce catalog data/seeds/products.json from parts (run once, output committed).

Every product is a brand x model line x colour variant of one of ten categories, with a price,
a rating and category-specific attributes. Seeded: the same run writes the same bytes.

    python scripts/build_products.py data/seeds/products.json
"""
import json
import random
import sys

# category -> (noun used in titles, model lines, attribute name -> choices, price range)
CATEGORIES = {
    "headphones": ("Headphones", ["Studio", "Air", "Bass", "Quiet", "Travel"],
                   {"connectivity": ["bluetooth", "wired"], "battery_hours": [20, 30, 40, 60],
                    "noise_cancelling": ["yes", "no"]}, (25, 320)),
    "running shoes": ("Running Shoes", ["Trail", "Road", "Tempo", "Cloud", "Sprint"],
                      {"size": [7, 8, 9, 10, 11, 12], "material": ["mesh", "knit"],
                       "terrain": ["road", "trail"]}, (45, 190)),
    "backpack": ("Backpack", ["Commuter", "Summit", "Daypack", "Roll-Top", "Campus"],
                 {"capacity_litres": [15, 20, 25, 30, 40], "material": ["nylon", "canvas", "polyester"],
                  "waterproof": ["yes", "no"]}, (30, 160)),
    "coffee maker": ("Coffee Maker", ["Drip", "Espresso", "Pour-Over", "Cold Brew", "Pod"],
                     {"cups": [1, 4, 8, 10, 12], "material": ["steel", "plastic", "glass"],
                      "programmable": ["yes", "no"]}, (25, 450)),
    "desk lamp": ("Desk Lamp", ["Arc", "Slim", "Clamp", "Orbit", "Task"],
                  {"brightness_lumens": [400, 600, 800, 1000], "dimmable": ["yes", "no"],
                   "material": ["aluminium", "plastic", "wood"]}, (18, 140)),
    "water bottle": ("Water Bottle", ["Insulated", "Sport", "Hike", "Everyday", "Glass"],
                     {"capacity_ml": [500, 750, 1000], "material": ["steel", "glass", "plastic"],
                      "insulated": ["yes", "no"]}, (9, 55)),
    "smartwatch": ("Smartwatch", ["Pulse", "Active", "Classic", "Sport", "Lite"],
                   {"battery_days": [2, 5, 7, 14], "gps": ["yes", "no"], "strap": ["silicone", "leather", "metal"]},
                   (60, 420)),
    "rain jacket": ("Rain Jacket", ["Storm", "Packable", "Urban", "Alpine", "Breeze"],
                    {"size": ["S", "M", "L", "XL"], "material": ["nylon", "polyester"], "hood": ["yes", "no"]},
                    (40, 260)),
    "blender": ("Blender", ["Power", "Personal", "Pro", "Compact", "Smoothie"],
                {"watts": [300, 600, 900, 1200], "jar_litres": [0.6, 1.0, 1.5, 2.0], "material": ["glass", "plastic"]},
                (20, 300)),
    "keyboard": ("Keyboard", ["Mechanical", "Low-Profile", "Ergo", "Travel", "Gaming"],
                 {"switches": ["linear", "tactile", "clicky", "membrane"], "connectivity": ["bluetooth", "wired"],
                  "backlight": ["yes", "no"]}, (25, 220)),
}
BRANDS = ["Northpeak", "Lumo", "Vantor", "Kestrel", "Olio", "Brightwell", "Tamsin", "Corvo"]
COLOURS = ["black", "white", "grey", "blue", "red", "green", "silver", "navy"]


def compose(seed: int = 7, per_category: int = 32) -> list[dict]:
    rng = random.Random(seed)
    products = []
    for cat, (noun, lines, attrs, (lo, hi)) in CATEGORIES.items():
        seen = set()
        while len([p for p in products if p["category"] == cat]) < per_category:
            brand, line, colour = rng.choice(BRANDS), rng.choice(lines), rng.choice(COLOURS)
            if (brand, line, colour) in seen:
                continue
            seen.add((brand, line, colour))
            attributes = {"brand": brand, "color": colour}
            attributes.update({name: rng.choice(choices) for name, choices in attrs.items()})
            price = round(rng.uniform(lo, hi)) - 0.01
            products.append({
                "id": f"p{len(products) + 1:03d}",
                "title": f"{brand} {line} {noun}",
                "category": cat,
                "price": price,
                "rating": round(rng.uniform(3.2, 5.0), 1),
                "attributes": attributes,
            })
    return products


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "data/seeds/products.json"
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(compose(), fh, indent=1, ensure_ascii=False)
        fh.write("\n")
