import csv
from mll.data.wordnet import get_wordnet, wnid
wn = get_wordnet()
T = {
 "fashion_mnist": [("T-shirt/top","jersey.n.03"),("Trouser","trouser.n.01"),("Pullover","pullover.n.01"),("Dress","dress.n.01"),("Coat","coat.n.01"),("Sandal","sandal.n.01"),("Shirt","shirt.n.01"),("Sneaker","gym_shoe.n.01"),("Bag","bag.n.04"),("Ankle boot","boot.n.01")],
 "mnist": [(str(i), s) for i, s in enumerate("zero.n.02 one.n.01 two.n.01 three.n.01 four.n.01 five.n.01 six.n.01 seven.n.01 eight.n.01 nine.n.01".split())],
 "cifar10": [("airplane","airplane.n.01"),("automobile","car.n.01"),("bird","bird.n.01"),("cat","cat.n.01"),("deer","deer.n.01"),("dog","dog.n.01"),("frog","frog.n.01"),("horse","horse.n.01"),("ship","ship.n.01"),("truck","truck.n.01")],
 "stl10": [("airplane","airplane.n.01"),("bird","bird.n.01"),("car","car.n.01"),("cat","cat.n.01"),("deer","deer.n.01"),("dog","dog.n.01"),("horse","horse.n.01"),("monkey","monkey.n.01"),("ship","ship.n.01"),("truck","truck.n.01")],
 "cifar100": [(n, s) for n, s in [
  ("apple","apple.n.01"),("aquarium_fish","fish.n.01"),("baby","baby.n.01"),("bear","bear.n.01"),("beaver","beaver.n.07"),
  ("bed","bed.n.01"),("bee","bee.n.01"),("beetle","beetle.n.01"),("bicycle","bicycle.n.01"),("bottle","bottle.n.01"),
  ("bowl","bowl.n.03"),("boy","male_child.n.01"),("bridge","bridge.n.01"),("bus","bus.n.01"),("butterfly","butterfly.n.01"),
  ("camel","camel.n.01"),("can","can.n.01"),("castle","castle.n.02"),("caterpillar","caterpillar.n.01"),("cattle","cattle.n.01"),
  ("chair","chair.n.01"),("chimpanzee","chimpanzee.n.01"),("clock","clock.n.01"),("cloud","cloud.n.02"),("cockroach","cockroach.n.01"),
  ("couch","sofa.n.01"),("crab","crab.n.01"),("crocodile","crocodile.n.01"),("cup","cup.n.01"),("dinosaur","dinosaur.n.01"),
  ("dolphin","dolphin.n.02"),("elephant","elephant.n.01"),("flatfish","flatfish.n.02"),("forest","forest.n.01"),("fox","fox.n.01"),
  ("girl","female_child.n.01"),("hamster","hamster.n.01"),("house","house.n.01"),("kangaroo","kangaroo.n.01"),("keyboard","computer_keyboard.n.01"),
  ("lamp","lamp.n.02"),("lawn_mower","lawn_mower.n.01"),("leopard","leopard.n.02"),("lion","lion.n.01"),("lizard","lizard.n.01"),
  ("lobster","lobster.n.02"),("man","man.n.01"),("maple_tree","maple.n.02"),("motorcycle","motorcycle.n.01"),("mountain","mountain.n.01"),
  ("mouse","mouse.n.01"),("mushroom","mushroom.n.03"),("oak_tree","oak.n.02"),("orange","orange.n.01"),("orchid","orchid.n.01"),
  ("otter","otter.n.02"),("palm_tree","palm.n.03"),("pear","pear.n.01"),("pickup_truck","pickup.n.01"),("pine_tree","pine.n.01"),
  ("plain","plain.n.01"),("plate","plate.n.04"),("poppy","poppy.n.01"),("porcupine","porcupine.n.01"),("possum","opossum.n.02"),
  ("rabbit","rabbit.n.01"),("raccoon","raccoon.n.02"),("ray","ray.n.07"),("road","road.n.01"),("rocket","rocket.n.01"),
  ("rose","rose.n.01"),("sea","sea.n.01"),("seal","seal.n.09"),("shark","shark.n.01"),("shrew","shrew.n.02"),
  ("skunk","skunk.n.04"),("skyscraper","skyscraper.n.01"),("snail","snail.n.01"),("snake","snake.n.01"),("spider","spider.n.01"),
  ("squirrel","squirrel.n.01"),("streetcar","streetcar.n.01"),("sunflower","sunflower.n.01"),("sweet_pepper","sweet_pepper.n.02"),("table","table.n.02"),
  ("tank","tank.n.01"),("telephone","telephone.n.01"),("television","television_receiver.n.01"),("tiger","tiger.n.02"),("tractor","tractor.n.01"),
  ("train","train.n.01"),("trout","trout.n.02"),("tulip","tulip.n.01"),("turtle","turtle.n.02"),("wardrobe","wardrobe.n.01"),
  ("whale","whale.n.02"),("willow_tree","willow.n.01"),("wolf","wolf.n.01"),("woman","woman.n.01"),("worm","worm.n.01")]],
}
T["digits"] = T["mnist"]
rows = []
for ds, classes in T.items():
    for i, (name, sname) in enumerate(classes):
        s = wn.synset(sname)
        rows.append({"dataset": ds, "class_index": i, "class_name": name, "synset": wnid(s), "synset_name": s.name()})
        if ds == "cifar100": print(f"{name:14s} {sname:24s} {s.definition()[:70]}")
order = ["fashion_mnist","mnist","digits","cifar10","cifar100","stl10"]
rows.sort(key=lambda r: (order.index(r["dataset"]), r["class_index"]))
with open("data/class_synsets.csv","w",newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
print(len(rows))
