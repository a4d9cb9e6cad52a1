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
# "short_name synset [note]" accepts or fixes a row (checked=hand; the note, e.g. the WordNet hypernym used
# where WordNet lacks the concept, goes to the `note` column after "checked by hand"); lines starting
# with # are comments. A short_name in DROP is left out (its comment says why). Doubtful rows in
# neither are left out as well (not reviewed).
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
rugby_football rugby_ball.n.01 football.n.02 is the American football (fixed on a spot check)
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
couch_and_lamp sofa.n.01 the couch fills the picture (fixed on a spot check)
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
# the doubtful drafts (none under the roots, a later sense, the head noun only), each one by hand
foggy bridge.n.01 a bridge in fog
closed_umbrella umbrella.n.01
night_with_stars skyscraper.n.01 tall city buildings at night
sunrise sunrise.n.02
city_sunset skyscraper.n.01 tall city buildings at dusk
city_sunrise skyscraper.n.01 tall city buildings against the setting sun
new_moon moon.n.01
waxing_crescent_moon moon.n.01
first_quarter_moon moon.n.01
full_moon moon.n.01
waning_gibbous_moon moon.n.01
last_quarter_moon moon.n.01
waning_crescent_moon moon.n.01
crescent_moon moon.n.01
new_moon_with_face moon.n.01
first_quarter_moon_with_face moon.n.01
last_quarter_moon_with_face moon.n.01
full_moon_with_face moon.n.01
sun_with_face sun.n.01
mostly_sunny sun.n.01 the sun; a small cloud in front
barely_sunny cloud.n.02 a large cloud; the sun behind
partly_sunny_rain nimbus.n.01 a rain cloud; the sun behind
snow_cloud cloud.n.02 a cloud with falling snow; WordNet has no snow cloud
fog fog.n.02
corn corn.n.03
ear_of_rice rice.n.02
brown_mushroom mushroom.n.05
rice_ball dish.n.02 onigiri; WordNet has no rice ball
ramen soup.n.01 a bowl of noodle soup; WordNet has no ramen
sweet_potato sweet_potato.n.02
dango dumpling.n.01 rice-flour dumplings on a skewer
oden dish.n.02 skewered oden; WordNet has no oden
fried_shrimp tempura.n.01 battered fried shrimp
shaved_ice ice.n.05
honey_pot honey.n.01 a pot of honey
bento lunch.n.01 a boxed lunch; WordNet has no bento
fork_and_knife cutlery.n.02
knife_fork_plate place_setting.n.01
ribbon bow.n.08
gift package.n.02 a wrapped present; gift.n.01 and present.n.02 are not artifacts
jack_o_lantern jack-o'-lantern.n.02
christmas_tree christmas_tree.n.05
tada noisemaker.n.01 a party popper; WordNet has no party popper
confetti_ball decoration.n.01 a kusudama ball with confetti; WordNet has no confetti ball
bamboo decoration.n.01 kadomatsu pine decoration; WordNet has no kadomatsu
school_satchel schoolbag.n.01
mortar_board mortarboard.n.02
reminder_ribbon ribbon.n.04 an awareness ribbon
level_slider control.n.09 a fader; WordNet has no fader
control_knobs control.n.09 control knobs
film_frames film.n.03 a strip of film frames
carousel_horse carousel.n.02 a carousel horse
roller_coaster roller_coaster.n.02
clapper clapperboard.n.01
performing_arts mask.n.01 comedy and tragedy masks
video_game control.n.09 a game controller (WordNet lemma controller)
musical_keyboard keyboard_instrument.n.01 piano keys
running_shirt_with_sash tank_top.n.01 a sleeveless running shirt
tennis tennis_ball.n.01 both styles show the ball; Google's with a racquet
cricket_bat_and_ball cricket_bat.n.01
field_hockey_stick_and_ball hockey_stick.n.01
table_tennis_paddle_and_ball table-tennis_racquet.n.01
building_construction crane.n.04 a construction crane
cityscape skyscraper.n.01 tall city buildings
post_office building.n.01 a post office building; post_office.n.01 is the branch; not the building
european_post_office building.n.01 a post office building; post_office.n.01 is the branch; not the building
crown crown.n.04
womans_clothes blouse.n.01
barber pole.n.01 a barber's pole; barber's_pole.n.01 is not under the category's roots
bouquet flower.n.01 a bunch of flowers; bouquet.n.01 is not under plant.n.02
seat seat.n.03
minidisc optical_disk.n.01 WordNet has no MiniDisc
open_file_folder file_folder.n.01
page_with_curl document.n.02 a written page
page_facing_up document.n.02 a written page
straight_ruler rule.n.12
triangular_ruler triangle.n.04
bookmark_tabs document.n.02 written pages with index tabs
ledger daybook.n.02
notebook_with_decorative_cover notebook.n.01
scroll document.n.02 a written scroll; scroll.n.02 is not under artifact.n.01
e-mail envelope.n.01
envelope_with_arrow envelope.n.01
mailbox_closed mailbox.n.01
mailbox_with_mail mailbox.n.01
mailbox_with_no_mail mailbox.n.01
postal_horn post_horn.n.01
calling cellular_telephone.n.01
camera_with_flash camera.n.01
video_camera camcorder.n.01
mute loudspeaker.n.01
mag_right magnifier.n.01
no_bell bell.n.01
link link.n.02
frame_with_picture picture.n.01
card_index_dividers card_index.n.01
old_key key.n.01
japan map.n.01 a map of Japan
moyai statue.n.01 a moai
bullettrain_side bullet_train.n.01
bullettrain_front bullet_train.n.01
light_rail streetcar.n.01 a light-rail car; WordNet has no light rail
monorail train.n.01 a monorail train; monorail.n.01 is the railway
mountain_railway car.n.02 a mountain railway car
suspension_railway train.n.01 a suspended monorail train
mountain_cableway tramway.n.01
construction barrier.n.01 a construction barrier
shopping_trolley shopping_cart.n.01
hammer_and_wrench tool.n.01 two tools
oil_drum drum.n.04
railway_track track.n.03
airplane_arriving airplane.n.01
auto_rickshaw motor_vehicle.n.01 WordNet has no auto rickshaw (jinrikisha is man-pulled)
diving_mask mask.n.04 a diving mask with snorkel
drum_with_drumsticks drum.n.01
goal_net goal.n.03
curling_stone sports_equipment.n.01 WordNet has no curling stone
lacrosse crosse.n.01
flying_disc frisbee.n.01
shallow_pan_of_food paella.n.01
kiwifruit kiwi.n.03
takeout_box carton.n.02 a takeout carton
bowl_with_spoon bowl.n.01
cup_with_straw cup.n.01
moon_cake pastry.n.02 WordNet has no mooncake
cheese_wedge cheese.n.01
beverage_box carton.n.02 a drink carton
mate_drink mate.n.09
bubble_tea tea.n.01 WordNet has no bubble tea
yarn thread.n.01 a ball of yarn
receipt document.n.02 a printed receipt; receipt.n.02 is not under artifact.n.01
x-ray roentgenogram.n.01
yo-yo yo-yo.n.01
magic_wand wand.n.01
ringed_planet planet.n.01
diya_lamp oil_lamp.n.01
knot knot.n.02
placard signboard.n.01 a sign on a stick
hair_pick comb.n.01
wood lumber.n.01 a log of building wood; log.n.01 is not under the category's roots
pouring_liquid glass.n.02 a tipped glass pouring
ginger_root ginger.n.03
pea_pod pea.n.02
sunny sun.n.01
cloud cloud.n.02
umbrella_with_rain_drops umbrella.n.01
hotsprings hot_spring.n.01
hammer_and_pick tool.n.01 two tools
scales balance.n.12
zap lightning.n.01 a lightning bolt
snowman_without_snow snowman.n.01
partly_sunny cloud.n.02 a cloud; the sun behind
thunder_cloud_and_rain cumulonimbus.n.01 a thundercloud with rain
pick pick.n.07
helmet_with_white_cross helmet.n.02
broken_chain chain.n.03
umbrella_on_ground umbrella.n.01 a beach umbrella
golf pin.n.08 the flag in the hole
black_nib fountain_pen.n.01 a fountain-pen nib
# first-sense drafts (checked=auto) found wrong on a read-through
hammer hammer.n.02 the hand tool; hammer.n.01 is part of a gunlock
tv television_receiver.n.01 the set; television.n.01 is broadcasting
radio radio_receiver.n.01 the set; radio.n.01 is the medium
gem jewel.n.01 a cut gemstone; gem.n.01 is a work of art
bank bank.n.09 the bank building; bank.n.01 is a riverbank
lollipop lollipop.n.02 hard candy on a stick; ice_lolly.n.01 is frozen
tram streetcar.n.01 tramway.n.01 is an aerial cableway
station railway_station.n.01 a train at a platform
office office_building.n.01
peacock peacock.n.02 the bird; peacock.n.01 is a butterfly
abacus abacus.n.02 the calculator; abacus.n.01 is part of a column
hook hook.n.05 hook.n.01 is a door catch
hut hovel.n.01 a thatched dwelling; hut.n.01 is a military shelter
toilet toilet.n.02 the fixture; toilet.n.01 is the room
shield shield.n.02 a hand-held shield
fondue fondue.n.02 cheese fondue
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
        # doubtful drafts dropped on review
        "milky_way",  # the galaxy: a sky scene; milky_way.n.01 is not under the category's roots
        "rice_scene",  # moon-viewing scene; no single object
        "flower_playing_cards",  # playing_card.n.01 and card.n.01 are not under artifact.n.01 (as black_joker)
        "musical_note",  # a notation symbol; not an object
        "notes",  # a notation symbol; not an object
        "musical_score",  # sheet music: score.n.02 is not under artifact.n.01
        "desert",  # a landscape; desert.n.01 is not under the category's roots
        "desert_island",  # a landscape; island.n.01 is not under the category's roots
        "national_park",  # a landscape; no single object
        "rosette",  # a rosette ornament; rosette.n.03 (leaves) is wrong and the ornament is not a plant
        "label",  # a tag: label.n.04 and tag.n.01 are not under artifact.n.01
        "dragon",  # mythical; dragon.n.04 is a lizard
        "dragon_face",  # mythical; dragon.n.04 is a lizard
        "pig_nose",  # a body part; snout.n.01 is not under animal.n.01
        "feet",  # paw prints; not an animal
        "droplet",  # a drop of water: droplet.n.01 and raindrop.n.01 are not under the category's roots
        "credit_card",  # credit_card.n.01 is not under artifact.n.01
        "yen",  # a banknote: bill.n.03 is not under artifact.n.01 (as coin)
        "dollar",  # a banknote: bill.n.03 is not under artifact.n.01 (as coin)
        "euro",  # a banknote: bill.n.03 is not under artifact.n.01 (as coin)
        "pound",  # a banknote: bill.n.03 is not under artifact.n.01 (as coin)
        "money_with_wings",  # banknotes: bill.n.03 is not under artifact.n.01 (as coin)
        "chart",  # a chart: chart.n.01 is not under artifact.n.01
        "date",  # a desk calendar: calendar.n.03 is not under artifact.n.01
        "calendar",  # a tear-off calendar: calendar.n.03 is not under artifact.n.01
        "chart_with_upwards_trend",  # a chart: chart.n.01 is not under artifact.n.01
        "chart_with_downwards_trend",  # a chart: chart.n.01 is not under artifact.n.01
        "bar_chart",  # bar_chart.n.01 is not under artifact.n.01
        "prayer_beads",  # rosary.n.01 and beads.n.01 are not under artifact.n.01
        "spiral_calendar_pad",  # a calendar pad: calendar.n.03 and pad.n.01 are not under artifact.n.01
        "busstop",  # bus_stop.n.01 is a place; the sign is not under artifact.n.01
        "octagonal_sign",  # a stop sign: street_sign.n.01 is not under artifact.n.01
        "microbe",  # microbe.n.01 is not under animal.n.01
        "dna",  # a molecule; double_helix.n.01 is not under artifact.n.01
        "roll_of_paper",  # toilet_roll.n.01 is not under artifact.n.01
        "soap",  # a bar of soap: soap.n.01 is a substance; cake.n.01 (a block) would read as the food
        "sponge",  # sponge.n.01 is the animal skeleton material; not under artifact.n.01
        "nazar_amulet",  # amulet.n.01 is not under artifact.n.01
        "drop_of_blood",  # blood.n.01 is not under artifact.n.01
        "mirror_ball",  # a disco ball; WordNet has no name for it (ball.n.01 is a game ball)
        "identification_card",  # card.n.02 is not under artifact.n.01
        "hamsa",  # a hamsa amulet: amulet.n.01 is not under artifact.n.01
        "feather",  # feather.n.01 is not under animal.n.01
        "empty_nest",  # nest.n.01 is not under the category's roots
        "nest_with_eggs",  # nest.n.01 is not under the category's roots
        "wing",  # wing.n.01 is not under animal.n.01
        "bubbles",  # bubble.n.01 is not under artifact.n.01
        "spades",  # a card suit symbol; not an object
        "clubs",  # a card suit symbol; not an object
        "hearts",  # a card suit symbol; not an object
        "sparkles",  # not an object
        "snowflake",  # snowflake.n.01 is not under the category's roots
    ]
)
REVIEW: dict[str, tuple[str | None, str]] = {
    **{
        n: (s, "; ".join(["checked by hand", *why]))
        for n, s, *why in (line.split(maxsplit=2) for line in REVIEWED.strip().splitlines() if not line.startswith("#"))
    },
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
