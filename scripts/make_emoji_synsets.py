"""Write `data/emoji_synsets.csv`: concrete emoji -> WordNet noun synset (run after `make clipart`).

Draft: each emoji's names (short_name, its other short_names, its Unicode name; a trailing digit
and a `_face` suffix dropped, then the head noun) are looked up as WordNet nouns, and the first sense
under the roots its subcategory prefers (food for Food & Drink, animal for the animal-* ones, ...)
is taken, else the first under its category's `EXPECTED_ROOTS`. The hand review is the `REVIEW`
table below: a synset name fixes a row, None drops the emoji; those rows are `checked=hand`.
`--doubtful` prints the draft rows that need the review (none under the roots, a later sense, the
head noun only) and are not in REVIEW yet.

    python scripts/make_emoji_synsets.py [--root .cache/emoji] [--out data/emoji_synsets.csv] [--doubtful]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mll.data.clipart import EXPECTED_ROOTS, concrete_emoji, default_root, read_emoji_json
from mll.data.wordnet import get_wordnet, wnid

PREFER = {  # subcategory prefix -> roots tried first
    "animal": ("animal.n.01",),
    "plant": ("plant.n.02", "plant_part.n.01", "fungus.n.01"),
    "food": ("food.n.02", "food.n.01"),
    "drink": ("beverage.n.01", "food.n.01"),
    "dishware": ("artifact.n.01",),
}
FIELDS = ["unified", "short_name", "category", "subcategory", "synset", "synset_name", "checked", "note"]

# Hand review of the doubtful draft rows (and of first-sense rows found wrong on a read-through):
# "short_name synset" accepts or fixes a row (checked=hand);
# a short_name in DROP is left out. Doubtful rows in neither are left out as well (not reviewed).
REVIEWED = """
sunrise_over_mountains mountain.n.01
volcano volcano.n.02
hotdog hotdog.n.02
taco taco.n.02
chestnut chestnut.n.03
evergreen_tree tree.n.01
deciduous_tree tree.n.01
leafless_tree tree.n.01
hot_pepper hot_pepper.n.02
cherry_blossom flower.n.02
four_leaf_clover clover.n.01
maple_leaf leaf.n.01
fallen_leaf leaf.n.01
watermelon watermelon.n.02
tangerine tangerine.n.02
lime lime.n.06
banana banana.n.02
pineapple pineapple.n.02
green_apple apple.n.01
peach peach.n.03
cherries cherry.n.03
rice_cracker cracker.n.01
doughnut doughnut.n.02
cake cake.n.03
stew stew.n.02
sake sake.n.02
wine_glass wineglass.n.01
tropical_drink beverage.n.01
baby_bottle bottle.n.01
popcorn popcorn.n.02
studio_microphone microphone.n.01
game_die die.n.01
basketball basketball.n.02
football football.n.02
rugby_football football.n.02
volleyball volleyball.n.02
ice_hockey_stick_and_puck puck.n.02
snow_capped_mountain mountain.n.01
derelict_house_building building.n.01
classical_building building.n.01
love_hotel hotel.n.01
school schoolhouse.n.01
japanese_castle castle.n.02
european_castle castle.n.02
badminton_racquet_and_shuttlecock shuttlecock.n.01
tiger2 tiger.n.02
tiger tiger.n.02
leopard leopard.n.02
whale2 whale.n.02
whale whale.n.02
ram ram.n.05
chicken chicken.n.02
service_dog dog.n.01
octopus octopus.n.02
tropical_fish fish.n.01
blowfish puffer.n.02
turtle turtle.n.02
hatching_chick chick.n.01
baby_chick chick.n.01
hatched_chick chick.n.01
black_bird bird.n.01
dromedary_camel dromedary.n.01
womans_hat hat.n.01
bikini bikini.n.02
athletic_shoe gym_shoe.n.01
high_heel shoe.n.01
white_flower flower.n.01
wilted_flower flower.n.01
cd compact_disk.n.01
round_pushpin thumbtack.n.01
closed_book book.n.01
green_book book.n.01
blue_book book.n.01
orange_book book.n.01
satellite_antenna antenna.n.01
mega megaphone.n.01
outbox_tray tray.n.01
inbox_tray tray.n.01
package package.n.02
incoming_envelope envelope.n.01
red_envelope envelope.n.01
speaker loudspeaker.n.01
battery battery.n.02
low_battery battery.n.02
lock_with_ink_pen lock.n.01
closed_lock_with_key lock.n.01
unlock lock.n.01
bellhop_bell bell.n.01
wrench wrench.n.03
mantelpiece_clock clock.n.01
timer_clock clock.n.01
linked_paperclips paper_clip.n.01
printer printer.n.02
card_file_box box.n.01
rolled_up_newspaper newspaper.n.01
world_map map.n.01
tokyo_tower tower.n.01
oncoming_bus bus.n.01
oncoming_police_car cruiser.n.01
oncoming_taxi cab.n.03
oncoming_automobile car.n.01
rotating_light light.n.02
couch_and_lamp lamp.n.01
hindu_temple temple.n.01
motor_boat motorboat.n.01
small_airplane airplane.n.01
clinking_glasses glass.n.02
tumbler_glass glass.n.02
martial_arts_uniform uniform.n.01
cucumber cucumber.n.02
carrot carrot.n.03
baguette_bread french_bread.n.01
stuffed_flatbread flatbread.n.01
egg egg.n.02
glass_of_milk milk.n.01
peanuts peanut.n.01
broccoli broccoli.n.02
leafy_green greens.n.01
mango mango.n.02
hiking_boot boot.n.01
womans_flat_shoe shoe.n.01
ballet_shoes shoe.n.01
scorpion scorpion.n.03
shrimp shrimp.n.03
squid squid.n.02
raccoon raccoon.n.02
lobster lobster.n.02
badger badger.n.02
dodo dodo.n.02
sloth sloth.n.02
otter otter.n.02
skunk skunk.n.04
beaver beaver.n.07
seal seal.n.09
probing_cane cane.n.01
safety_vest vest.n.01
manual_wheelchair wheelchair.n.01
salt salt.n.02
garlic garlic.n.02
onion onion.n.03
billed_cap cap.n.01
lotion_bottle bottle.n.01
one-piece_swimsuit swimsuit.n.01
thong_sandal sandal.n.01
kite kite.n.03
nesting_dolls doll.n.01
military_helmet helmet.n.01
long_drum drum.n.01
carpentry_saw saw.n.02
plunger plunger.n.03
mouse_trap mousetrap.n.01
folding_hand_fan fan.n.01
potted_plant plant.n.02
coral coral.n.04
hyacinth hyacinth.n.02
donkey domestic_ass.n.01
blueberries blueberry.n.02
bell_pepper bell_pepper.n.02
olive olive.n.04
tamale tamale.n.02
chess_pawn pawn.n.03
crossed_swords sword.n.01
funeral_urn urn.n.01
baseball baseball.n.02
church church.n.02
shinto_shrine shrine.n.01
fuelpump gas_pump.n.01
ring ring.n.08
bulb light_bulb.n.01
bridge_at_night bridge.n.01
earth_africa globe.n.03
earth_americas globe.n.03
earth_asia globe.n.03
globe_with_meridians globe.n.03
meat_on_bone meat.n.01
fishing_pole_and_fish fishing_rod.n.01
8ball billiard_ball.n.01
bowling bowling_ball.n.01
camping tent.n.01
house_with_garden house.n.01
wedding church.n.02
sound loudspeaker.n.01
loud_sound loudspeaker.n.01
ballot_box_with_ballot ballot_box.n.01
metro subway_train.n.01
ring_buoy life_buoy.n.01
airplane_departure airplane.n.01
t-rex tyrannosaur.n.01
hourglass_flowing_sand hourglass.n.01
black_cat cat.n.01
dolphin dolphin.n.02
joystick joystick.n.01
headstone gravestone.n.01
gloves glove.n.02
jigsaw jigsaw_puzzle.n.01
jellyfish jellyfish.n.02
chains chain.n.03
scooter scooter.n.02
hedgehog hedgehog.n.02
mag magnifier.n.01
bike bicycle.n.01
"""
DROP = set(
    [
        "poultry_leg",
        "crystal_ball",
        "spiral_note_pad",
        "traffic_light",
        "vertical_traffic_light",
        "flying_saucer",
        "black_joker",
        "smoking",
        "beach_with_umbrella",
        "electric_plug",
        "mahjong",
        "rainbow",
        "tanabata_tree",
        "medal",
        "sports_medal",
        "first_place_medal",
        "second_place_medal",
        "third_place_medal",
        "sparkler",
        "memo",
        "art",
        "diamonds",
        "trophy",
        "fireworks",
        "firecracker",
        "ticket",
        "admission_tickets",
        "spider_web",
        "unicorn_face",
        "phoenix",
        "shell",
        "coin",
    ]
)
REVIEW: dict[str, tuple[str | None, str]] = {
    **{n: (s, "checked by hand") for n, s in (line.split() for line in REVIEWED.strip().splitlines())},
    **{n: (None, "dropped by hand") for n in DROP},
}


def under(synset, roots) -> bool:
    wn = get_wordnet()
    targets = {wn.synset(r) for r in roots}
    return any(targets & set(path) for path in synset.hypernym_paths())


def candidates(e: dict) -> list[tuple[str, str]]:
    """(lemma, how) in the order tried."""
    names = [e["short_name"], *e.get("short_names", [])[1:], (e.get("name") or "").lower()]
    out: list[tuple[str, str]] = []
    for n in names:
        n = re.sub(r"[\s\-]+", "_", n.strip()).strip("_")
        n = re.sub(r"_?\d+$", "", n)
        for cand in (n, re.sub(r"_face$", "", n)):
            if cand and (cand, "name") not in out:
                out.append((cand, "name"))
    for n in list(out):
        head = n[0].split("_")[-1]
        if (head, "name") not in out and (head, "head noun") not in out:
            out.append((head, "head noun"))
    return out


def draft(e: dict) -> tuple[object | None, str]:
    """(synset or None, how it was chosen)."""
    wn = get_wordnet()
    cat_roots = EXPECTED_ROOTS[e["category"]]
    prefer = next((v for k, v in PREFER.items() if e["subcategory"].startswith(k)), ())
    first_any = None
    for roots in (prefer, cat_roots):
        if not roots:
            continue
        for lemma, how in candidates(e):
            senses = wn.synsets(lemma, pos="n")
            if senses and first_any is None:
                first_any = (senses[0], f"{how} {lemma!r} sense 1, not under {'/'.join(cat_roots)}")
            for k, s in enumerate(senses, 1):
                if under(s, roots):
                    return s, f"{how} {lemma!r} sense {k}"
    return first_any or (None, "no WordNet noun")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=default_root())
    ap.add_argument("--out", type=Path, default=Path("data/emoji_synsets.csv"))
    ap.add_argument("--doubtful", action="store_true", help="print rows needing review instead of writing")
    args = ap.parse_args(argv)
    wn = get_wordnet()
    rows, dropped, doubtful = [], [], []
    for e in concrete_emoji(read_emoji_json(args.root, "google")):
        base = {k: e[k] for k in ("unified", "short_name", "category", "subcategory")}
        if e["short_name"] in REVIEW:
            name, note = REVIEW[e["short_name"]]
            if name is None:
                dropped.append(e["short_name"])
                continue
            s, checked = wn.synset(name), "hand"
        else:
            s, note = draft(e)
            checked = "auto"
            sure = s is not None and under(s, EXPECTED_ROOTS[e["category"]]) and note.endswith("sense 1")
            if not sure or not note.startswith("name"):
                doubtful.append((e, s, note))
                continue  # not reviewed: left out
        rows.append({**base, "synset": wnid(s), "synset_name": s.name(), "checked": checked, "note": note})
    if args.doubtful:
        for e, s, note in doubtful:
            defn = s.definition()[:60] if s else ""
            print(f"{e['short_name']:28s} {e['subcategory']:18s} {s.name() if s else '-':28s} {note} | {defn}")
        print(f"{len(doubtful)} doubtful of {len(rows)} rows", file=sys.stderr)
        return
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    hand = sum(r["checked"] == "hand" for r in rows)
    print(
        f"{args.out}: {len(rows)} rows ({hand} checked by hand), {len(dropped)} dropped by hand; "
        f"{len(doubtful)} unreviewed doubtful",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
