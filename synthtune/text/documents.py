"""Documents: read `.md`, `.txt` and `.pdf` files, and split their text into sections and sentences.

One reader for every stage that takes documents (docqa generation, the RAG benchmark):

* `load_documents(path)`: the documents of a folder (recursively, sorted by path) or of one file,
  as `{file: text}`, and a reject (`{"file", "line": null, "code", "reason": "document: …"}`) for every file
  that cannot be read (bad UTF-8, a broken PDF, a PDF without a text layer); a reject is never
  fatal to the other documents. PDFs are read with pypdf, pages joined by a blank line.
* `split_sections(text, markdown)`: `[(title, paragraphs)]`, titles from markdown `#` headings or,
  in plain text and PDF text, short capitalised lines without closing punctuation.
* `split_sentences(paragraph)`: sentences, keeping abbreviations ("e.g.", "approx.") inside theirs.
"""
from __future__ import annotations

import re
from pathlib import Path

from synthtune.core.errors import InputError

SUFFIXES = (".md", ".txt", ".pdf")


def read_document(path: Path) -> str:
    """The text of one document; ValueError (with the reason) when it cannot be read."""
    if path.suffix.lower() == ".pdf":
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            pages = [page.extract_text() or "" for page in PdfReader(path).pages]
        except (PdfReadError, ValueError, KeyError, OSError) as exc:
            raise ValueError(f"unreadable PDF ({type(exc).__name__}: {exc})") from None
        return "\n\n".join(pages)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None


def load_documents(path: str | Path) -> tuple[dict[Path, str], list[dict]]:
    """{file: text} of the documents in a folder (or one file), and rejects for unreadable ones."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: no such file or folder")
    docs, rejects = {}, []
    for file in files:
        try:
            text = read_document(file)
        except ValueError as exc:
            rejects.append({"file": str(file), "line": None, "code": "unreadable_document",
                            "reason": f"document: {exc}"})
            continue
        if not text.strip():
            rejects.append({"file": str(file), "line": None, "code": "no_text",
                            "reason": "document: no text (a scanned PDF needs OCR)"})
            continue
        docs[file] = text
    if not docs and not rejects:
        raise InputError(f"{path}: no {'/'.join(SUFFIXES)} documents found")
    return docs, rejects


def document_name(file: Path, root: str | Path) -> str:
    """How questions name a document: its path under the folder `root` (its file name when `root`
    is the file itself), so a top-level file is named by its file name."""
    root = Path(root)
    return file.relative_to(root).as_posix() if root.is_dir() else file.name


# ------------------------------------------------------------------------- sections, sentences


def _is_title(line: str, markdown: bool) -> str | None:
    if markdown:
        match = re.match(r"^#{1,6}\s+(.+?)\s*#*$", line)
        return match.group(1) if match else None
    words = line.split()
    if 0 < len(words) <= 8 and not re.search(r"[.!?:;,]$", line) and line[:1].isupper():
        return line.strip()
    return None


def split_sections(text: str, markdown: bool) -> list[tuple[str, list[str]]]:
    """[(section title, paragraphs)]; text before the first title belongs to section ''."""
    text = text.replace("\r\n", "\n").replace("-\n", "")
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []

    def close_paragraph():
        if paragraph:
            sections[-1][1].append(" ".join(paragraph))
            paragraph.clear()

    for raw in text.split("\n"):
        line = raw.strip()
        title = _is_title(line, markdown) if line else None
        if title:
            close_paragraph()
            sections.append((title, []))
        elif not line:
            close_paragraph()
        else:
            paragraph.append(re.sub(r"^([-*+]|\d+[.)])\s+", "", line) if markdown else line)
    close_paragraph()
    return [(title, paras) for title, paras in sections if paras]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def split_sentences(paragraph: str) -> list[str]:
    parts = _SENTENCE_END.split(" ".join(paragraph.split()))
    out: list[str] = []
    for part in parts:     # keep "e.g." / "i.e." / "approx." inside their sentence
        if out and re.search(r"\b(e\.g|i\.e|etc|approx|vs|no|fig)\.$", out[-1], re.I):
            out[-1] += " " + part
        else:
            out.append(part)
    return [s for s in out if s]
