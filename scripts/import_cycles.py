#!/usr/bin/env python3
"""Report import cycles between the files of each crate of the workspace.

For every crate (a directory with a Cargo.toml and a src/ directory), build
a graph whose nodes are the crate's .rs files and whose edges are the
references one file makes to items of another:

- `use crate::a::b::...` and `crate::a::b::...` paths anywhere in code
  (doc comments included: an intra-doc link is a dependency too);
- `use super::...` and `super::...` paths (from a file's top level, or from
  inline modules deeper than the file);
- `self::child::...` paths, and paths through a child module the file
  declares (`child::item`, `use child::item`): a parent using its child's
  items.

`mod x;` declarations are not edges. A module path is mapped to the file
that defines its longest prefix: `a/b.rs`, `a/b/mod.rs`, else `a.rs`...

Prints every strongly connected component of more than one file and exits 1
if there is any, else prints "no import cycles" and exits 0.

Usage: import_cycles.py [workspace root] (default: the current directory).
"""

import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def find_crates(root):
    """Directories under `root` with a Cargo.toml and a src/ directory."""
    skip = {"target", ".git", "node_modules"}
    crates = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d for d in dirnames if d not in skip and not d.startswith(".")
        )
        if "Cargo.toml" in filenames and os.path.isdir(os.path.join(dirpath, "src")):
            crates.append(dirpath)
    return crates


def strip_comments_and_strings(text):
    """The text with string literals, char literals and plain comments
    blanked (newlines kept). Doc comments (`///`, `//!`, `/** */`) are
    kept: their intra-doc links name items too."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            doc = text.startswith("///", i) or text.startswith("//!", i)
            if doc and not text.startswith("////", i):
                out.append(text[i:end])
            i = end
        elif text.startswith("/*", i):
            doc = text.startswith("/**", i) or text.startswith("/*!", i)
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            chunk = text[i:j]
            out.append(chunk if doc else re.sub(r"[^\n]", " ", chunk))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not re.match(
            r"[A-Za-z0-9_]", text[i - 1] if i else " "
        ):
            m = re.match(r'r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i : j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), not a lifetime.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`a::{b, c::{d, e as f}}` -> ["a::b", "a::c::d", "a::c::e@f"] (an
    alias after `@`)."""
    tree = re.sub(r"\s+as\s+", "@", tree)
    tree = re.sub(r"\s+", "", tree)
    results = []

    def walk(prefix, s):
        # Split s at top-level commas.
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for p in parts:
            brace = p.find("{")
            if brace >= 0 and p.endswith("}"):
                walk(prefix + p[:brace], p[brace + 1 : -1])
            else:
                results.append(prefix + p)

    walk("", tree)
    return results


class Crate:
    def __init__(self, root):
        self.root = root
        self.src = os.path.join(root, "src")
        self.files = []
        for dirpath, dirnames, filenames in os.walk(self.src):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith(".rs"):
                    self.files.append(os.path.join(dirpath, f))
        self.file_set = set(self.files)
        self._reexports = {}

    def module_of(self, path):
        """Module path (list of names) of a file; None for a binary's root
        other than the crate roots."""
        rel = os.path.relpath(path, self.src)
        parts = rel[:-3].split(os.sep)
        if parts in (["lib"], ["main"]):
            return []
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts[0] == "bin":
            # Each src/bin file is its own crate root.
            return None
        return parts

    def file_of(self, module, hops=0):
        """The file defining the longest prefix of `module` (a list). An
        item a file only re-exports (`pub use a::X`) resolves to the file
        that defines it."""
        found, k = None, 0
        for k in range(len(module), 0, -1):
            base = os.path.join(self.src, *module[:k])
            for cand in (base + ".rs", os.path.join(base, "mod.rs")):
                if cand in self.file_set:
                    found = cand
                    break
            if found:
                break
        if not found:
            k = 0
            for root in ("lib.rs", "main.rs"):
                cand = os.path.join(self.src, root)
                if cand in self.file_set:
                    found = cand
                    break
        if found and k < len(module) and hops < 8:
            target = self.reexports(found).get(module[k])
            if target is not None:
                return self.file_of(target + module[k + 1 :], hops + 1) or found
        return found

    def reexports(self, path):
        """Names a file brings in with `use` -> the module path they name
        (crate-relative), for those that name an item of this crate."""
        if path in self._reexports:
            return self._reexports[path]
        result = {}
        self._reexports[path] = result
        module = self.module_of(path)
        if module is None:
            return result
        with open(path, encoding="utf-8", errors="replace") as f:
            text = strip_comments_and_strings(f.read())
        children = self.children_declared(text)
        depth_at = inline_depths(text)
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            if depth_at(m.start()):
                continue
            for p in expand_use_tree(m.group(1)):
                p, _, alias = p.partition("@")
                segs = [x for x in p.lstrip(":").split("::") if x]
                if not segs or segs[-1] in ("*", "self"):
                    continue
                name = segs[-1]
                head = segs[0]
                if head == "crate":
                    full = segs[1:]
                elif head == "super":
                    ups = 0
                    while ups < len(segs) and segs[ups] == "super":
                        ups += 1
                    full = module[: max(0, len(module) - ups)] + segs[ups:]
                elif head == "self":
                    full = module + segs[1:]
                elif head in children:
                    full = module + segs
                else:
                    continue
                result[alias or name] = full
        return result

    def children_declared(self, text):
        return set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", text, re.M))

    def edges_of(self, path):
        module = self.module_of(path)
        if module is None:
            return set()
        with open(path, encoding="utf-8", errors="replace") as f:
            raw = f.read()
        text = strip_comments_and_strings(raw)
        children = self.children_declared(text)
        # Inline module depth at each offset (for `super::` inside them).
        depth_at = inline_depths(text)
        targets = []

        def resolve(path_str, offset):
            segs = [s for s in path_str.split("::") if s]
            if not segs:
                return
            head = segs[0]
            if head == "crate":
                targets.append(segs[1:])
            elif head == "super":
                ups = 0
                while ups < len(segs) and segs[ups] == "super":
                    ups += 1
                inline = depth_at(offset)
                if ups <= inline:
                    return  # stays in this file
                base = module[: max(0, len(module) - (ups - inline))]
                targets.append(base + segs[ups:])
            elif head == "self":
                if len(segs) > 1 and segs[1] in children:
                    targets.append(module + segs[1:])
            elif head in children:
                targets.append(module + segs)

        # use declarations (with trees)
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            for p in expand_use_tree(m.group(1)):
                resolve(p.partition("@")[0].lstrip(":"), m.start())
        # paths in code (and doc links): crate::, super::, self::child::, child::
        for m in re.finditer(
            r"(?<![A-Za-z0-9_:])((?:crate|super|self|" + IDENT + r")(?:::" + IDENT + r")+)",
            text,
        ):
            head = m.group(1).split("::")[0]
            if head in ("crate", "super", "self") or head in children:
                resolve(m.group(1), m.start())
        edges = set()
        for t in targets:
            f = self.file_of(t)
            if f and f != path:
                edges.add(f)
        return edges

    def graph(self):
        return {f: self.edges_of(f) for f in self.files}


def inline_depths(text):
    """A function offset -> how many inline `mod x { ... }` blocks enclose it."""
    spans = []
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", text):
        start = m.end() - 1
        depth, j = 0, start
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        spans.append((start, j))

    def depth_at(offset):
        return sum(1 for s, e in spans if s < offset < e)

    return depth_at


def strongly_connected(graph):
    """Tarjan's algorithm, iterative."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                result.append(comp)
    return result


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
    found = False
    for crate_dir in find_crates(root):
        crate = Crate(crate_dir)
        graph = crate.graph()
        for comp in strongly_connected(graph):
            if len(comp) < 2:
                continue
            found = True
            names = sorted(os.path.relpath(f, root) for f in comp)
            print(f"cycle in {os.path.relpath(crate_dir, root)}: {len(names)} files")
            for name in names:
                outs = sorted(
                    os.path.relpath(t, root) for t in graph[os.path.join(root, name)] if t in comp
                )
                print(f"  {name} -> {', '.join(outs)}")
    if not found:
        print("no import cycles")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
