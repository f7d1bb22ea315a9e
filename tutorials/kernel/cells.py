"""How a notebook cell of C++ becomes code that clang-repl-16 and g++ both accept.

A cell is written as ordinary C++: includes, declarations, function and class definitions, and
statements (loops, ifs, calls, assignments), in any order. clang-repl-16 crashes on top-level
`for`/`if`/`{}`/`try` and g++ accepts no statements at namespace scope, so both the kernel and
the program runner split a cell into top-level chunks and classify each one:

* declarations (preprocessor lines, `using`, `struct`, `template`, functions, variables) stay at
  namespace scope, in order;
* each run of consecutive statements becomes the initialiser of a global,
      int unfold_run_<cell>_<k> = unfold::notebook::run([] { <statements> });
  which runs them at once in the interpreter, and in cell order during a compiled program's
  static initialisation (initialisers of one file run in declaration order). Notebook variables
  are globals, so the lambda needs no captures; run() turns an escaping exception into a cell
  error instead of ending the process.

`#line` directives keep compiler messages pointing at the cell's own lines ("cell[3]:5:12").
"""

import re

_DECL_KEYWORDS = {
    "struct", "class", "union", "enum", "template", "namespace", "using", "typedef",
    "static_assert", "extern", "inline", "constexpr", "static", "const", "constinit",
    "consteval", "auto", "unsigned", "signed", "long", "short", "int", "double", "float",
    "char", "bool", "void", "volatile", "thread_local", "friend",
}
_STMT_KEYWORDS = {
    "for", "while", "if", "do", "switch", "try", "return", "break", "continue", "goto",
    "delete", "throw", "else", "case", "default",
}


def _skip_space_and_comments(src, i):
    n = len(src)
    while i < n:
        if src[i].isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j + 1
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            break
    return i


def _skip_literal(src, i):
    """Index after the string or character literal starting at src[i] (a quote)."""
    if src[i] == '"' and i > 0 and src[i - 1] == "R":  # raw string R"delim(...)delim"
        open_paren = src.find("(", i)
        delim = src[i + 1:open_paren]
        end = src.find(")" + delim + '"', open_paren)
        return len(src) if end < 0 else end + len(delim) + 2
    quote = src[i]
    i += 1
    while i < len(src) and src[i] != quote:
        i += 2 if src[i] == "\\" else 1
    return i + 1


def _word_at(src, i):
    m = re.match(r"[A-Za-z_]\w*", src[i:])
    return m.group(0) if m else ""


def split(src):
    """Top-level chunks of `src` as (first line number, text) pairs, comments kept."""
    chunks = []
    n = len(src)
    i = 0
    while True:
        start = _skip_space_and_comments(src, i)
        # Comments before a chunk belong to it (they are kept for the reader of errors).
        head_start = i
        while head_start < start and src[head_start].isspace():
            head_start += 1
        if start >= n:
            break
        if src[start] == "#":  # a preprocessor line, with its continuations
            j = start
            while True:
                e = src.find("\n", j)
                if e < 0:
                    e = n
                    break
                if src[e - 1] == "\\":
                    j = e + 1
                    continue
                break
            chunks.append((src.count("\n", 0, head_start) + 1, src[head_start:e]))
            i = e
            continue
        depth = 0
        j = start
        first_brace = -1
        end = n
        while j < n:
            c = src[j]
            if c in "\"'":
                if c == "'" and j > 0 and (src[j - 1].isalnum()) and src[j - 1] != "u" and \
                        src[j - 1] != "U" and src[j - 1] != "L":
                    j += 1  # a digit separator: 1'000
                    continue
                j = _skip_literal(src, j)
                continue
            if src.startswith("//", j) or src.startswith("/*", j):
                j = _skip_space_and_comments(src, j)
                continue
            if c in "([{":
                if c == "{" and depth == 0 and first_brace < 0:
                    first_brace = j
                depth += 1
            elif c in ")]}":
                depth -= 1
                if c == "}" and depth == 0 and not _needs_semicolon(src[start:first_brace]):
                    k = _skip_space_and_comments(src, j + 1)
                    if _word_at(src, k) not in ("else", "catch", "while") and \
                            not src.startswith(";", k):
                        end = j + 1
                        break
            elif c == ";" and depth == 0:
                k = _skip_space_and_comments(src, j + 1)
                if _word_at(src, k) != "else":
                    end = j + 1
                    break
            j += 1
        chunks.append((src.count("\n", 0, head_start) + 1, src[head_start:end]))
        i = end
    return chunks


def _strip_template_head(head):
    head = head.strip()
    while head.startswith("template"):
        k = head.find("<")
        depth = 0
        for m in range(k, len(head)):
            depth += {"<": 1, ">": -1}.get(head[m], 0)
            if depth == 0:
                head = head[m + 1:].strip()
                break
        else:
            return head
    return head


def _needs_semicolon(head):
    """Whether a chunk whose text before its first top-level `{` is `head` ends with `;`
    (a class, an initialiser, a lambda) rather than at its closing brace (a function body,
    a namespace, a statement block)."""
    head = _strip_code(head)
    words = _strip_template_head(head).split()
    if words and words[0] in ("namespace", "extern"):
        return False
    if re.search(r"\b(struct|class|union|enum)\b", _strip_template_head(head)) and "(" not in head:
        return True
    if re.match(r"^\s*do\b", head):
        return True
    # `auto f = [] ...{`, `var x = ...{`, `std::vector<int> v{`: an initialiser.
    if "=" in re.sub(r"[=!<>]=|<<=|>>=", "", head) and not re.match(r"^\s*(for|while|if|switch)\b", head):
        return True
    if re.search(r"[\w>]\s*$", head) and "(" not in head and head.strip():
        return True  # `T name{...};`
    return False


def _strip_code(text):
    """text without comments and literals (for classification)."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("//", i) or text.startswith("/*", i):
            i = _skip_space_and_comments(text, i)
            out.append(" ")
        elif text[i] in "\"'":
            if text[i] == "'" and i > 0 and text[i - 1].isalnum():
                i += 1
                continue
            i = _skip_literal(text, i)
            out.append('""')
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_TYPE = re.compile(r"""
    \s*(?:(?:const|volatile|static|mutable)\s+)*
    (?:typename\s+)?
    (?:::)?[A-Za-z_]\w*                     # a name
    (?:\s*<(?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*>)?  # template arguments (three levels)
    (?:\s*::\s*[A-Za-z_]\w*(?:\s*<(?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*>)?)*
    (?:\s+const)?
    [\s*&]*
    (?:\[\s*[\w\s,]*\]|[A-Za-z_]\w*)      # a declarator: a name or [structured, binding]
    \s*(?:=|\(|\{|;|\[|,)
""", re.VERBOSE)


def is_declaration(text):
    """Whether a chunk is a declaration (kept at namespace scope) rather than a statement."""
    code = _strip_code(text).strip()
    if not code:
        return True
    if code.startswith("#"):
        return True
    if code.startswith("{"):
        return False
    word = _word_at(code, 0)
    if word in _STMT_KEYWORDS:
        return False
    if word in _DECL_KEYWORDS:
        return True
    if code.endswith("}") and not code.endswith("};"):
        return True  # a function definition (statements with blocks start with a keyword)
    m = _TYPE.match(code)
    if not m:
        return False
    name_part = code[:m.end()]
    # `a.b(`, `a->b(`, `x = y`, `f(x)` are statements; the type pattern needs two names in a row.
    return not re.match(r"^\s*[\w:]+\s*(=|\(|\.|->|\[|\+\+|--)", name_part) or \
        re.match(r"^\s*(const|static|volatile|typename)\b", name_part) is not None


def transform(src, cell_id):
    """The C++ text for cell `cell_id`: declarations at namespace scope, statement runs wrapped
    in `unfold::notebook::run` (see the module comment)."""
    out = []
    run = []
    run_line = None
    k = 0

    def flush():
        nonlocal k, run, run_line
        if run:
            out.append(f"int unfold_run_{cell_id}_{k} = unfold::notebook::run([] {{")
            out.append(f'#line {run_line} "cell[{cell_id}]"')
            out.extend(run)
            out.append("});")
            k += 1
            run = []
            run_line = None

    for line, text in split(src):
        if is_declaration(text):
            flush()
            out.append(f'#line {line} "cell[{cell_id}]"')
            out.append(text)
        else:
            if run_line is None:
                run_line = line
            else:
                run.append(f'#line {line} "cell[{cell_id}]"')
            run.append(text)
    flush()
    return "\n".join(out) + "\n"
