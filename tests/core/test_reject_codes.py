"""Every reject a stage writes carries a stable `code` (synthtune.core.records.REJECT_CODES), and `line`
is a line of its file or null: the generators' rejects (documents, docqa chunks, voiced dialogues)."""
import json
from pathlib import Path

from synthtune.core.config import SourceParams
from synthtune.core.records import REJECT_CODES
from synthtune.llm.teacher import ChatRequest, ChatResponse

SEEDS = Path(__file__).resolve().parents[2] / "data" / "seeds"


class FakeTeacher:
    """Counts words as tokens; answers with `answer(request)`."""
    backend, model = "openai", "fake-model"

    def __init__(self, answer):
        self.answer = answer

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def complete(self, requests, offline=None):
        return [self.answer(r) for r in requests]


def test_unreadable_documents_have_codes_and_no_line(tmp_path):
    from synthtune.text.documents import load_documents

    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "notes.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "blank.md").write_text("   \n")
    _, rejects = load_documents(tmp_path)
    assert {Path(r["file"]).name: (r["line"], r["code"]) for r in rejects} == {
        "blank.md": (None, "no_text"), "broken.pdf": (None, "unreadable_document"),
        "notes.txt": (None, "unreadable_document")}


def test_docqa_rejects_name_their_chunk_not_a_line(tmp_path):
    from synthtune.generate.docqa import generate_docqa

    (tmp_path / "a.md").write_text("# Pump\n\n" + " ".join(
        f"The pump number {i} is a unit that moves water at {i} litres per minute." for i in range(12)))

    def answer(request):
        context = request.meta["context"]
        if request.json:                                   # the question request
            if "number 0 " in context:
                return ChatResponse(text="not json", ok=False, error="malformed JSON after one repair: x")
            if "number 4 " in context:
                return ChatResponse(text="{}", data={"q": "?"})
            return ChatResponse(text='{"question": "What is a pump?"}', data={"question": "What is a pump?"})
        if "number 8 " in context:
            return ChatResponse(text=None, ok=False, error="teacher: HTTP 500")
        return ChatResponse(text="It moves water.")

    source = SourceParams(kind="docqa", path=str(tmp_path), chunk_tokens=40, chunk_overlap=0,
                          min_length_percentile=0.0)
    out = generate_docqa("pumps", source, tmp_path, FakeTeacher(answer), seed=1)
    chunk_of = {r["meta"]["chunk"] for r in out.records}
    assert out.records and out.rejects
    for reject in out.rejects:
        assert reject["line"] is None and isinstance(reject["chunk"], int) and reject["chunk"] not in chunk_of
        assert reject["file"].endswith("a.md") and reject["code"] in REJECT_CODES
    codes = {(r["reason"].split(":")[1].strip(), r["code"]) for r in out.rejects}
    assert codes == {("question", "teacher_error"), ("question", "teacher_unusable"), ("answer", "teacher_error")}


def test_unvoiced_dialogue_turns_are_flagged_not_rejected():
    from synthtune.generate.dialogue import get_domain, load_graph, voice_dialogues

    recipe = get_domain("recipe")
    dialogues = recipe.generate(recipe.load_catalog(SEEDS / "recipes.json"),
                                load_graph(SEEDS / "graphs" / "recipe.json"), n=2, seed=1, max_turns=4)

    def answer(request):
        if request.meta["record"] == dialogues[0]["id"]:
            return ChatResponse(text="{}", data={"txt": "x"})
        text = request.meta["template"]
        return ChatResponse(text=json.dumps({"text": text}), data={"text": text})

    # a weak teacher no longer costs dialogues: the turn keeps its template text, flagged with the reason
    voiced, rejects = voice_dialogues(dialogues, "recipe", FakeTeacher(answer), ChatRequest)
    assert len(voiced) == 2 and rejects == [] and voiced[0]["meta"]["voiced"] is False
