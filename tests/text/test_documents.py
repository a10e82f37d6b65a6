"""Documents: md/txt/pdf reading, rejects for unreadable files, sections and sentences."""
from __future__ import annotations

import textwrap
from pathlib import Path

from synthtune.text.documents import document_name, load_documents, split_sections, split_sentences


def write_text_pdf(path: Path, pages: list[list[str]]) -> None:
    """A minimal PDF 1.4: Helvetica text lines, one content stream per page (how the seed PDF was made)."""
    def esc(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream = ("BT /F1 11 Tf 14 TL 56 780 Td\n" + "".join(f"({esc(line)}) Tj T*\n" for line in lines) + "ET")
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream".encode("latin-1"))
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents {len(objects)} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>".encode())
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>".encode()
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def text_to_pdf_pages(text: str, width: int = 88, per_page: int = 52) -> list[list[str]]:
    """Paragraphs wrapped to `width`; a blank line between paragraphs; titles stay on their own line."""
    lines: list[str] = []
    for paragraph in text.strip().split("\n"):
        lines.extend(textwrap.wrap(paragraph, width) or [""])
        lines.append("")
    return [lines[i:i + per_page] for i in range(0, len(lines), per_page)]


def test_sentences_and_sections():
    assert split_sentences("Use 18 g, e.g. for a double. Tamp it. 25 s is good.") == [
        "Use 18 g, e.g. for a double.", "Tamp it.", "25 s is good."]
    sections = split_sections("# Title\n\nIntro text here.\n\n## Cleaning\n\n- Empty the tray.\n- Rinse it.\n", True)
    assert sections == [("Title", ["Intro text here."]), ("Cleaning", ["Empty the tray. Rinse it."])]
    plain = split_sections("Installation\nSwitch off the power first.\nThen remove it.\n\nMore text.", False)
    assert plain == [("Installation", ["Switch off the power first. Then remove it.", "More text."])]



def test_pdf_text_and_unreadable_documents(tmp_path):
    write_text_pdf(tmp_path / "club.pdf", text_to_pdf_pages(
        "Boat rules\nEvery crew writes its route on the board before launching the boat."))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    (tmp_path / "notes.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "ignored.json").write_text("{}")
    docs, rejects = load_documents(tmp_path)
    assert [p.name for p in docs] == ["club.pdf"]
    assert "writes its route on the board" in " ".join(docs[tmp_path / "club.pdf"].split())
    assert sorted(Path(r["file"]).name for r in rejects) == ["broken.pdf", "notes.txt"]
    assert all(r["reason"].startswith("document: ") for r in rejects)




def test_documents_are_sorted_by_path_and_named_under_their_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.txt", "a.md", "sub/c.md"):
        (tmp_path / name).write_text(f"Text of {name}.")
    docs, rejects = load_documents(tmp_path)
    assert rejects == [] and [document_name(p, tmp_path) for p in docs] == ["a.md", "b.txt", "sub/c.md"]
    assert document_name(tmp_path / "a.md", tmp_path / "a.md") == "a.md"
