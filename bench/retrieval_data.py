"""A retrieval benchmark built from the Python standard library's sources: generated here, never committed.

No public IR test collection can be had on this machine (they download their data at run time, and no
package here ships one), so the benchmark is built from real text that ships with Python itself, in the
manner of CodeSearchNet (natural-language query -> the code it describes):

- documents: the source files of ``MODULES`` (pure-Python standard-library modules), each with every
  function's and method's docstring removed (class and module docstrings, and comments, stay). A
  document is what a user would upload to a vector store: a whole source file.
- queries: for each public function or method with a docstring, the docstring's summary (its first
  paragraph, on one line), with the function's own name removed wherever it appears, so that the query
  does not simply name what it asks for. Summaries that are too short (< 4 words), pointers to other
  functions ("Same as", "Alias", "Deprecated", "See ") and summaries shared by two or more functions are
  dropped. ``MAX_QUERIES`` of the rest are drawn with a fixed seed.
- relevance: the function's ``def`` line, as a character span in its document; a chunk is relevant when
  it holds that whole line (with 800/400-token chunks, usually two chunks hold it).
- split: each query is ``dev`` (about 30%, for tuning anything) or ``test`` (reported), by a hash of its id.

Everything depends only on the running interpreter's standard library (its version goes into
``meta.json``): the same Python gives the same files.

    python -m bench.retrieval_data --out DIR    writes DIR/corpus.jsonl, DIR/queries.jsonl, DIR/meta.json
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import re
import sys
import sysconfig
from dataclasses import asdict, dataclass
from pathlib import Path

#: Pure-Python standard-library modules with many documented public functions: about 115,000 tokens once
#: function docstrings are removed (about 290 chunks of 800 tokens; the local embedder takes about a
#: second or two per chunk on this project's 2-core machine, which bounds the corpus).
MODULES = [
    "base64.py",
    "calendar.py",
    "copy.py",
    "email/utils.py",
    "fnmatch.py",
    "genericpath.py",
    "hmac.py",
    "html/__init__.py",
    "ipaddress.py",
    "json/__init__.py",
    "json/decoder.py",
    "json/encoder.py",
    "linecache.py",
    "operator.py",
    "pathlib.py",
    "posixpath.py",
    "pprint.py",
    "queue.py",
    "quopri.py",
    "random.py",
    "sched.py",
    "secrets.py",
    "shlex.py",
    "shutil.py",
    "statistics.py",
    "textwrap.py",
    "threading.py",
]
MAX_QUERIES = 400
SEED = 20260826
DEV_SHARE = 0.3
MIN_QUERY_WORDS = 4
MAX_QUERY_WORDS = 60
_POINTER = re.compile(r"^(same as|alias|deprecated|see |like |equivalent to|backward|compat)", re.I)


@dataclass(frozen=True)
class Document:
    doc_id: str  #: the module's path under the standard library, e.g. "json/decoder.py"
    text: str


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str
    doc_id: str
    function: str  #: qualified name, e.g. "JSONDecoder.decode"
    def_start: int  #: the def line's span in the document's text
    def_end: int
    split: str  #: "dev" or "test"


@dataclass(frozen=True)
class _Function:
    qualname: str
    name: str
    summary: str
    def_line: int  #: 1-based line of the ``def`` keyword (after decorators)
    docstring_lines: tuple[int, int]  #: 1-based, inclusive


def build(stdlib: Path) -> tuple[list[Document], list[Query]]:
    """The corpus and the queries, from the standard library at ``stdlib``."""
    documents: list[Document] = []
    candidates: list[tuple[str, _Function, int, int]] = []
    for module in MODULES:
        source = (stdlib / module).read_text(encoding="utf-8")
        functions = _functions(ast.parse(source))
        text, line_starts = _without_docstrings(source, [f.docstring_lines for f in functions])
        documents.append(Document(module, text))
        for function in functions:
            start = line_starts[function.def_line]
            end = text.index("\n", start)
            candidates.append((module, function, start, end))
    summaries: dict[str, int] = {}
    for _, function, _, _ in candidates:
        summaries[_normalized(function.summary)] = summaries.get(_normalized(function.summary), 0) + 1
    queries: list[Query] = []
    for module, function, start, end in candidates:
        query_text = _query_text(function)
        if query_text is None or summaries[_normalized(function.summary)] > 1:
            continue
        query_id = f"{module}:{function.qualname}"
        queries.append(Query(query_id, query_text, module, function.qualname, start, end, _split(query_id)))
    random.Random(SEED).shuffle(queries)
    return documents, sorted(queries[:MAX_QUERIES], key=lambda q: q.query_id)


def _functions(tree: ast.Module) -> list[_Function]:
    found: list[_Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                docstring = ast.get_docstring(child)
                first = child.body[0]
                if docstring and isinstance(first, ast.Expr) and first.end_lineno is not None:
                    summary = " ".join(docstring.split("\n\n")[0].split())
                    found.append(
                        _Function(
                            prefix + child.name,
                            child.name,
                            summary,
                            child.lineno,
                            (first.lineno, first.end_lineno),
                        )
                    )
                visit(child, f"{prefix}{child.name}.")

    visit(tree, "")
    return found


def _without_docstrings(source: str, spans: list[tuple[int, int]]) -> tuple[str, dict[int, int]]:
    """The source without the given (1-based, inclusive) line spans, and each kept line's new offset."""
    removed = {line for first, last in spans for line in range(first, last + 1)}
    kept: list[str] = []
    offsets: dict[int, int] = {}
    position = 0
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        if number in removed:
            continue
        offsets[number] = position
        kept.append(line)
        position += len(line)
    return "".join(kept), offsets


def _query_text(function: _Function) -> str | None:
    if function.name.startswith("_") or _POINTER.match(function.summary):
        return None
    names = {function.name, function.qualname}
    text = function.summary
    for name in sorted(names, key=len, reverse=True):
        text = re.sub(rf"(?<!\w)[`'\"]*{re.escape(name)}(\(\))?[`'\"]*(?!\w)", " ", text, flags=re.I)
    text = " ".join(text.split()).strip(" ,:;-")
    words = text.split()
    if not MIN_QUERY_WORDS <= len(words) <= MAX_QUERY_WORDS:
        return None
    return text


def _normalized(summary: str) -> str:
    return " ".join(re.findall(r"\w+", summary.lower()))


def _split(query_id: str) -> str:
    digest = int.from_bytes(hashlib.sha256(query_id.encode()).digest()[:4], "big")
    return "dev" if digest / 2**32 < DEV_SHARE else "test"


def write(out: Path, documents: list[Document], queries: list[Query]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for document in documents:
            f.write(json.dumps(asdict(document), ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for query in queries:
            f.write(json.dumps(asdict(query), ensure_ascii=False) + "\n")
    meta = {
        "python": sys.version.split()[0],
        "modules": len(MODULES),
        "documents": len(documents),
        "characters": sum(len(d.text) for d in documents),
        "queries": len(queries),
        "dev": sum(q.split == "dev" for q in queries),
        "test": sum(q.split == "test" for q in queries),
        "seed": SEED,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load(data: Path) -> tuple[list[Document], list[Query]]:
    with (data / "corpus.jsonl").open(encoding="utf-8") as f:
        documents = [Document(**json.loads(line)) for line in f]
    with (data / "queries.jsonl").open(encoding="utf-8") as f:
        queries = [Query(**json.loads(line)) for line in f]
    return documents, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory to write the benchmark into")
    args = parser.parse_args()
    documents, queries = build(Path(sysconfig.get_paths()["stdlib"]))
    write(args.out, documents, queries)
    print(json.loads((args.out / "meta.json").read_text()))


if __name__ == "__main__":
    main()
