"""The CHCO integer program: per class, options (tuples of models) with estimated accuracies, and
the cost of the cost units the chosen models need. Its solvers: `mll.solve.solvers` (exact) and
`mll.solve.heuristic` (scalable).

A model needs one or more units (a standalone model: itself; a head on a shared backbone: the
backbone's forward pass, shared with every other head on it, and its own head), and each unit paid
for is charged once however many chosen models need it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Problem:
    """Per class k, options o (tuples of model names) with their estimated accuracy acc[k][o].

    `units` maps a model to the cost units it needs and `unit_costs` a unit to its cost; a model
    missing from `units` is one unit named after itself, and a unit missing from `unit_costs` costs
    `cost`. So `Problem(options, acc, cost)` charges `cost` per distinct model, as before units."""

    options: list[list[tuple[str, ...]]]
    acc: list[list[float]]
    cost: float
    units: dict[str, tuple[str, ...]] | None = None
    unit_costs: dict[str, float] | None = None

    def model_units(self, model: str) -> tuple[str, ...]:
        return self.units.get(model, (model,)) if self.units else (model,)

    def unit_cost(self, unit: str) -> float:
        return self.unit_costs.get(unit, self.cost) if self.unit_costs else self.cost

    def units_of(self, models: Iterable[str]) -> set[str]:
        """The union of the models' cost units."""
        return {u for m in models for u in self.model_units(m)}

    def price(self, units: Iterable[str]) -> float:
        """The cost of a set of distinct units: per distinct unit cost c, c x the number of units
        costing c (cheapest first), so that n units of cost λ cost exactly λ · n."""
        counts: dict[float, int] = {}
        for u in units:
            c = self.unit_cost(u)
            counts[c] = counts.get(c, 0) + 1
        return sum(c * n for c, n in sorted(counts.items()))

    def models_cost(self, models: Iterable[str]) -> float:
        """What running these models costs: the cost of the union of their units."""
        return self.price(self.units_of(models))

    def objective(self, choice: list[int]) -> float:
        k = len(self.options)
        used: set[str] = set()
        total = 0.0
        for c, o in enumerate(choice):
            if o < 0:
                continue
            total += self.acc[c][o]
            used.update(self.options[c][o])
        return total / max(k, 1) - self.models_cost(used)

    def scaled(self, factor: float) -> Problem:
        """The same problem with every unit's cost multiplied by `factor`."""
        costs = None if self.unit_costs is None else {u: c * factor for u, c in self.unit_costs.items()}
        return Problem(self.options, self.acc, self.cost * factor, self.units, costs)


class Encoded:
    """A problem with models and cost units as integers: per class, its options' accuracies (/K),
    member lists and unit lists; per model, its units; per unit, its cost."""

    def __init__(self, p: Problem):
        self.models = sorted({m for opts in p.options for o in opts for m in o})
        mi = {m: i for i, m in enumerate(self.models)}
        self.units = sorted(p.units_of(self.models))
        ui = {u: j for j, u in enumerate(self.units)}
        self.unit_cost = [p.unit_cost(u) for u in self.units]
        self.model_units = [tuple(ui[u] for u in p.model_units(m)) for m in self.models]
        k = max(len(p.options), 1)
        self.acc = [[a / k for a in accs] for accs in p.acc]
        self.members = [[tuple(mi[m] for m in o) for o in opts] for opts in p.options]
        # an option's units: those of its models, each once, in the order the models name them
        self.opt_units = [
            [tuple(dict.fromkeys(j for i in o for j in self.model_units[i])) for o in opts] for opts in self.members
        ]
        self.classes = [c for c, opts in enumerate(self.members) if opts]
        self.cands = [sorted({i for o in opts for i in o}) for opts in self.members]
        self.cand_units = [sorted({j for i in cs for j in self.model_units[i]}) for cs in self.cands]
        self.users: list[list[int]] = [[] for _ in self.models]  # model -> classes it is a candidate of
        for c in self.classes:
            for i in self.cands[c]:
                self.users[i].append(c)
        self.unit_users: list[list[int]] = [[] for _ in self.units]  # unit -> classes a candidate needs it in
        for c in self.classes:
            for j in self.cand_units[c]:
                self.unit_users[j].append(c)
