"""Phrase tables of the recipe domain (recipe.py): user and system templates, questions and answers.

Pure data, kept apart so that recipe.py holds the domain's rules. `{q}` is the search query, `{i}`
a result number, `{k}` a step number, `{m}` minutes, `{t}` a question topic; system templates also
get the recipe's `{title}`, `{minutes}`, `{n_steps}` and `{n_ing}`.
"""

USER = {
    "greeting": [
        "hi", "hello there", "hey, can you help me cook something?", "good evening!",
        "hi, I need some dinner ideas", "morning! I want to cook something today",
    ],
    "search_recipe": [  # generic, work for any query
        "I'm looking for a {q} recipe", "any good {q} recipes?", "can you search for {q}",
        "show me some {q} dishes", "what {q} recipes do you have?", "I'd like to cook something {q} tonight",
        "recipes with {q} please",
    ],
    "more_results": [
        "show me more", "any other options?", "what else have you got?", "can I see a few more?",
        "none of these, next page please", "more results please", "let's see some others",
    ],
    "select_recipe": [
        "let's go with number {i}", "I'll take {i}", "number {i} sounds good", "option {i} please",
        "can we do {i}?", "{i} looks tasty", "I'd like #{i}", "let me try number {i}",
    ],
    "show_ingredients": [
        "what ingredients do I need?", "show me the ingredients", "can you list what I need?",
        "what do I need to buy for this?", "ingredients please", "what goes into it?",
        "ok, so what do I need?",
    ],
    "start_cooking": [
        "let's start cooking", "ok I'm ready, what's the first step?", "how do I start?", "can we begin?",
        "take me through the steps", "start please", "I'm ready to cook",
    ],
    "next_step": [
        "what's next", "ok next step please", "done, what now?", "next", "and then?",
        "I've done that, what's the next step?", "go on", "can we move on?",
    ],
    "previous_step": [
        "go back one step", "what was the previous step?", "can you repeat the step before?", "back please",
        "I missed the last one, go back", "previous step", "ok, one step back",
    ],
    "go_to_step": [
        "go to step {k}", "jump to step {k}", "what's step {k}?", "can you read step {k}?",
        "take me to step {k}", "skip to step {k} please", "I want step {k}",
    ],
    "repeat_step": [
        "can you repeat that?", "say that again please", "what was that again?", "sorry, I didn't catch that",
        "repeat the current step", "one more time please", "ok, could you read it again?",
    ],
    "set_timer": [
        "set a timer for {m} minutes", "can you start a {m} minute timer?", "timer for {m} minutes please",
        "remind me in {m} minutes", "could you time {m} minutes for me", "please count down {m} minutes",
        "I need a {m} minute timer",
    ],
    "chitchat": [
        "you're really helpful", "I love cooking on weekends", "how's your day going?",
        "this is my first time making this", "my kitchen is such a mess right now", "I hope this turns out well",
        "can you believe how hungry I am?", "ok, the kids are going to love this",
    ],
    "deny": [
        "no, not that", "actually, never mind", "hmm, none of those", "that's not what I wanted", "nope",
        "no thanks", "I don't think so", "can we not do that?",
    ],
    "goodbye": [
        "thanks, bye!", "that's all for now, goodbye", "ok I'm done, thank you", "see you later",
        "great, that's everything. bye", "I'll stop here, thanks", "can we stop here? bye",
    ],
}

# extra search templates that only fit some kinds of query
SEARCH_BY_KIND = {
    "ingredient": [
        "find me something with {q}", "what can I make with {q}?", "I have some {q}, any ideas?",
        "ok, I need a recipe that uses {q}", "got anything with {q} in it?",
    ],
    "cuisine": [
        "I fancy something {q}", "I'm in the mood for {q} food", "find me a {q} dish",
        "what {q} food can I make?", "something {q} for dinner?",
    ],
    "title": [
        "find me something {q}", "I'm in the mood for something {q}", "what {q} dishes can I make?",
        "do you have anything {q}?", "ok, {q} sounds good, what do you have?",
    ],
}

# ask_question: (kind, user templates, answer templates); {t} is the topic slot
QUESTIONS = [
    ("substitute",
     ["what can I use instead of {t}?", "do I really need the {t}?", "is there a substitute for {t}?",
      "I'm out of {t}, what should I do?", "can I leave out the {t}?"],
     ["You can swap the {t} for something similar you have on hand; it will still work.",
      "The {t} isn't essential, so feel free to skip it or use a substitute.",
      "If you don't have {t}, just use a similar ingredient and adjust the seasoning.",
      "Leaving out the {t} changes the flavour a little, but the recipe still works.",
      "No {t}? No problem, the dish will still be tasty without it."]),
    ("time",
     ["how long does this take in total?", "how much time will this take?", "is this quick to make?"],
     ["It takes about {minutes} minutes in total.", "Plan for roughly {minutes} minutes from start to finish.",
      "All in, it's about {minutes} minutes."]),
    ("store",
     ["can I freeze the leftovers?", "how long will leftovers keep?", "can I make this ahead?"],
     ["Leftovers keep in the fridge for up to 2 days, and most of it freezes well.",
      "You can make it a day ahead; reheat until piping hot.",
      "Cool it quickly, then keep it covered in the fridge for up to 2 days."]),
    ("serve",
     ["how many people does this serve?", "is this enough for four?", "what should I serve with it?"],
     ["It serves about 4 people.", "It makes around 4 portions; a simple green salad goes well with it.",
      "Enough for 4, or 2 with leftovers for lunch."]),
    ("doneness",
     ["how do I know when it's done?", "how can I tell it's cooked?", "what should it look like at this point?"],
     ["It's ready when everything is piping hot and cooked through.",
      "Check that it's hot all the way through and looks golden where it should.",
      "Trust your eyes and a quick taste: it should be hot, tender and well seasoned."]),
    ("steps",
     ["how many steps are there?", "how many steps does this recipe have?", "is this a long recipe?"],
     ["There are {n_steps} steps in total.", "It's {n_steps} steps from start to finish.",
      "Just {n_steps} steps, nothing too complicated."]),
]

SYSTEM = {
    "greet": [
        "Hi! What would you like to cook today?",
        "Hello! I can find a recipe and walk you through it. What are you in the mood for?",
        "Hey there! What shall we cook?", "Hi, I'm your cooking assistant. What would you like to make?",
        "Good to see you! Looking for something to cook?",
    ],
    "show_results": [
        "Here are some recipes: {list}", "I found these: {list}. Which one sounds good?",
        "How about one of these? {list}", "Here's what I found for \"{q}\": {list}",
        "These match {q}: {list}. Pick a number to choose.",
    ],
    "show_more": [
        "Here are a few more: {list}", "Some other options: {list}", "More results: {list}. Any of these?",
        "Okay, next page: {list}", "Sure, how about these instead? {list}",
    ],
    "confirm_selection": [
        "Great choice: {title}. It takes about {minutes} minutes. Would you like the ingredients or shall we start cooking?",
        "{title} it is! It needs {n_ing} ingredients and about {minutes} minutes.",
        "Okay, let's make {title}. Do you want to see the ingredients first?",
        "You picked {title} ({minutes} min, {n_steps} steps). Ready when you are.",
        "Nice, {title} is a good one. Shall I list what you'll need?",
    ],
    "ingredients": [
        "You'll need: {ings}.", "Here's the ingredient list: {ings}.", "For {title} you need: {ings}.",
        "Ingredients: {ings}. Let me know when you want to start.", "Grab these: {ings}.",
    ],
    "no_more_steps": [
        "That was the last step. Enjoy your {title}!", "You're all done, there are no more steps. Enjoy!",
        "That's everything: {title} is ready.", "No more steps, that was step {n_steps} of {n_steps}. Enjoy your meal!",
        "We've finished all the steps. Time to eat!",
    ],
    "timer_set": [
        "Timer set for {m} minutes.", "Okay, {m} minute timer started.", "Done, I'll let you know in {m} minutes.",
        "Your timer is running: {m} minutes.", "Sure, a timer for {m} minutes is on.",
    ],
    "chitchat_reply": [
        "Happy to help!", "That sounds lovely. Let me know when you're ready to carry on.",
        "I'm sure it'll turn out great.", "Glad to hear it! Cooking is more fun with company.",
        "Ha, I know the feeling. Shall we keep going?",
    ],
    "acknowledge_deny": [
        "No problem. What would you like to do instead?", "Okay, no worries.",
        "Sure, let me know what you'd prefer.", "Alright. Just tell me what you need.", "Got it, scratch that.",
    ],
    "farewell": [
        "Enjoy your meal! Goodbye.", "Happy cooking, bye!", "You're welcome. See you next time!",
        "Bye! Come back anytime you need a recipe.", "Glad I could help. Enjoy!",
    ],
}

# the "step" act is phrased according to how the user got there
STEP_TEMPLATES = {
    "start_cooking": [
        "Let's begin. Step 1: {text}", "Step 1: {text}", "Okay, first up. Step 1 of {n_steps}: {text}",
        "Here we go! Step 1: {text}", "Great, let's cook. Step 1: {text}",
    ],
    "next_step": [
        "Step {k}: {text}", "Next, step {k}: {text}", "Step {k} of {n_steps}: {text}", "Okay. Step {k}: {text}",
        "Moving on. Step {k}: {text}",
    ],
    "previous_step": [
        "Going back. Step {k}: {text}", "Sure, back to step {k}: {text}", "Step {k} again: {text}",
        "No problem. Step {k}: {text}", "Here's the previous one. Step {k}: {text}",
    ],
    "go_to_step": [
        "Jumping to step {k}: {text}", "Step {k}: {text}", "Sure. Step {k} of {n_steps}: {text}",
        "Okay, here's step {k}: {text}", "Going to step {k}. {text}",
    ],
    "repeat_step": [
        "Sure, once more. Step {k}: {text}", "Again, step {k}: {text}", "Step {k} was: {text}",
        "No worries. Step {k}: {text}", "Repeating step {k}: {text}",
    ],
}
