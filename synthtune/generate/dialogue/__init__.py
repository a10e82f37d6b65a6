"""Graph-guided synthetic task-oriented dialogues (SynTOD): a generic engine and one file per domain.

The public API (import these names from `synthtune.generate.dialogue`):
- `DOMAINS`: name -> Domain, with `.name`, `.intents`, `.load_catalog(path)` and
  `.generate(catalog, graph, n, seed, max_turns, source, use_graph, keep_graph)`;
- `get_domain(name)` (an unknown name is an InputError listing the known domains),
  `domain_intents(name)`, `load_graph(path)`, `register_domain(domain)`;
- `voice_dialogues(records, domain, teacher, request_cls)`: the LLM simulator, every turn voiced by
  the teacher.

Modules: catalog.py (read_catalog), graph.py (load_graph, choose_next), engine.py (Domain, the
registry, the generate loop, ids, paging, fillers), voicing.py, and the domains: recipe.py and
ecommerce.py, each with its phrase tables (<domain>_templates.py).

Adding a domain `d`: one module that subclasses engine.Domain (intents, catalog fields, `item_text`,
`walk_for`, `render`) and calls `register_domain`, imported below; its state graph
data/seeds/graphs/d.json; its catalog; and a `sources.<name>` entry with `domain: d` in params.yaml.
"""
from synthtune.generate.dialogue.engine import DOMAINS, Domain, domain_intents, get_domain, register_domain
from synthtune.generate.dialogue.graph import load_graph
from synthtune.generate.dialogue.voicing import voice_dialogues

# the domains: importing a domain module registers it
from synthtune.generate.dialogue import ecommerce, recipe  # noqa: E402,F401  isort: skip

__all__ = ["DOMAINS", "Domain", "domain_intents", "get_domain", "load_graph", "register_domain", "voice_dialogues"]
