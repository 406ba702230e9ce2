#!/usr/bin/python3
"""mkamalgamation.py — build the single-file annex: out/annex.c + out/annex.h.

    /usr/bin/python3 amalgamation/mkamalgamation.py [--out DIR] [--line-macros]
                                                    [--strict]

The way SQLite and FTS5 ship: the public header first, then every internal
header inlined once in dependency order (the local #include "..." lines that
point at inlined files become comments, system includes are kept), then every .c
file, each between /**** begin file ext/... ****/ and /**** end file ****/
markers.

One list of sources: the files are read from the build itself, the
ANNEX_SOURCES list of CMakeLists.txt and the lists it pulls in with
include() (ext/index/kernels.cmake), so a file added there is picked up here.

Compiling everything as one translation unit needs three things the CMake
build does not:

* Per-file ISA flags. kernels.cmake gives some files their own flags
  (-mavx2 -mfma, ...). Here those files' contents sit inside a
  "#pragma GCC target" region (clang: "#pragma clang attribute push"), so a
  plain "cc -O2 -fPIC -shared annex.c" builds them for that ISA while every
  other function stays baseline, and distance.c's run-time dispatch picks
  the best set the CPU has, as in the CMake build. The arch condition of
  each region comes from the if() branch of the cmake file (COND_MAP below).

* File-local names. A static function, static variable, typedef, tag or
  enumerator that two .c files both define would clash in one translation
  unit. Each such name is renamed inside each file that defines it by a
  "#define name file__name" before the file and "#undef name" after it
  (safe only when no header that file includes uses the name; checked, and
  the generator stops otherwise). The renames are listed on stderr and in a
  comment in annex.c; --strict makes any of them an error instead.

* File-local macros. Every macro a .c file #defines is #undef'd at the end
  of that file, so it cannot leak into the next one.

Runs with Debian's /usr/bin/python3; needs nothing outside the standard
library. Writes only into the output folder (default amalgamation/out/).
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
PUBLIC_HEADER = "ext/annex.h"
TOP_CMAKE = "CMakeLists.txt"
SOURCES_VAR = "ANNEX_SOURCES"

# if() conditions of the cmake files -> C preprocessor conditions. A source
# appended, or given flags, under a condition matching one of these regexes
# is wrapped in (flags) or guarded by (none of ours yet) the C condition.
COND_MAP = [
    (re.compile(r"x86_64|AMD64|amd64|x64"), "defined(__x86_64__)"),
    (re.compile(r"aarch64|arm64|ARM64"), "defined(__aarch64__)"),
]


def die(msg):
    sys.stderr.write("mkamalgamation: error: %s\n" % msg)
    sys.exit(1)


def warn(msg):
    sys.stderr.write("mkamalgamation: %s\n" % msg)


def rel(path):
    return os.path.relpath(path, ROOT).replace(os.sep, "/")


def read(relpath):
    with open(os.path.join(ROOT, relpath), encoding="utf-8") as f:
        return f.read()


# ------------------------------------------------------------ cmake reader

def cmake_commands(text):
    """Yields (name, [args]) for each command of a cmake file. Enough of the
    grammar for our lists: comments, quoted and unquoted arguments, nested
    parentheses (kept as tokens of the if() conditions)."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i)
        if not m:
            i += 1
            continue
        name = m.group(0)
        j = m.end()
        while j < n and text[j] in " \t":
            j += 1
        if j >= n or text[j] != "(":
            i = m.end()
            continue
        j += 1
        args, depth, cur = [], 0, None
        while j < n:
            c = text[j]
            if c == "#" and cur is None:
                k = text.find("\n", j)
                j = n if k < 0 else k
                continue
            if c == '"':
                k = j + 1
                buf = []
                while k < n and text[k] != '"':
                    if text[k] == "\\" and k + 1 < n:
                        buf.append(text[k + 1])
                        k += 2
                        continue
                    buf.append(text[k])
                    k += 1
                args.append("".join(buf))
                j = k + 1
                continue
            if c == "(":
                depth += 1
                args.append("(")
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
                args.append(")")
            elif c.isspace():
                pass
            else:
                k = j
                while k < n and not text[k].isspace() and text[k] not in '()#"':
                    k += 1
                args.append(text[j:k])
                j = k
                continue
            j += 1
        yield name.lower(), args
        i = j + 1


class CMakeLists:
    """Reads the source lists the way cmake would, but takes every if()
    branch (each file keeps the condition it was added under)."""

    def __init__(self):
        self.vars = {}            # name -> [(item, condition)]
        self.flags = {}           # file -> (flags list, condition)
        self.cond = []            # stack of if() branch conditions

    def expand(self, s, listdir):
        s = s.replace("${CMAKE_CURRENT_LIST_DIR}", listdir)
        s = s.replace("${CMAKE_CURRENT_SOURCE_DIR}", ".")
        s = s.replace("${CMAKE_SOURCE_DIR}", ".")
        return s

    def items(self, args, listdir):
        out = []
        for a in args:
            m = re.fullmatch(r"\$\{(\w+)\}", a)
            if m and m.group(1) in self.vars:
                out.extend(self.vars[m.group(1)])
                continue
            a = self.expand(a, listdir)
            if "${" in a:
                continue       # a variable we do not track (flags, libs)
            out.append((os.path.normpath(a).replace(os.sep, "/"), self.condition()))
        return out

    def condition(self):
        return " AND ".join(c for c in self.cond if c)

    def read(self, relpath):
        listdir = os.path.dirname(relpath) or "."
        for name, args in cmake_commands(read(relpath)):
            if name == "if":
                self.cond.append(" ".join(args))
            elif name == "elseif":
                self.cond[-1] = " ".join(args)
            elif name == "else":
                self.cond[-1] = "NOT (%s)" % self.cond[-1]
            elif name == "endif":
                self.cond.pop()
            elif name == "include" and args:
                f = self.expand(args[0], listdir)
                if f.endswith(".cmake") and os.path.exists(os.path.join(ROOT, f)):
                    self.read(os.path.normpath(f))
            elif name == "set" and args:
                self.vars[args[0]] = self.items(args[1:], listdir)
            elif name == "list" and len(args) >= 2 and args[0] == "APPEND":
                self.vars.setdefault(args[1], []).extend(self.items(args[2:], listdir))
            elif name == "set_source_files_properties":
                if "PROPERTIES" not in args:
                    continue
                p = args.index("PROPERTIES")
                files = [f for f, _ in self.items(args[:p], listdir)]
                props = args[p + 1:]
                for k in range(0, len(props) - 1, 2):
                    if props[k] in ("COMPILE_OPTIONS", "COMPILE_FLAGS"):
                        flags = re.split(r"[;\s]+", props[k + 1].strip())
                        for f in files:
                            self.flags[f] = (flags, self.condition())
            elif name in ("add_library", "add_executable"):
                break       # the lists are complete before the first target


def c_condition(cmake_cond, what):
    if not cmake_cond:
        return None
    for rx, c in COND_MAP:
        if rx.search(cmake_cond):
            return c
    die("%s is added under the cmake condition '%s', which COND_MAP in "
        "amalgamation/mkamalgamation.py does not map to a C condition" % (what, cmake_cond))


def target_string(flags, f):
    """-mavx2 -mfma -> "avx2,fma" for #pragma GCC target / target()."""
    out = []
    for fl in flags:
        if not fl:
            continue
        if not fl.startswith("-m") or fl.startswith("-march") or fl.startswith("-mtune"):
            die("%s has the compile flag %s; only -m<isa> flags can be turned "
                "into a target region" % (f, fl))
        out.append(fl[2:])
    return ",".join(out)


# ------------------------------------------------------------- C scanning

INCLUDE_RX = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[^\n]*\n?', re.M)
SYS_INCLUDE_RX = re.compile(r'^[ \t]*#[ \t]*include[ \t]*<([^>]+)>', re.M)
IDENT_RX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS = set("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed
sizeof static struct switch typedef union unsigned void volatile while _Bool
_Atomic _Static_assert _Thread_local _Alignas _Alignof __attribute__ __inline
__inline__ __restrict __restrict__ __extension__ __declspec""".split())


def local_includes(relpath, text):
    """[(line match, resolved repo path)] for the #include "..." lines that
    name a file of this repository."""
    out = []
    base = os.path.dirname(relpath)
    for m in INCLUDE_RX.finditer(text):
        cand = os.path.normpath(os.path.join(base, m.group(1))).replace(os.sep, "/")
        if os.path.isfile(os.path.join(ROOT, cand)):
            out.append((m, cand))
    return out


def strip_local_includes(relpath, text):
    """The #include "..." lines of inlined files become one-line comments,
    so line numbers stay those of the original file."""
    for m, path in reversed(local_includes(relpath, text)):
        a, b = m.span()
        nl = "\n" if text[a:b].endswith("\n") else ""
        text = text[:a] + "/* #include \"%s\": %s, inlined above */%s" % (
            m.group(1), path, nl) + text[b:]
    return text


def code_and_macros(text):
    """(code without comments, literals and preprocessor lines, [macro
    names #defined])."""
    out, macros = [], []
    i, n = 0, len(text)
    line_start = True
    while i < n:
        c = text[i]
        if line_start and c in " \t":
            out.append(c)
            i += 1
            continue
        if line_start and c == "#":
            j = i
            while True:
                k = text.find("\n", j)
                if k < 0:
                    k = n
                    break
                if text[k - 1] == "\\":
                    j = k + 1
                    continue
                break
            d = re.match(r"#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)", text[i:k])
            if d:
                macros.append(d.group(1))
            out.append("\n")
            i = k + 1
            continue
        line_start = False
        if text.startswith("/*", i):
            k = text.find("*/", i + 2)
            k = n if k < 0 else k + 2
            out.append(" " + "\n" * text.count("\n", i, k))
            i = k
            continue
        if text.startswith("//", i):
            k = text.find("\n", i)
            i = n if k < 0 else k
            continue
        if c in "\"'":
            k = i + 1
            while k < n and text[k] != c:
                k += 2 if text[k] == "\\" else 1
            out.append(" 0 ")
            i = k + 1
            continue
        if c == "\n":
            line_start = True
        out.append(c)
        i += 1
    return "".join(out), macros


def tokens(code):
    return re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d[\w.]*|->|\S", code)


def drop_attributes(toks):
    out, i = [], 0
    while i < len(toks):
        if toks[i] in ("__attribute__", "__declspec") and i + 1 < len(toks) and toks[i + 1] == "(":
            depth, j = 0, i + 1
            while j < len(toks):
                if toks[j] == "(":
                    depth += 1
                elif toks[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        out.append(toks[i])
        i += 1
    return out


def file_scope_names(code):
    """What a C file defines at file scope: ({name: kind}, members). kind is
    'static' (static functions and variables), 'global' (external
    declarations and definitions), 'typedef', 'tag' (struct/union/enum tags)
    or 'enum' (enumerators); members is the set of identifiers inside
    struct/union bodies (member names)."""
    toks = drop_attributes(tokens(code))
    names, members = {}, set()
    decl = []
    i, n = 0, len(toks)

    def add(name, kind):
        if name and name not in KEYWORDS and name not in names:
            names[name] = kind

    def finish(decl):
        if not decl:
            return
        is_static = "static" in decl
        is_typedef = decl[0] == "typedef"
        # the declarators follow the last body ({}) of a struct/enum type
        start = 0
        for j, t in enumerate(decl):
            if t == "{}" and j > 0 and (decl[j - 1] in ("struct", "union", "enum") or
                                        (j > 1 and decl[j - 2] in ("struct", "union", "enum"))):
                start = j + 1
        head = decl[start:]
        if start and not head:
            return            # "struct x {...};" declares only the tag
        parts, cur, depth = [], [], 0
        for t in head:
            if t in "([":
                depth += 1
            elif t in ")]":
                depth -= 1
            if t == "," and depth == 0:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        for p in parts:
            name = None
            for j in range(len(p) - 2):      # function pointer: ( * name )
                if p[j] == "(" and p[j + 1] == "*" and IDENT_RX.fullmatch(p[j + 2]):
                    name = p[j + 2]
                    break
            if name is None:
                for t in p:
                    if t in ("(", "[", "=", ":"):
                        break
                    if IDENT_RX.fullmatch(t) and t not in KEYWORDS:
                        name = t
            if name is None:
                continue
            if is_typedef:
                add(name, "typedef")
            elif is_static:
                add(name, "static")
            else:
                add(name, "global")

    while i < n:
        t = toks[i]
        if t == ";":
            finish(decl)
            decl = []
            i += 1
            continue
        if t == "{":
            depth, j = 0, i
            while j < n:
                if toks[j] == "{":
                    depth += 1
                elif toks[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            body = toks[i + 1:j]
            if decl and decl[-1] == ")":
                finish(decl)      # a function definition
                decl = []
                i = j + 1
                continue
            kw = decl[-1] if decl and decl[-1] in ("struct", "union", "enum") else (
                decl[-2] if len(decl) >= 2 and decl[-2] in ("struct", "union", "enum") else None)
            if kw and decl[-1] != kw:
                add(decl[-1], "tag")
            if kw == "enum":
                expect, d = True, 0
                for b in body:
                    if b in "({[":
                        d += 1
                    elif b in ")}]":
                        d -= 1
                    elif d == 0 and b == ",":
                        expect = True
                    elif d == 0 and expect and IDENT_RX.fullmatch(b):
                        add(b, "enum")
                        expect = False
            elif kw:
                members.update(b for b in body if IDENT_RX.fullmatch(b))
            decl.append("{}")    # the body stands for one token
            i = j + 1
            continue
        decl.append(t)
        i += 1
    return names, members


# --------------------------------------------------------------- assembly

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "amalgamation", "out"),
                    help="output folder (default amalgamation/out)")
    ap.add_argument("--line-macros", action="store_true",
                    help="emit #line directives so diagnostics name ext/ files")
    ap.add_argument("--strict", action="store_true",
                    help="fail when two files define the same file-local name "
                         "instead of renaming it")
    opt = ap.parse_args()

    cm = CMakeLists()
    cm.read(TOP_CMAKE)
    if SOURCES_VAR not in cm.vars:
        die("no set(%s ...) in %s" % (SOURCES_VAR, TOP_CMAKE))
    sources, seen = [], set()
    for f, cond in cm.vars[SOURCES_VAR]:
        if f in seen:
            continue
        if not f.endswith(".c"):
            die("%s lists %s, not a .c file" % (SOURCES_VAR, f))
        if not os.path.isfile(os.path.join(ROOT, f)):
            die("%s lists %s, which does not exist" % (SOURCES_VAR, f))
        seen.add(f)
        sources.append((f, cond))

    texts = {}

    def text_of(f):
        if f not in texts:
            texts[f] = read(f)
        return texts[f]

    # headers: the public one first, then depth-first post-order from each
    # .c file in list order, so every header follows what it includes
    headers, state = [], {}
    deps = {}

    def visit(h, chain):
        if state.get(h) == "done":
            return
        if state.get(h) == "active":
            die("include cycle: %s" % " -> ".join(chain + [h]))
        state[h] = "active"
        inc = [p for _, p in local_includes(h, text_of(h))]
        deps[h] = inc
        for p in inc:
            if p.endswith(".c"):
                die("%s includes the .c file %s" % (h, p))
            visit(p, chain + [h])
        state[h] = "done"
        if h.endswith(".h"):
            headers.append(h)

    visit(PUBLIC_HEADER, [])
    for f, _ in sources:
        visit(f, [])

    def closure(f):
        out, stack = set(), list(deps.get(f, []))
        while stack:
            h = stack.pop()
            if h not in out:
                out.add(h)
                stack.extend(deps.get(h, []))
        return out

    # names: what each .c defines at file scope, what each header mentions
    header_idents, header_macros = {}, set()
    for h in headers:
        # what a header gives the files after it: its top-level names, its
        # struct members, its macros and every identifier in their bodies
        code, macros = code_and_macros(text_of(h))
        top, members = file_scope_names(code)
        header_idents[h] = set(top) | members | set(macros)
        for line in re.findall(r"^[ \t]*#[ \t]*define[^\n]*(?:\\\n[^\n]*)*",
                               text_of(h), re.M):
            header_idents[h] |= set(IDENT_RX.findall(line))
        header_macros |= set(macros)
    defs, cmacros = {}, {}
    for f, _ in sources:
        code, macros = code_and_macros(text_of(f))
        defs[f] = file_scope_names(code)[0]
        cmacros[f] = []
        for m in macros:
            if m not in cmacros[f]:
                cmacros[f].append(m)

    # macros #defined by two .c files (harmless: each is #undef'd at the end
    # of its file; reported so the lead can rename them if wanted)
    macro_owner = {}
    for f, _ in sources:
        for m in cmacros[f]:
            macro_owner.setdefault(m, []).append(f)
    macro_dups = {m: fs for m, fs in macro_owner.items() if len(fs) > 1}

    # file-local names defined by more than one .c file, or by a .c file and
    # a header it does not include (all headers are visible here)
    owners = {}
    for f, _ in sources:
        for name, kind in defs[f].items():
            owners.setdefault(name, []).append((f, kind))
    renames = {}          # file -> [names]
    problems = []
    for name, fs in sorted(owners.items()):
        local = [(f, k) for f, k in fs if k != "global"]
        clash_hdr = [h for h in headers if name in header_idents[h]]
        if len(fs) < 2:
            if not local:
                continue
            f = local[0][0]
            foreign = [h for h in clash_hdr if h not in closure(f)]
            if not foreign:
                continue
        elif not local:
            continue      # two external definitions: the CMake link fails too
        for f, kind in local:
            inc = closure(f)
            if any(name in header_idents[h] for h in inc) or name in header_macros:
                problems.append("%s defines %s (%s), which a header it includes "
                                "also uses; rename it in ext/" % (f, name, kind))
                continue
            renames.setdefault(f, []).append(name)
    if problems:
        die("cannot rename safely:\n  " + "\n  ".join(problems))
    if renames and opt.strict:
        die("file-local names defined in more than one file:\n  " + "\n  ".join(
            "%s: %s" % (f, " ".join(ns)) for f, ns in renames.items()))

    # regions: per-file ISA flags from the cmake files
    regions = {}
    for f, cond in sources:
        guard = c_condition(cond, f)
        if f in cm.flags:
            flags, fcond = cm.flags[f]
            tgt = target_string(flags, f)
            if tgt:
                regions[f] = (tgt, c_condition(fcond, f) or guard)
        elif guard:
            regions.setdefault(f, (None, guard))

    version = re.search(r'#define\s+ANNEX_VERSION\s+"([^"]*)"',
                        "".join(text_of(h) for h in headers))
    version = version.group(1) if version else "unknown"
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "ext",
                                "CMakeLists.txt"], capture_output=True, text=True,
                               check=True).stdout.strip()
        rev = "git " + rev + ("+local changes to ext/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        rev = "no git"

    out = []
    w = out.append
    w(BANNER.format(version=version, rev=rev,
                    sources="\n".join("**   " + f for f, _ in sources),
                    renamed=("\n".join("**   %s: %s" % (f, ", ".join(ns))
                                       for f, ns in renames.items()) or "**   (none)")))

    def emit_file(f, body):
        w("/**** begin file %s ****/\n" % f)
        if opt.line_macros:
            w('#line 1 "%s"\n' % f)
        w(body if body.endswith("\n") else body + "\n")
        w("/**** end file %s ****/\n" % f)

    for h in headers:
        emit_file(h, strip_local_includes(h, text_of(h)))

    for f, _ in sources:
        body = strip_local_includes(f, text_of(f))
        tgt, cond = regions.get(f, (None, None))
        w("/**** begin file %s ****/\n" % f)
        for name in renames.get(f, []):
            w("#define %s %s__%s\n" % (name, os.path.splitext(os.path.basename(f))[0], name))
        if cond and not tgt:
            w("#if %s\n" % cond)
        if tgt:
            sysinc = SYS_INCLUDE_RX.findall(body)
            w("#if %s\n" % cond if cond else "#if 1\n")
            # the file's system headers first, outside the region, so their
            # own target attributes are not overridden
            for s in sysinc:
                w("#include <%s>\n" % s)
            w('#if defined(__clang__)\n'
              '#pragma clang attribute push(__attribute__((target("%s"))), '
              'apply_to = function)\n'
              '#elif defined(__GNUC__)\n'
              '#pragma GCC push_options\n'
              '#pragma GCC target("%s")\n'
              '#endif\n' % (tgt, tgt))
            w("#endif\n")
        if opt.line_macros:
            w('#line 1 "%s"\n' % f)
        w(body if body.endswith("\n") else body + "\n")
        if tgt:
            w("#if %s\n" % (cond or "1"))
            w('#if defined(__clang__)\n'
              '#pragma clang attribute pop\n'
              '#elif defined(__GNUC__)\n'
              '#pragma GCC pop_options\n'
              '#endif\n')
            w("#endif\n")
        if cond and not tgt:
            w("#endif /* %s */\n" % cond)
        for name in renames.get(f, []):
            w("#undef %s\n" % name)
        local_macros = [m for m in cmacros[f] if m not in header_macros]
        for m in local_macros:
            w("#undef %s\n" % m)
        w("/**** end file %s ****/\n" % f)

    os.makedirs(opt.out, exist_ok=True)
    with open(os.path.join(opt.out, "annex.c"), "w", encoding="utf-8") as fh:
        fh.write("".join(out))
    with open(os.path.join(opt.out, "annex.h"), "w", encoding="utf-8") as fh:
        fh.write(text_of(PUBLIC_HEADER))

    warn("%d headers, %d sources -> %s/annex.c (%d lines), annex.h" % (
        len(headers), len(sources), rel(opt.out), "".join(out).count("\n")))
    for f, (tgt, cond) in regions.items():
        if tgt:
            warn("target region %-28s %s  (under %s)" % (f, tgt, cond))
    if renames:
        warn("renamed file-local names defined by more than one file "
             "(the lead may rename them in ext/):")
        for f, ns in renames.items():
            warn("  %-28s %s" % (f, " ".join(ns)))
    if macro_dups:
        warn("macros #defined by more than one .c file (#undef'd after each file):")
        for m, fs in sorted(macro_dups.items()):
            warn("  %-24s %s" % (m, " ".join(fs)))


BANNER = """\
/*
** annex.c — the annex SQLite extension in one file (the "amalgamation").
**
** Generated by amalgamation/mkamalgamation.py from annex {version} ({rev}).
** Do not edit: change the files under ext/ and generate it again. Each
** original file lies between "begin file" and "end file" markers.
**
** BUILD
**
**   As a loadable extension (".load ./annex", sqlite3_load_extension(),
**   Python's load_extension, better-sqlite3's loadExtension):
**
**     cc -O2 -fPIC -shared annex.c -o annex.so -lm
**
**   No -march flags are needed, nor wanted: the SIMD kernels (AVX2+FMA and
**   AVX-512 on x86-64, NEON on AArch64) are compiled for their ISA by
**   target regions below, and the best set this CPU runs is chosen when
**   the extension loads (annex_info's "kernels" row says which).
**   On macOS use -dynamiclib ... -o annex.dylib.
**
**   Into an application that links SQLite (with annex.h beside it):
**
**     cc -O2 -DSQLITE_CORE -c annex.c    then call sqlite3_annex_init(db, ...)
**                                        or sqlite3_auto_extension() on it
**
** COMPILE-TIME OPTIONS
**
**   SQLITE_CORE         build into an application or library that links
**                       SQLite itself, instead of a loadable extension
**   ANNEX_HAVE_OPENMP   parallel scans, batch k-NN and index builds with
**                       OpenMP; add "-fopenmp -DANNEX_HAVE_OPENMP", and for
**                       a loadable extension "-Wl,-z,nodelete" (OpenMP's
**                       idle threads must not outlive the unloaded code).
**                       Without it annex answers the same on one thread.
**   ANNEX_OMIT_BLAS     never look for a BLAS library. Otherwise batch k-NN
**                       dlopen()s OpenBLAS at run time when it is installed
**                       (ANNEX_BLAS_LIBRARY=none or =path chooses at run
**                       time); on glibc older than 2.34 add -ldl.
**
**   Optional: -fvisibility=hidden exports sqlite3_annex_init alone (it is
**   marked visibility("default")); -O3 is what the CMake build uses.
**
** SOURCES, in order (from ANNEX_SOURCES in CMakeLists.txt):
{sources}
**
** File-local names that two files both define, renamed per file here by
** #define/#undef pairs (the CMake build compiles each file on its own and
** needs no renames):
{renamed}
*/
"""

if __name__ == "__main__":
    main()
